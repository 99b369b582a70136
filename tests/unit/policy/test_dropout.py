"""Kind 6 of issue 15: dropout is off in the policy and the reference by default, so log-probs of the same weights
agree between passes: step 1's KL to an identical reference is 0 and the importance ratio is 1 before any update."""

import lightning as L
import pytest
import torch

from custom_rewards import LengthReward
from r1lit.data import ArithmeticSource, MathDataModule
from r1lit.grpo.losses import GRPOLoss
from r1lit.policy.config import PolicyConfig
from r1lit.policy.loading import disable_dropout_in_model
from r1lit.module import GRPOModule
from r1lit.rollout import SamplingConfig
from helpers import adamw


@pytest.fixture(scope="module")
def gpt2_dropout_dir(tmp_path_factory, tiny_model_dir):
    """A 2-layer GPT-2 (n_embd 32) whose config has dropout 0.1 everywhere, with the tiny test tokenizer."""
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    from r1lit.policy.loading import load_tokenizer

    folder = tmp_path_factory.mktemp("gpt2-dropout")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=512, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.1, embd_pdrop=0.1,
        attn_pdrop=0.1, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class RatioRecorder(GRPOLoss):
    """GRPOLoss that keeps the importance ratio exp(logp - old logp) of every call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.ratios = []

    def __call__(self, inputs):
        self.ratios.append(torch.exp(inputs.logps.detach() - inputs.old_logps))
        return super().__call__(inputs)


def fit_one_step(model_dir, loss, num_iterations=1, **module_args):
    L.seed_everything(0)
    module = GRPOModule(
        str(model_dir), rewards=[LengthReward()], loss=loss, sampling=SamplingConfig(max_tokens=8), num_generations=4,
        micro_batch_size=8, num_iterations=num_iterations, optimizer=adamw(1e-3), **module_args,
    )
    data = MathDataModule(ArithmeticSource(num_problems=8), tokenizer=str(model_dir), batch_size=2, check_gold=False)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=num_iterations, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )
    trainer.fit(module, data)
    return module, trainer


def test_disable_dropout_zeroes_every_rate(gpt2_dropout_dir, tiny_model_dir):
    """Guards the switch itself: nn.Dropout layers, attention rates held as floats, and the config's rates."""
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    gpt2 = disable_dropout_in_model(AutoModelForCausalLM.from_pretrained(gpt2_dropout_dir).train())
    rates = [m.p for m in gpt2.modules() if isinstance(m, torch.nn.Dropout)]
    assert rates and all(p == 0.0 for p in rates)
    assert (gpt2.config.resid_pdrop, gpt2.config.embd_pdrop, gpt2.config.attn_pdrop) == (0.0, 0.0, 0.0)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    assert torch.equal(gpt2(ids).logits, gpt2(ids).logits)  # train mode, two passes, same numbers

    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=2, attention_dropout=0.1))
    disable_dropout_in_model(qwen)
    assert qwen.config.attention_dropout == 0.0
    assert all(m.attention_dropout == 0.0 for m in qwen.modules() if hasattr(m, "attention_dropout"))


def test_step_one_kl_is_zero_with_dropout_in_the_config(gpt2_dropout_dir):
    """Guards kind 6: a GPT-2 with dropout 0.1 logged step 1's kl as 0.0485 against its own copy (0 expected)."""
    _, trainer = fit_one_step(gpt2_dropout_dir, GRPOLoss(beta=0.1))
    assert float(trainer.callback_metrics["kl"]) == 0.0


def test_importance_ratio_is_one_before_any_update(gpt2_dropout_dir):
    """Guards kind 6 with μ = 2: the first update compares the policy with itself, so every ratio is exactly 1."""
    loss = RatioRecorder()
    fit_one_step(gpt2_dropout_dir, loss, num_iterations=2)
    first = loss.ratios[0]
    assert torch.equal(first, torch.ones_like(first))


def test_dropout_can_be_kept_on_purpose(gpt2_dropout_dir):
    """Guards the opt-out: disable_dropout=False keeps the model's dropout, which then shows in step 1's kl."""
    module, trainer = fit_one_step(gpt2_dropout_dir, GRPOLoss(beta=0.1), policy=PolicyConfig(disable_dropout=False))
    assert all(m.p == 0.1 for m in module.policy.modules() if isinstance(m, torch.nn.Dropout))
    assert float(trainer.callback_metrics["kl"]) > 0.0
