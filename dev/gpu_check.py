"""GPU check: what the Qwen recipes run on one GPU, unattended, with a randomly initialised model of Qwen2.5-0.5B's
shape (dev/gpu/qwen2.5-0.5b-config.json; no hub). Every section prints one JSON line; a failing section prints its
error and the others still run; the exit code is the number of failed sections.

    bash dev/gpu_check.sh                     # on the lent GPU machine (installs the carried wheels, then this)
    python3 dev/gpu_check.py --dry-run        # CPU: a tiny model, the same sections where CPU can run them

Sections: ``environment`` (versions; MPI never initialised: Lightning gets a cluster environment, DeepSpeed the
rendezvous variables), ``recipe`` (``r1lit fit --config configs/qwen0.5b.yaml`` with only the model, data and
engine swapped; reward and reward_std read back from TensorBoard, the checkpoint found), ``train:<json>``
(Lightning's DeepSpeedStrategy with configs/deepspeed/zero2.json and zero2_offload.json, bf16-mixed, gradient
checkpointing, G = 16, HF generation: vLLM's CUDA build is too large to carry, so the weight push is not exercised
here; then ZeRO-2 with ``compile_layers``), ``nan_skip:<json>`` (each shipped JSON through
``deepspeed.initialize``: an update with a NaN gradient is discarded and does not leak into the next),
``colocate`` (the colocated engine's memory arithmetic for 0.5B and 1.5B on this GPU and on 80 GiB),
``placement`` (where a child started with ``CUDA_VISIBLE_DEVICES`` lands).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
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


def train(folder: Path, args, ds_json: str | None, compile_layers: bool = False) -> dict:
    """A few GRPO steps; ``ds_json`` None = CPU (the dry run: DeepSpeed's Lightning strategy needs CUDA);
    ``compile_layers``: ``model.policy.compile_layers`` (the first step includes the compile)."""
    import lightning as L
    import torch
    from lightning.fabric.plugins.environments import LightningEnvironment

    from r1lit.data import ArithmeticSource, ChatPrompt, MathDataModule
    from r1lit.grpo.losses import GRPOLoss
    from r1lit.module import GRPOModule
    from r1lit.policy.config import PolicyConfig
    from r1lit.rewards import FormatReward
    from r1lit.rollout import SamplingConfig

    on_gpu = ds_json is not None
    resident = None
    if on_gpu:  # what an earlier section left allocated would count in this one's peak
        gc.collect()
        torch.cuda.empty_cache()
        resident = round(torch.cuda.memory_allocated() / 2**30, 2)
    module = GRPOModule(
        str(folder), rewards=[FormatReward()], loss=GRPOLoss(beta=0.04),
        sampling=SamplingConfig(temperature=0.9, max_tokens=args.max_tokens), num_generations=args.generations,
        micro_batch_size=args.generations, policy=PolicyConfig(gradient_checkpointing=True, compile_layers=compile_layers),
    )
    # padded problems: prompts near the recipe's 256-token limit (the word-level stand-in maps each word to a token)
    data = MathDataModule(source=ArithmeticSource(num_problems=256, max_operand=99, num_operands=60),
                          prompt=ChatPrompt(), tokenizer=str(folder), batch_size=args.batch_size,
                          max_prompt_length=256, val_size=0, check_gold=False)
    steps = []

    class Report(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if on_gpu:
                torch.cuda.reset_peak_memory_stats()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            m = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
            tokens = m["completions/mean_length"] * args.batch_size * args.generations
            peak = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else float("nan")
            steps.append({"step": trainer.global_step, "step_s": round(m["step_time"], 2),
                          "gen_tokens_per_s": round(tokens / m["time/generate"]), "optimise_s": round(m["time/optimise"], 2),
                          "peak_gpu_gib": round(peak, 2), "loss": m["loss"], "skipped": m.get("train/skipped_steps")})

    if on_gpu:
        from lightning.pytorch.strategies import DeepSpeedStrategy

        strategy, precision = DeepSpeedStrategy(config=ds_json), "bf16-mixed"
    else:
        strategy, precision = "auto", "32-true"
    trainer = L.Trainer(accelerator="gpu" if on_gpu else "cpu", devices=1, strategy=strategy, precision=precision,
                        max_steps=args.steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[Report()],
                        plugins=[LightningEnvironment()])  # a cluster environment: Lightning never probes MPI
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    return {"fit_s": round(time.perf_counter() - start, 1), "steps": steps, "allocated_before_gib": resident,
            "parameters_M": round(sum(p.numel() for p in module.policy.parameters()) / 1e6, 1)}


def recipe(folder: Path, args, run_dir: Path, on_gpu: bool) -> dict:
    """configs/qwen0.5b.yaml through the ``r1lit`` command, as users launch it, with what cannot travel swapped:
    the random model of Qwen2.5-0.5B's shape for the hub's, HF generation for vLLM (synchronous: one-step-off needs
    the server engine), generated arithmetic for MATH (no validation sets). On CPU (the dry run) the strategy and
    precision are swapped too. Reads back what the run left: TensorBoard's reward and reward_std, the checkpoint."""
    cmd = [sys.executable, "-m", "r1lit.cli", "fit", "--config", "configs/qwen0.5b.yaml",
           "--model.model_name_or_path", str(folder), "--model.engine", "HFEngine", "--model.async_generation", "false",
           "--data.source", "ArithmeticSource", "--data.source.num_problems", "256", "--data.source.max_operand", "99",
           "--data.source.num_operands", "60", "--data.val_sources", "{}", "--data.check_gold", "false",
           "--trainer.max_steps", str(args.steps), "--trainer.logger.init_args.save_dir", str(run_dir)]
    if not on_gpu:
        cmd += ["--trainer.accelerator", "cpu", "--trainer.strategy", "auto", "--trainer.precision", "32-true",
                "--model.sampling.max_tokens", str(args.max_tokens), "--model.num_generations", str(args.generations),
                "--model.micro_batch_size", str(args.generations), "--data.batch_size", str(args.batch_size)]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.recipe_timeout)
    took = round(time.perf_counter() - start, 1)
    out = {"rc": done.returncode, "fit_s": took}
    if done.returncode != 0:
        out["stderr_tail"] = done.stderr[-2500:]
        out["ok"] = False
        return out
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = {e.parent for e in run_dir.rglob("events.out.tfevents.*")}
    scalars = EventAccumulator(str(events)).Reload()
    tags = scalars.Tags()["scalars"]
    wanted = [t for t in tags if t.split("/")[-1] in ("reward", "reward_std", "loss", "step_time", "kl")
              or t.startswith("time/")]
    out["scalars"] = {t: [round(e.value, 4) for e in scalars.Scalars(t)] for t in wanted}
    out["checkpoints"] = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*.ckpt"))
    out["stderr_tail"] = done.stderr[-800:]
    out["ok"] = any(t.endswith("reward_std") for t in wanted) and any(c.endswith("last.ckpt") for c in out["checkpoints"])
    return out


