"""Stop ids every engine uses: a base checkpoint's generation config names only ``<|endoftext|>`` (Qwen2.5 base),
but its chat template closes an assistant turn with ``<|im_end|>``, which must stop a completion too."""

from types import SimpleNamespace

from transformers import AutoTokenizer, GenerationConfig

from r1lit.rollout.hf import end_of_turn_ids, eos_token_ids


def base_checkpoint(tiny_model_dir):
    """The tiny ChatML tokenizer set up as Qwen2.5 base ships: EOS <|endoftext|> in tokenizer and generation config."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.eos_token = "<|endoftext|>"
    model = SimpleNamespace(generation_config=GenerationConfig(eos_token_id=tokenizer.eos_token_id))
    return model, tokenizer


def test_end_of_turn_of_a_chatml_template_is_a_stop_id(tiny_model_dir):
    model, tokenizer = base_checkpoint(tiny_model_dir)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert im_end != endoftext
    assert end_of_turn_ids(tokenizer) == [im_end]
    assert eos_token_ids(model, tokenizer) == sorted({im_end, endoftext})


def test_no_template_adds_nothing(tiny_model_dir):
    model, tokenizer = base_checkpoint(tiny_model_dir)
    tokenizer.chat_template = None
    assert end_of_turn_ids(tokenizer) == []
    assert eos_token_ids(model, tokenizer) == [tokenizer.convert_tokens_to_ids("<|endoftext|>")]


def test_a_template_whose_turn_ends_in_plain_text_adds_nothing(tiny_model_dir):
    model, tokenizer = base_checkpoint(tiny_model_dir)
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n\n{% endfor %}"
    assert end_of_turn_ids(tokenizer) == []
