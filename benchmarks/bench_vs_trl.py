"""Side by side with TRL: TRL's GRPOTrainer and ``r1lit fit`` on one workload, alternating, in one invocation.

    make install trl-env      # r1lit's .venv and TRL's own .venv-trl (TRL is never a dependency of r1lit)
    .venv/bin/python benchmarks/bench_vs_trl.py [--steps 8] [--repeats 2] [--only trl|r1lit] [--settings best fp32 vllm fast]
    .venv/bin/python benchmarks/bench_vs_trl.py --smoke    # 2 steps, 2 prompts × 2 samples, 8 tokens: checks the wiring

The workload (the issue's): SmolLM2-135M-Instruct (the embedded model, fp32 weights); 64 problems "What is A ± B?"
with A, B in 10..99 from a fixed seed, written once to ``<workdir>/problems.jsonl`` that both read; the R1-Zero system
prompt through the chat template; r1lit's AccuracyReward and FormatReward (weight 1 each) in both; 4 prompts × 4
generations per step, ≤ 64 new tokens, temperature 1, β 0.04 (so both keep a reference model), ε 0.2, the GRPO loss
(per-sequence token mean), μ 1, fused AdamW (TRL's default optim) with lr 1e-5, 8 steps, HF generation, 2 threads
(``OMP_NUM_THREADS=2``; TRL's runner also calls ``torch.set_num_threads``), one forward/backward of all 16 completions
per step in both.

Settings: ``best`` = bf16 autocast + gradient checkpointing in both (fp32 weights); ``fp32`` = no autocast, no
checkpointing: r1lit's defaults, whereas TRL's GRPOConfig defaults are bf16 + checkpointing, so its fp32 run sets
``bf16=False, gradient_checkpointing=False`` explicitly; ``vllm`` = best, r1lit generating with its vLLM CPU engine;
``fast`` = r1lit's fastest (vLLM compiled, the policy's decoder layers and the LM head's log-prob math compiled, no
checkpointing, eager attention) against TRL's best; for A/B runs of each compile, ``fast_eager`` = fast with vLLM's
model eager, ``fast_layers_eager`` = fast with the policy's layers eager and ``fast_logprobs_eager`` = fast with the
log-prob math eager, ``fast_block128`` = fast with vLLM's 128-token KV blocks (none runs unless named:
``--settings fast fast_layers_eager --only r1lit``). Runs go TRL,
r1lit, TRL, r1lit … per setting and repeat.

Per step: TRL's time from a TrainerCallback (on_step_begin → on_step_end: generation, rewards, reference forward,
policy forward/backward, optimizer step); r1lit's logged ``step_time`` (training_step: the same stages; manual
optimisation puts the optimizer step inside it) plus, with the vLLM engine, ``time/weight_push`` (the callback that
sends the new weights after the step). Medians over steps 2..N (step 1 carries one-time work). Peak RSS:
this process samples /proc every 0.2 s and sums the resident memory of the run's whole process tree (the trainer and
its children: answer-checking workers), keeping the maximum; shared pages of children count once per process. The
output ends with the FLOP floor of the measured workload (benchmarks/flop_floor.py) and each median's ratio to it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/record.py, run as a script or loaded by path
from record import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")
GIB = 1024**3


@dataclass
class Workload:
    problems: int = 64
    prompts: int = 4
    generations: int = 4
    max_tokens: int = 64
    steps: int = 8
    temperature: float = 1.0
    beta: float = 0.04
    epsilon: float = 0.2
    learning_rate: float = 1e-5
    seed: int = 0
    threads: int = 2


SMOKE = dict(problems=8, prompts=2, generations=2, max_tokens=8, steps=2)
SETTINGS = {  # extra arguments of each implementation's command
    "best": {"trl": ["--bf16", "--gradient-checkpointing"],
             "r1lit": ["--trainer.precision=bf16-mixed", "--model.policy.gradient_checkpointing=true"]},
    "fp32": {"trl": [], "r1lit": []},  # r1lit's defaults: 32-true, no checkpointing; TRL's runner sets both off
    # best, and r1lit generates with its vLLM CPU engine in process (TRL's runner keeps HF generate: its vLLM modes
    # are CUDA's); not the like-for-like workload, so reported as its own setting
    "vllm": {"trl": ["--bf16", "--gradient-checkpointing"],
             "r1lit": ["--trainer.precision=bf16-mixed", "--model.policy.gradient_checkpointing=true",
                       "--model.engine=VLLMEngine", "--model.engine.dtype=bfloat16",
                       f"--model.engine.kv_cache_memory_bytes={1 << 30}"]},
}
# r1lit's fastest here: vllm without checkpointing (more memory), eager attention (on CPU the SDPA kernel takes
# twice as long as eager's bf16 matmuls at these short rows: docs/benchmarks.md, "Attention kernels on CPU"),
# vLLM's model compiled (less generation time for ~40 s more at the engine's start, outside the timed steps:
# docs/benchmarks.md, "2026-12-04, fast with vLLM compiled"), the policy's decoder layers and the LM head's log-prob
# math compiled (compiles in the first step, outside the medians: docs/benchmarks.md, "Compiled decoder layers" and
# "Compiled log-prob math"), and LM-head chunks of 1,024 tokens (a step's ~870 scored tokens in one chunk, whose
# logits are then kept for backward, not recomputed: 85 MB of bf16 logits)
SETTINGS["fast"] = {"trl": SETTINGS["best"]["trl"],
                    "r1lit": [*(a for a in SETTINGS["vllm"]["r1lit"] if "gradient_checkpointing" not in a),
                              "--model.policy.attn_implementation=eager", "--model.engine.enforce_eager=false",
                              "--model.policy.compile_layers=true", "--model.policy.compile_logprobs=true",
                              "--model.policy.logprob_chunk_tokens=1024"]}
# fast with vLLM's model eager: run beside fast (--settings fast fast_eager --only r1lit) for the compile's share
SETTINGS["fast_eager"] = {"trl": SETTINGS["fast"]["trl"],
                          "r1lit": [a for a in SETTINGS["fast"]["r1lit"] if "enforce_eager" not in a]}
# fast with the LM head's log-prob math eager: run beside fast for the share of compile_logprobs
SETTINGS["fast_logprobs_eager"] = {"trl": SETTINGS["fast"]["trl"],
                                   "r1lit": [a for a in SETTINGS["fast"]["r1lit"] if "compile_logprobs" not in a]}
# fast with the policy's layers eager: run beside fast for the share of compile_layers
SETTINGS["fast_layers_eager"] = {"trl": SETTINGS["fast"]["trl"],
                                 "r1lit": [a for a in SETTINGS["fast"]["r1lit"] if "compile_layers" not in a]}
# fast with vLLM's CPU default of 128-token KV blocks: run beside fast for the share of prompt sharing in generation
SETTINGS["fast_block128"] = {"trl": SETTINGS["fast"]["trl"],
                             "r1lit": [*SETTINGS["fast"]["r1lit"], "--model.engine.block_size=128"]}
DESCRIBE = {"best": "bf16 autocast + gradient checkpointing", "fp32": "fp32, no checkpointing",
            "vllm": "best; r1lit generates with vLLM (CPU, in process), TRL with HF generate",
            "fast": "r1lit: bf16 autocast + vLLM, decoder layers and log-prob math compiled, no checkpointing, eager attention; TRL: best",
            "fast_eager": "fast with vLLM's model eager (enforce_eager, r1lit's default)",
            "fast_layers_eager": "fast with the policy's decoder layers eager (compile_layers off, r1lit's default)",
            "fast_logprobs_eager": "fast with the LM head's log-prob math eager (compile_logprobs off, r1lit's default)",
            "fast_block128": "fast with vLLM's CPU default of 128-token KV blocks (r1lit's CPU default: 32)"}


def make_problems(count: int, seed: int = 0) -> list[dict[str, str]]:
    """``count`` problems "What is A + B?" / "What is A - B?" with A, B in 10..99, the same for the same seed."""
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        a, b, op = rng.randint(10, 99), rng.randint(10, 99), rng.choice("+-")
        records.append({"problem": f"What is {a} {op} {b}?", "answer": str(a + b if op == "+" else a - b)})
    return records


def r1lit_config(w: Workload, problems: Path, logs: Path, keep_host_memory: bool = True) -> dict:
    """The ``r1lit fit`` config of the workload: everything else is r1lit's default, plus (``keep_host_memory``) the
    opt-in ``KeepFreedHostMemory`` callback (glibc keeps freed memory: a CPU step without page faults on large
    tensors)."""
    return {
        "seed_everything": w.seed,
        "trainer": {
            "accelerator": "cpu", "devices": 1, "max_steps": w.steps, "log_every_n_steps": 1,
            "num_sanity_val_steps": 0, "limit_val_batches": 0, "enable_checkpointing": False,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(logs)}},
            "callbacks": [{"class_path": "KeepFreedHostMemory"}] if keep_host_memory else [],
        },
        "model": {
            "model_name_or_path": "embedded:smollm2-135m-instruct",
            "rewards": [{"class_path": "AccuracyReward"}, {"class_path": "FormatReward"}],
            "loss": {"class_path": "GRPOLoss", "init_args": {"epsilon": w.epsilon, "beta": w.beta}},
            "sampling": {"temperature": w.temperature, "max_tokens": w.max_tokens},
            "num_generations": w.generations,
            "micro_batch_size": w.prompts * w.generations,  # one forward/backward per step, as TRL's batch here
            "num_iterations": 1,
            "optimizer": {"class_path": "torch.optim.AdamW",
                          "init_args": {"lr": w.learning_rate, "betas": [0.9, 0.99], "weight_decay": 0.0,
                                        "fused": True}},  # TRL's default optim is adamw_torch_fused
        },
        "data": {
            "source": {"class_path": "DatasetSource",
                       "init_args": {"path": str(problems), "problem_field": "problem", "answer_field": "answer"}},
            "prompt": {"class_path": "ChatPrompt"},  # the R1-Zero system prompt through the chat template
            "batch_size": w.prompts,
        },
    }


# ---- peak memory of a process tree -----------------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # fields after the command name: state, ppid, …
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree_rss(root: int) -> tuple[int, int]:
    """(bytes resident in ``root`` and all its descendants, bytes resident in ``root`` alone)."""
    kids, total, own, stack = _children(), 0, 0, [root]
    while stack:
        pid = stack.pop()
        try:
            rss = int(open(f"/proc/{pid}/statm").read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue  # exited between the listing and the read
        total += rss
        own = rss if pid == root else own
        stack.extend(kids.get(pid, []))
    return total, own


@dataclass
class Run:
    index: int
    setting: str
    impl: str
    command: list[str]
    seconds: list[float]  # per step
    lengths: list[float]  # mean completion length per step
    max_lengths: list[float]
    split: dict[str, list[float]]  # r1lit's time/generate, time/score, time/optimise per step
    peak_rss: int
    peak_main_rss: int
    wall: float

    def median(self, values: list[float] | None = None) -> float:
        values = self.seconds if values is None else values
        later = values[1:]  # steps 2..N
        return statistics.median(later) if later else float("nan")


def launch(command: list[str], env: dict[str, str], log: Path, interval: float) -> tuple[int, int, int, float]:
    """Run ``command``; return (exit code, peak tree RSS, peak RSS of the process itself, wall seconds)."""
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        peak = peak_main = 0
        try:
            while process.poll() is None:
                total, own = tree_rss(process.pid)
                peak, peak_main = max(peak, total), max(peak_main, own)
                time.sleep(interval)
        except BaseException:
            os.killpg(process.pid, 9)
            process.wait()
            raise
    return process.returncode, peak, peak_main, time.perf_counter() - start


def trl_results(path: Path) -> tuple[list[float], list[float], list[float], dict]:
    seconds, lengths, max_lengths, setup = {}, {}, {}, {}
    for line in open(path):
        record = json.loads(line)
        if "setup" in record:
            setup = record["setup"]
        elif "seconds" in record:
            seconds[record["step"]] = record["seconds"]
        elif "completions/mean_length" in record.get("logs", {}):
            lengths[record["step"]] = record["logs"]["completions/mean_length"]
            max_lengths[record["step"]] = record["logs"]["completions/max_length"]
    steps = sorted(seconds)
    return ([seconds[s] for s in steps], [lengths.get(s, float("nan")) for s in steps],
            [max_lengths.get(s, float("nan")) for s in steps], setup)


def r1lit_results(log_dir: Path) -> dict[str, list[float]]:
    metrics = next(log_dir.glob("version_*/metrics.csv"))
    rows = [r for r in csv.DictReader(open(metrics)) if r.get("step_time")]
    keys = ("time/generate", "time/score", "time/optimise", "time/weight_push", "completions/mean_length",
            "completions/max_length")
    logged = {k: [float(r[k]) for r in rows if r.get(k)] for k in keys}
    # the vLLM engine's weight push runs in a callback after training_step: part of the step as TRL's clock sees it
    logged["step_time"] = [float(r["step_time"]) + float(r.get("time/weight_push") or 0.0) for r in rows]
    return logged


def versions(python: str) -> str:
    code = ("import importlib.metadata as m\nout=[]\nfor p in ('torch','transformers','lightning','trl'):\n"
            "    try: out.append(p+' '+m.version(p))\n    except m.PackageNotFoundError: pass\nprint(', '.join(out))")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return done.stdout.strip() or done.stderr.strip()[-200:]


def shell(env_extra: dict[str, str], command: list[str]) -> str:
    return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env_extra.items()), *map(shlex.quote, command)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default 8; 2 with --smoke)")
    parser.add_argument("--repeats", type=int, default=2, help="how many times each pair runs (TRL, r1lit, TRL, r1lit …)")
    parser.add_argument("--only", choices=["trl", "r1lit"], default=None, help="run one implementation only")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS),
                        default=[name for name in SETTINGS if not name.startswith("fast_")])
    parser.add_argument("--smoke", action="store_true", help="2 steps, 2 prompts × 2 samples, 8 tokens, 1 repeat")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench_vs_trl")
    parser.add_argument("--trl-python", default=str(ROOT / ".venv-trl" / "bin" / "python"), help="from `make trl-env`")
    parser.add_argument("--r1lit", default=str(Path(sys.executable).parent / "r1lit"), help="r1lit's console script")
    parser.add_argument("--sample-interval", type=float, default=0.2, help="seconds between RSS samples")
    parser.add_argument("--no-floor", action="store_true", help="skip benchmarks/flop_floor.py at the end")
    parser.add_argument("--glibc-default", action="store_true",
                        help="r1lit without the KeepFreedHostMemory callback (glibc's default allocator settings)")
    parser.add_argument("--results", type=Path, default=None,
                        help="result file (default: benchmarks/results/<date>-<commit>-<machine>-bench_vs_trl.json; "
                             "none with --smoke)")
    args = parser.parse_args()

    w = Workload(**(SMOKE if args.smoke else {}))
    w.steps = args.steps or w.steps
    repeats = 1 if args.smoke else args.repeats
    impls = [args.only] if args.only else ["trl", "r1lit"]
    if "trl" in impls and not Path(args.trl_python).exists():
        sys.exit(f"{args.trl_python} not found: run `make trl-env` first (TRL's own environment)")
    if "r1lit" in impls and not Path(args.r1lit).exists():
        sys.exit(f"{args.r1lit} not found: run this with r1lit's environment (.venv/bin/python) or pass --r1lit")

    import yaml

    from r1lit.data.prompts import R1_ZERO_SYSTEM_PROMPT
    from r1lit.policy.loading import resolve_model_path

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    problems = work / "problems.jsonl"
    problems.write_text("".join(json.dumps(p) + "\n" for p in make_problems(w.problems, w.seed)))
    model = resolve_model_path("embedded:smollm2-135m-instruct")  # converted once; TRL loads the same folder
    workload = work / "workload.json"
    workload.write_text(json.dumps({**asdict(w), "model": model, "problems": str(problems),
                                    "system_prompt": R1_ZERO_SYSTEM_PROMPT}, indent=1))
    config = work / "r1lit.yaml"
    config.write_text(yaml.safe_dump(r1lit_config(w, problems, work / "r1lit", not args.glibc_default), sort_keys=False))

    env_extra = {"OMP_NUM_THREADS": str(w.threads), "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false",
                 "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                 "VLLM_CPU_OMP_THREADS_BIND": "nobind"}  # vLLM's CPU worker would pin the trainer to one core
    for name in ("R1LIT_CACHE_DIR", "THP_MEM_ALLOC_ENABLE"):  # passed on and written into each run's command
        if name in os.environ:
            env_extra[name] = os.environ[name]
    env = {**os.environ, **env_extra}

    def command(impl: str, setting: str, label: str) -> list[str]:
        if impl == "trl":
            return [args.trl_python, "benchmarks/trl_grpo.py", f"--workload={workload}", f"--out={work / label}.jsonl",
                    f"--output-dir={work / 'trl_out'}", *SETTINGS[setting]["trl"]]
        return [args.r1lit, "fit", f"--config={config}", f"--trainer.logger.init_args.name={label}",
                *SETTINGS[setting]["r1lit"]]

    print(f"workload: {asdict(w)}; repeats {repeats}; settings {args.settings}; work folder {work}")
    if "r1lit" in impls:
        print(f"r1lit env: {versions(str(Path(args.r1lit).parent / 'python'))}")
    if "trl" in impls:
        print(f"TRL env:   {versions(args.trl_python)}")
    runs: list[Run] = []
    for repeat in range(repeats):
        for setting in args.settings:
            for impl in impls:
                label = f"{impl}-{setting}-{repeat + 1}"
                cmd = command(impl, setting, label)
                for stale in (work / f"{label}.jsonl", work / "r1lit" / label):
                    shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
                print(f"[{time.strftime('%H:%M:%S')}] {label}: {shell(env_extra, cmd)}", flush=True)
                code, peak, peak_main, wall = launch(cmd, env, work / f"{label}.log", args.sample_interval)
                if code != 0:
                    tail = (work / f"{label}.log").read_text()[-4000:]
                    sys.exit(f"{label} failed with exit code {code}; log {work / label}.log:\n{tail}")
                if impl == "trl":
                    seconds, lengths, max_lengths, setup = trl_results(work / f"{label}.jsonl")
                    split = {}
                    print(f"    TRL as set up: {json.dumps(setup)}")
                else:
                    logged = r1lit_results(work / "r1lit" / label)
                    seconds, lengths, max_lengths = logged.pop("step_time"), logged.pop("completions/mean_length"), logged.pop("completions/max_length")
                    split = logged
                run = Run(len(runs) + 1, setting, impl, cmd, seconds, lengths, max_lengths, split, peak, peak_main, wall)
                runs.append(run)
                print(f"    {len(seconds)} steps, median step {run.median():.2f} s (steps 2..{len(seconds)}), "
                      f"peak RSS {peak / GIB:.2f} GiB (main process {peak_main / GIB:.2f}), wall {wall:.0f} s", flush=True)
    report(runs, w, args, env_extra)


def report(runs: list[Run], w: Workload, args, env_extra: dict[str, str]) -> None:
    print(f"\nper run (steps per run {w.steps}; medians over steps 2..{w.steps}; gen/opt: r1lit's time/generate and "
          "time/optimise; RSS = trainer + children)")
    print(f"{'#':>2} {'setting':8} {'impl':6} {'median step s':>13} {'min..max s':>13} {'gen s':>6} {'opt s':>6} "
          f"{'compl. len':>10} {'peak RSS GiB':>12} {'main GiB':>8} {'wall s':>6}")
    for r in runs:
        gen, opt = (f"{r.median(r.split[k]):6.2f}" if k in r.split else f"{'-':>6}" for k in ("time/generate", "time/optimise"))
        later = r.seconds[1:] or [float("nan")]
        span = f"{min(later):.2f}..{max(later):.2f}"
        print(f"{r.index:>2} {r.setting:8} {r.impl:6} {r.median():13.2f} {span:>13} "
              f"{gen} {opt} {r.median(r.lengths):10.1f} {r.peak_rss / GIB:12.2f} "
              f"{r.peak_main_rss / GIB:8.2f} {r.wall:6.0f}")

    print(f"\nsummary: median step over steps 2..{w.steps} of all repeats pooled; peak RSS = the largest of the repeats")
    print(f"{'setting':48} {'TRL s':>7} {'r1lit s':>7} {'r1lit/TRL':>9} {'TRL GiB':>8} {'r1lit GiB':>9} {'r1lit/TRL':>9}")
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    for setting in dict.fromkeys(r.setting for r in runs):
        row = {}
        for impl in ("trl", "r1lit"):
            mine = [r for r in runs if r.setting == setting and r.impl == impl]
            steps = [s for r in mine for s in r.seconds[1:]]
            row[impl] = (statistics.median(steps) if steps else float("nan"), max((r.peak_rss for r in mine), default=0) / GIB)
        summary[setting] = row
        (ts, tm), (rs, rm) = row["trl"], row["r1lit"]
        ratio = lambda a, b: f"{a / b:9.2f}" if b == b and b > 0 and a == a and a > 0 else f"{'-':>9}"  # noqa: E731
        print(f"{setting + ' (' + DESCRIBE[setting] + ')':48} {ts:7.2f} {rs:7.2f} {ratio(rs, ts)} "
              f"{tm:8.2f} {rm:9.2f} {ratio(rm, tm)}")

    print("\ncommands (from the repository root; one per implementation and setting, as run above):")
    seen = set()
    for r in runs:
        if (r.impl, r.setting) not in seen:
            seen.add((r.impl, r.setting))
            print(f"  {r.impl:6} {r.setting:5}: {shell(env_extra, r.command)}")
    again = [a for a in sys.argv[1:]]
    print(f"  whole benchmark: {shlex.quote(sys.executable)} benchmarks/bench_vs_trl.py {' '.join(map(shlex.quote, again))}".rstrip())
    if not args.smoke or args.results is not None:
        write_result("bench_vs_trl", {
            "workload": asdict(w), "environment": env_extra,
            "runs": [{"setting": r.setting, "impl": r.impl, "median_step_s": r.median(), "step_s": r.seconds,
                      "completion_lengths": r.lengths, "split": {k: r.median(v) for k, v in r.split.items()},
                      "peak_rss_gib": r.peak_rss / GIB, "peak_main_rss_gib": r.peak_main_rss / GIB, "wall_s": r.wall,
                      "command": shell(env_extra, r.command)} for r in runs],
            "summary": {setting: {impl: {"median_step_s": sec, "peak_rss_gib": gib} for impl, (sec, gib) in row.items()}
                        for setting, row in summary.items()}}, args.results)

    if args.no_floor:
        return
    lengths = [x for r in runs for x in r.lengths[1:] if x == x]
    max_lengths = [x for r in runs for x in r.max_lengths[1:] if x == x]
    floor = [sys.executable, str(ROOT / "benchmarks" / "flop_floor.py"), f"--prompts={w.prompts}",
             f"--generations={w.generations}", f"--threads={w.threads}",
             f"--completion-tokens={statistics.median(lengths) if lengths else w.max_tokens:.1f}",
             f"--decode-steps={round(statistics.median(max_lengths)) if max_lengths else w.max_tokens}",
             f"--problems={Path(args.workdir).resolve() / 'problems.jsonl'}"]
    for setting, row in summary.items():
        for impl, (seconds, _) in row.items():
            if seconds == seconds:
                floor.append(f"--step-seconds={impl}-{setting}={seconds:.2f}")
    if args.smoke:
        floor.append("--smoke")
    if args.results is not None:  # next to this run's file, not over the default one of another run at this commit
        name = args.results.name
        name = name.replace("bench_vs_trl", "flop_floor") if "bench_vs_trl" in name else f"{args.results.stem}-flop_floor.json"
        floor.append(f"--results={args.results.with_name(name)}")
    floor_env = {k: env_extra[k] for k in ("OMP_NUM_THREADS", "PYTHONPATH", "R1LIT_CACHE_DIR") if k in env_extra}
    print(f"\nFLOP floor of the measured workload (median completion length and decode steps of the runs above):\n"
          f"  {shell(floor_env, floor)}", flush=True)
    subprocess.run(floor, cwd=ROOT, env={**os.environ, **floor_env}, check=True)


if __name__ == "__main__":
    main()