def nan_gradient(x):
    """Identity forward, NaN backward: a finite loss whose gradient is not finite."""
    import torch

    class NaNGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t.clone()

        @staticmethod
        def backward(ctx, grad):
            return torch.full_like(grad, float("nan"))

    return NaNGradient.apply(x)


def one_process_group(on_gpu: bool) -> None:
    """The world of one that ``deepspeed.initialize`` needs outside Lightning (a train section may have made it)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_gpu else "gloo", rank=0, world_size=1)
    if on_gpu:
        torch.cuda.set_device(0)


def nan_skip(ds_json: Path, on_gpu: bool) -> dict:
    """Weights after updates clean, NaN-gradient, clean equal those after clean, clean (r1lit's ``guarded_step``
    with a real DeepSpeed engine); the NaN update is counted, not applied."""
    import deepspeed
    import torch

    one_process_group(on_gpu)

    from r1lit.training.nonfinite import NonFiniteGuard, guarded_step

    def run(faulty: bool) -> tuple[list, list[bool], int]:
        config = json.loads(ds_json.read_text())
        config.update(train_micro_batch_size_per_gpu=2, gradient_clipping=1.0e6)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
        engine, _, _, _ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2),
                                               model_parameters=model.parameters(), config=config,
                                               dist_init_required=False)

        class Stepper:
            def step(self):
                engine.step()

            def zero_grad(self, set_to_none=True):
                engine.optimizer.zero_grad(set_to_none=set_to_none)

        guard, stepped, clean_batches = NonFiniteGuard(3), [], 0
        for bad in [False, True, False] if faulty else [False, False]:
            x = torch.randn(4, 8, generator=torch.Generator().manual_seed(99 if bad else clean_batches))
            clean_batches += not bad
            for micro in range(2):
                engine.set_gradient_accumulation_boundary(micro == 1)
                out = engine(x[micro * 2:(micro + 1) * 2].to(engine.device, next(engine.module.parameters()).dtype))
                loss = (nan_gradient(out) if bad else out).float().pow(2).mean()
                engine.backward(loss)
            stepped.append(guarded_step(guard, Stepper(), float(loss), None, None, engine)[0])
        from deepspeed.utils import safe_get_full_fp32_param

        weights = [safe_get_full_fp32_param(p).float().cpu().flatten().tolist() for p in engine.module.parameters()]
        return weights, stepped, guard.skipped

    clean, _, _ = run(False)
    faulty, stepped, skipped = run(True)
    return {"stepped": stepped, "skipped": skipped, "next_update_unaffected": faulty == clean,
            "ok": stepped == [True, False, True] and skipped == 1 and faulty == clean}


def colocate(gpu_bytes: int | None) -> dict:
    """The colocated engine's share for Qwen2.5-0.5B and 1.5B (ZeRO-2, one rank) on this GPU and on 80 GiB."""
    from r1lit.errors import ConfigError
    from r1lit.rollout.vllm.placement import GIB, colocated_budget

    sizes = {"qwen2.5-0.5b": 494_032_768, "qwen2.5-1.5b": 1_543_714_304}
    gpus = {"80GiB": 80 * GIB, **({"this_gpu": gpu_bytes} if gpu_bytes else {})}
    out = {}
    for model, params in sizes.items():
        for gpu, size in gpus.items():
            try:
                out[f"{model}@{gpu}"] = colocated_budget(params, 2, 1, size)[2]
            except ConfigError as error:
                out[f"{model}@{gpu}"] = str(error)
    return out


