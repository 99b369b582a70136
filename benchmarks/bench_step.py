"""Benchmark: the embedded default's whole GRPO step with each rollout engine (HF generate, vLLM in process, vLLM in
its own process), from real ``r1lit fit`` runs of ``configs/smollm2-cpu.yaml``.

    .venv/bin/python benchmarks/bench_step.py [--steps 8] [--engines hf inprocess process process_async hf_checkpointing process_unshared
        process_block128]

Each run trains ``--steps`` steps from the same seed; the table gives medians over steps 2.. (step 1 includes
start-up work) of ``step_time``, ``time/generate``, ``time/optimise`` and ``time/weight_push`` from TensorBoard,
plus the wall time of the whole command (engine start included). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/record.py, run as a script or loaded by path
from record import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENGINES = {
    "hf": ["--model.engine=HFEngine"],
    "inprocess": ["--model.engine=VLLMEngine", "--model.engine.dtype=bfloat16",
                  "--model.engine.kv_cache_memory_bytes=1073741824"],
    "process": ["--model.engine=VLLMServerEngine", "--model.engine.dtype=bfloat16",
                "--model.engine.kv_cache_memory_bytes=1073741824"],
}
ENGINES["process_async"] = ENGINES["process"] + ["--model.async_generation=true"]  # one-step-off on the same engine
ENGINES["hf_checkpointing"] = ENGINES["hf"] + ["--model.policy.gradient_checkpointing=true"]  # activations recomputed
# the config's engine with every completion scored beside its own copy of the prompt (shared-prefix log-probs off)
ENGINES["process_unshared"] = ENGINES["process"] + ["--model.policy.shared_prefix=false"]
# the config's engine with vLLM's CPU default of 128-token KV blocks: a prompt under 128 tokens is prefilled per sample
ENGINES["process_block128"] = ENGINES["process"] + ["--model.engine.block_size=128"]
TAGS = ("step_time", "time/generate", "time/optimise", "time/weight_push", "reward")


def scalars(run_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument("--out", type=Path, default=None, help="keep the runs' logs here (default: a temporary folder)")
    parser.add_argument("--results", type=Path, default=None,
                        help="result file (default: benchmarks/results/<date>-<commit>-<machine>-bench_step.json)")
    args = parser.parse_args()
    script = Path(sys.executable).parent / "r1lit"
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = str(args.out.resolve()) if args.out else scratch
        for name in args.engines:
            start = time.perf_counter()
            command = [str(script), "fit", "--config", str(ROOT / "configs" / "smollm2-cpu.yaml"),
                       f"--trainer.max_steps={args.steps}", f"--trainer.logger.init_args.save_dir={tmp}",
                       f"--trainer.logger.init_args.name={name}", "--trainer.val_check_interval=1000",
                       *ENGINES[name]]
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            logged = scalars(next(Path(tmp, name).glob("version_*")))
            medians = {t: statistics.median(logged[t][1:]) if len(logged.get(t, [])) > 1 else float("nan") for t in TAGS}
            rewards = logged["reward"]  # the curve: mean of the first 5 and of the last 10 steps
            medians["reward 1-5"] = statistics.mean(rewards[:5])
            medians["reward last 10"] = statistics.mean(rewards[-10:])
            rows.append((name, wall, medians))
    print(f"\nembedded default, {args.steps} steps, medians over steps 2..{args.steps}")
    columns = [*TAGS, "reward 1-5", "reward last 10"]
    print(f"{'engine':16} {'wall s':>7} " + " ".join(f"{t:>16}" for t in columns))
    for name, wall, medians in rows:
        print(f"{name:16} {wall:7.0f} " + " ".join(f"{medians[t]:16.3f}" for t in columns))
    write_result("bench_step", {"steps": args.steps, "medians_over": f"steps 2..{args.steps}",
                                "engines": {name: {"wall_s": wall, **medians} for name, wall, medians in rows}},
                 args.results)


if __name__ == "__main__":
    main()
