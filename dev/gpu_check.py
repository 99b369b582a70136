"""GPU check: the qwen0.5b recipe's training path on one GPU, with a randomly initialised model of Qwen2.5-0.5B's
shape (dev/gpu/qwen2.5-0.5b-config.json; no hub), and where an engine process started with
``CUDA_VISIBLE_DEVICES`` lands.

    python dev/gpu_check.py [--steps 5]         # on a CUDA machine (dev/gpu_check.sh sets it up)
    python dev/gpu_check.py --smoke             # CPU: a tiny model of the same family, to check the script

Training path: Lightning's DeepSpeedStrategy with ZeRO-2 (configs/deepspeed/zero2.json), bf16-mixed, gradient
checkpointing, G = 16 samples of up to 1,024 tokens for each of 8 problems, HF generation (vLLM's CUDA build is too
large to carry to the lent machine), β = 0.04. Prints, per step: step time, generation tokens/s, peak GPU memory
and the loss; then the placement check. The vocabulary is Qwen's size (151,936) so logits and embeddings weigh what
they weigh in the recipe; the tokenizer is a word-level stand-in with that many entries.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_model(folder: Path, config: dict) -> Path:
    """A random-weight Qwen2 of ``config``'s shape and a word-level tokenizer covering its whole vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    vocab_size = config["vocab_size"]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    words = [f"w{i}" for i in range(vocab_size - len(specials) - 1)]
    vocab = {w: i for i, w in enumerate(["[UNK]", *words, *specials])}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        unk_token="[UNK]", chat_template=CHATML)
    eos, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    fields = {k: v for k, v in config.items() if k not in ("architectures", "model_type", "torch_dtype")}
    fields.update(eos_token_id=eos, pad_token_id=pad, bos_token_id=None)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**fields))
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train(folder: Path, args) -> None:
    import lightning as L
    import torch

    from r1lit.data import ArithmeticSource, ChatPrompt, MathDataModule
    from r1lit.grpo.losses import GRPOLoss
    from r1lit.module import GRPOModule
    from r1lit.policy.config import PolicyConfig
    from r1lit.rewards import FormatReward
    from r1lit.rollout import SamplingConfig

    on_gpu = torch.cuda.is_available() and not args.smoke
    module = GRPOModule(
        str(folder), rewards=[FormatReward()], loss=GRPOLoss(beta=0.04),
        sampling=SamplingConfig(temperature=0.9, max_tokens=args.max_tokens), num_generations=args.generations,
        micro_batch_size=args.generations, policy=PolicyConfig(gradient_checkpointing=True),
    )
    # padded problems: prompts near the recipe's 256-token limit (the word-level stand-in maps each word to a token)
    data = MathDataModule(source=ArithmeticSource(num_problems=256, max_operand=99, num_operands=60),
                          prompt=ChatPrompt(), tokenizer=str(folder), batch_size=args.batch_size,
                          max_prompt_length=256, val_size=0, check_gold=False)

    class Report(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if on_gpu:
                torch.cuda.reset_peak_memory_stats()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            m = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
            tokens = m["completions/mean_length"] * args.batch_size * args.generations
            peak = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else float("nan")
            print(json.dumps({"step": trainer.global_step, "step_s": round(m["step_time"], 2),
                              "generate_s": round(m["time/generate"], 2), "gen_tokens_per_s": round(tokens / m["time/generate"]),
                              "optimise_s": round(m["time/optimise"], 2), "peak_gpu_gib": round(peak, 2),
                              "loss": m["loss"], "mean_length": m["completions/mean_length"]}), flush=True)

    if on_gpu:
        from lightning.pytorch.strategies import DeepSpeedStrategy

        strategy, precision = DeepSpeedStrategy(config=str(ROOT / "configs" / "deepspeed" / "zero2.json")), "bf16-mixed"
    else:
        strategy, precision = "auto", "32-true"
    trainer = L.Trainer(accelerator="gpu" if on_gpu else "cpu", devices=1, strategy=strategy, precision=precision,
                        max_steps=args.steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[Report()])
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    print(json.dumps({"fit_seconds": round(time.perf_counter() - start, 1),
                      "parameters_M": round(sum(p.numel() for p in module.policy.parameters()) / 1e6, 1)}))


def placement() -> None:
    """Where a child started with a chosen ``CUDA_VISIBLE_DEVICES`` lands: what VLLMServerEngine relies on."""
    import torch

    from r1lit.errors import ConfigError
    from r1lit.rollout.vllm.engine_process import child_environment
    from r1lit.rollout.vllm.placement import physical_gpu, reserved_gpu

    count = torch.cuda.device_count()
    try:
        reserved_gpu(count, count)  # every GPU trains: must be refused
        refused = False
    except ConfigError:
        refused = True
    index = reserved_gpu(count, count - 1)  # the last GPU is the reserved one
    env = child_environment({}, physical_gpu(index))
    probe = ("import os, torch; print(os.environ['CUDA_VISIBLE_DEVICES'], torch.cuda.device_count(), "
             "torch.cuda.get_device_name(0), torch.cuda.current_device())")
    seen = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    print(json.dumps({"visible_gpus": count, "all_training_refused": refused, "reserved_index": index,
                      "child_sees": seen.stdout.strip(), "child_rc": seen.returncode}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--generations", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model, one short step: checks the script")
    args = parser.parse_args()
    config = json.loads((ROOT / "tools" / "gpu" / "qwen2.5-0.5b-config.json").read_text())
    if args.smoke:
        config.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=2000)
        args.steps, args.generations, args.batch_size, args.max_tokens = 1, 4, 2, 8
    with tempfile.TemporaryDirectory() as tmp:
        train(build_model(Path(tmp) / "model", config), args)
    import torch

    if torch.cuda.is_available():
        placement()


if __name__ == "__main__":
    main()