def environment() -> dict:
    import lightning
    import torch
    import transformers

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "lightning": lightning.__version__,
            "transformers": transformers.__version__, "cuda": torch.cuda.is_available()}
    try:
        import deepspeed

        info["deepspeed"] = deepspeed.__version__
    except ImportError as error:
        info["deepspeed"] = f"missing: {error}"
    return info


def mpi_initialised() -> bool | None:
    """Whether anything in this process called MPI_Init (None: no mpi4py here). Asked without initialising MPI."""
    try:
        import mpi4py

        mpi4py.rc.initialize = False
        from mpi4py import MPI
    except ImportError:
        return None
    return bool(MPI.Is_initialized())


def placement() -> dict:
    """Where a child started with a chosen ``CUDA_VISIBLE_DEVICES`` lands: what VLLMServerEngine relies on."""
    import torch

    from r1lit.errors import ConfigError
    from r1lit.rollout.vllm.engine_process import child_environment
    from r1lit.rollout.vllm.placement import physical_gpus, reserved_gpus

    count = torch.cuda.device_count()
    try:
        reserved_gpus(count, count, 1)  # every GPU trains: must be refused
        refused = False
    except ConfigError:
        refused = True
    (index,) = reserved_gpus(count, count - 1, 1)  # the last GPU is the reserved one
    env = child_environment({}, physical_gpus([index]))
    probe = ("import os, torch; print(os.environ['CUDA_VISIBLE_DEVICES'], torch.cuda.device_count(), "
             "torch.cuda.get_device_name(0), torch.cuda.current_device())")
    seen = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    return {"visible_gpus": count, "all_training_refused": refused, "reserved_index": index,
            "child_sees": seen.stdout.strip(), "child_rc": seen.returncode}


