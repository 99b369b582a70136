"""What many test files share: the console script, a tiny config, reading TensorBoard, fitting in a subprocess.
Fixtures live in conftest.py; test files import helpers from here, never from each other."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from r1lit.rollout.background import BackgroundGeneration, finished
from r1lit.rollout.hf import HFEngine
from r1lit.rollout.vllm.base import VLLMSettings

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus() -> list[str]:
    from r1lit.data.prompts import R1_ZERO_SYSTEM_PROMPT

    words = "What is Compute Calculate Find the value of answer think system user assistant reasoning".split()
    return [R1_ZERO_SYSTEM_PROMPT] * 20 + [" ".join(words)] * 5 + [f"{a} + {b} = {a + b}" for a in range(30) for b in range(10)]


def build_tiny_model(folder: Path, seed: int = 0, hidden_size: int = 32, num_heads: int = 4) -> Path:
    """A 2-layer Qwen2 (hidden 32, tied embeddings) with a 400-token byte-level BPE and a ChatML template.

    vLLM's CPU attention wants head_dim 32 or more: its tests pass hidden_size=64, num_heads=2."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    raw.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML
    )
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2,
        num_attention_heads=num_heads, num_key_value_heads=max(num_heads // 2, 1), max_position_embeddings=1024, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def adamw(lr: float):
    """An optimizer callable for GRPOModule(optimizer=...): AdamW with the recipe's betas, no weight decay."""
    import torch

    return lambda params: torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.0)


KV_BYTES = 64 << 20  # bound the CPU KV cache of test vLLM engines (vLLM would take ~15 GB)

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parent  # tests/support: classes that test configs name by class_path
SCRIPT = Path(sys.executable).parent / "r1lit"  # the console script: tests cover the installed entry point
SUBPROCESS_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


def fit_command(config: Path, *extra: str) -> list[str]:
    """``r1lit fit`` on a config file, as argv; run it with ``SUBPROCESS_ENV`` so classes in tests/ resolve."""
    return [str(SCRIPT), "fit", "--config", str(config), *extra]


def tiny_config(tmp_path: Path, model_dir: Path, **overrides) -> dict:
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 3,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "limit_val_batches": 0,
            "log_every_n_steps": 1,
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(tmp_path / "runs"), "name": "tiny"},
            },
            "callbacks": [
                {"class_path": "PrintGroups", "init_args": {"every_n_steps": 1, "max_groups": 1}},
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True}},
            ],
        },
        "model": {
            "model_name_or_path": str(model_dir),
            "rewards": [
                {"class_path": "AccuracyReward"},
                {"class_path": "FormatReward", "init_args": {"partial_credit": 0.5}},
                {"class_path": "custom_rewards.LengthReward"},
            ],
            "loss": {"class_path": "GRPOLoss", "init_args": {"beta": 0.04}},
            "sampling": {"max_tokens": 16},
            "num_generations": 4,
            "micro_batch_size": 4,
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-3, "betas": [0.9, 0.99], "weight_decay": 0.0}},
        },
        "data": {"source": {"class_path": "ArithmeticSource", "init_args": {"num_problems": 32}}, "batch_size": 2},
    }
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return config


def write_config(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def scalars(run_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def fit(config: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    """``r1lit fit`` on a config file in its folder; ``check``: assert it succeeded (False: the caller reads the
    exit code and the message of a run that should fail)."""
    result = subprocess.run(fit_command(config, *extra), cwd=config.parent, env=SUBPROCESS_ENV,
                            capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def hashes(prefix: Path, rank: int) -> dict[int, str]:
    lines = Path(f"{prefix}.rank{rank}").read_text().splitlines()
    return {r["step"]: r["hash"] for r in map(json.loads, lines)}


def vllm_config(tmp_path: Path, model_dir: Path, steps: int) -> dict:
    config = tiny_config(tmp_path, model_dir, **{"trainer.max_steps": steps})
    config["trainer"]["callbacks"] = [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True}},
    ]  # the r1lit command adds the VLLMEngineCallback
    config["model"]["engine"] = {"class_path": "VLLMEngine", "init_args": {"dtype": "float32", "kv_cache_memory_bytes": KV_BYTES}}
    config["model"]["loss"]["init_args"]["importance_sampling"] = {"class_path": "ImportanceSampling", "init_args": {"cap": 2.0}}
    config["model"]["sampling"]["temperature"] = 0.9
    config["trainer"]["logger"]["init_args"]["version"] = "run"  # the resume logs into the same folder
    return config



class SnapshotEngine(BackgroundGeneration, VLLMSettings):
    """Stands in for vLLM in its own process, on CPU in milliseconds: HF generation from the engine's own copy of
    the policy, which only weight pushes change. ``submit`` generates at once, from the weights held at the ask
    (what the real engine's push-waits-for-generation rule guarantees); ``calls`` records, per generation, the
    prompts and a fingerprint of the weights that produced it."""

    def bind(self, policy, tokenizer):
        super().bind(policy, tokenizer)
        self.model = copy.deepcopy(policy).eval()
        self.hf, self.calls = HFEngine(return_logprobs=True), []
        self.hf.bind(self.model, tokenizer)

    def start(self, launch):
        pass

    def generate(self, prompt_ids, n, sampling, seed=None):
        self.calls.append((prompt_ids, fingerprint(self.model)))
        return self.hf.generate(prompt_ids, n, sampling, seed)

    def submit(self, prompt_ids, n, sampling, seed=None):
        return finished(self.generate(prompt_ids, n, sampling, seed))

    def load_weights(self, named_tensors):
        self.wait_idle()
        self.model.load_state_dict({k: v.detach().clone() for k, v in named_tensors}, strict=False)

    def close(self):
        self.stop_background()


def fingerprint(model) -> float:
    """A number that changes when any weight does (the weights' sum, weighted by position)."""
    with torch.no_grad():
        return float(sum((p.double().flatten() * torch.linspace(1, 2, p.numel(), dtype=torch.float64)).sum()
                         for p in model.parameters()))


def load_tool(name: str, folder: str = "tools"):
    """``<folder>/<name>.py`` (``tools``, ``benchmarks`` or ``dev``) as a module (scripts, not a package),
    registered in ``sys.modules`` so that its dataclasses find their module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def loss_inputs(logps, old_logps, ref_logps, advantages, token_weights, sampler_logps=None):
    """A ``LossInputs`` for loss tests: the trained tokens are those with weight, the entropy mask is all of them."""
    from r1lit.grpo.types import LossInputs

    mask = (token_weights > 0).float()
    return LossInputs(logps=logps, old_logps=old_logps, ref_logps=ref_logps, sampler_logps=sampler_logps,
                      advantages=advantages, token_weights=token_weights, mask=mask, entropy_mask=mask)


def thp_mode() -> str:
    """The kernel's THP mode: always, madvise or never (the bracketed word of the sysfs file)."""
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    text = path.read_text() if path.exists() else "[never]"
    return text[text.index("[") + 1:text.index("]")]