def chosen_sections(only: str | None, names: list[str]) -> set[str]:
    """``--only``'s sections: a word equal to a name picks that section, another word every name it begins
    (``train``, ``nan_skip``); a word that picks nothing is refused, naming the sections there are."""
    if only is None:
        return set(names)
    chosen: set[str] = set()
    for word in (w.strip() for w in only.split(",")):
        picked = [word] if word in names else [name for name in names if word and name.startswith(word)]
        if not picked:
            raise SystemExit(f"gpu_check: --only {word!r} picks no section on this machine; its sections: "
                             f"{', '.join(names)}")
        chosen.update(picked)
    return chosen


def section(name: str, call, failures: list) -> None:
    """Run one section and print its JSON lines; a failure is recorded and the next section still runs."""
    start = time.perf_counter()
    try:
        result = call()
        print(json.dumps({"section": name, "result": result}, default=str), flush=True)
        if isinstance(result, dict) and result.get("ok") is False:
            failures.append(name)
    except Exception as error:  # noqa: BLE001 - reported, and the next section still runs
        failures.append(name)
        print(json.dumps({"section": name, "error": f"{type(error).__name__}: {error}",
                          "trace": traceback.format_exc()[-3000:]}), flush=True)
    print(json.dumps({"section": name, "took_s": round(time.perf_counter() - start, 1)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="steps per DeepSpeed config")
    parser.add_argument("--generations", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--recipe-timeout", type=float, default=300, help="seconds the recipe's fit may take")
    parser.add_argument("--only", default=None,
                        help="comma-separated sections to run, or prefixes of their names (recipe,train,nan_skip); default: all")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model: every section CPU can run")
    args = parser.parse_args()
    for key, value in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29517"), ("RANK", "0"), ("LOCAL_RANK", "0"),
                       ("WORLD_SIZE", "1")):  # DeepSpeed probes MPI when these are missing
        os.environ.setdefault(key, value)
    import torch

    on_gpu = torch.cuda.is_available() and not args.dry_run
    config = json.loads((ROOT / "dev" / "gpu" / "qwen2.5-0.5b-config.json").read_text())
    if args.dry_run:
        config.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, vocab_size=2000)
        args.steps, args.generations, args.batch_size, args.max_tokens = 1, 4, 2, 8
    deepspeed_dir = ROOT / "configs" / "deepspeed"
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        model = functools.cache(lambda: build_model(Path(tmp) / "model", config))  # built once, if a section needs it
        plan = {"environment": environment, "recipe": lambda: recipe(model(), args, Path(tmp) / "runs", on_gpu)}
        if on_gpu:
            for name in ("zero2.json", "zero2_offload.json"):
                plan[f"train:{name}"] = lambda n=name: train(model(), args, str(deepspeed_dir / n))
            plan["train:zero2.json+compile_layers"] = lambda: train(model(), args, str(deepspeed_dir / "zero2.json"),
                                                                   compile_layers=True)
        else:
            plan["train:cpu"] = lambda: train(model(), args, None)
            plan["train:cpu+compile_layers"] = lambda: train(model(), args, None, compile_layers=True)
        for path in sorted(deepspeed_dir.glob("*.json")):
            plan[f"nan_skip:{path.name}"] = lambda p=path: nan_skip(p, on_gpu)
        plan["colocate"] = lambda: colocate(torch.cuda.get_device_properties(0).total_memory if on_gpu else None)
        plan["mpi"] = lambda: {"mpi_initialised": mpi_initialised()}
        if on_gpu:
            plan["placement"] = placement
        chosen = chosen_sections(args.only, list(plan))
        for name, call in plan.items():
            if name in chosen:
                section(name, call, failures)
    print(json.dumps({"failed_sections": failures}), flush=True)
    raise SystemExit(len(failures))


if __name__ == "__main__":
    main()
