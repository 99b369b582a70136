"""Benchmark: generation tokens/s of HFEngine, VLLMEngine (in process) and VLLMServerEngine (its own process) on the
embedded model (CPU), and each vLLM engine's weight push; also a training forward/backward timed before and after
an engine starts (on CPU an in-process vLLM pins the process's OpenMP threads, which can take cores from training;
the process engine's threads live in another process).

    .venv/bin/python benchmarks/bench_rollout.py [--prompts 4] [--generations 8] [--max-tokens 64] [--repeats 3]

Prints one table and writes a result file (benchmarks/README.md); docs/benchmarks.md holds its measured numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/record.py, run as a script or loaded by path
from record import write_result  # noqa: E402

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, default=None,
                        help="result file (default: benchmarks/results/<date>-<commit>-<machine>-bench_rollout.json)")
    args = parser.parse_args()

    import torch

    from r1lit.data import ArithmeticSource, ChatPrompt
    from r1lit.policy.loading import load_policy, load_tokenizer, resolve_model_path
    from r1lit.rollout import HFEngine, SamplingConfig, VLLMEngine, VLLMServerEngine
    from r1lit.rollout.vllm.launch import EngineLaunch

    tokenizer = load_tokenizer(args.model)
    policy = load_policy(args.model)
    template = ChatPrompt(prefill="<think>")
    problems = ArithmeticSource(num_problems=args.prompts, max_operand=9, operations="+").load()
    prompt_ids = [tokenizer(template.render(p["problem"], tokenizer), add_special_tokens=False)["input_ids"] for p in problems]
    sampling = SamplingConfig(temperature=1.0, max_tokens=args.max_tokens)

    def rate(engine, context) -> tuple[float, float]:
        speeds, seconds = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            with context():
                rollout = engine.generate(prompt_ids, n=args.generations, sampling=sampling)
            elapsed = time.perf_counter() - start
            speeds.append(float(rollout.completion_lengths.sum()) / elapsed)
            seconds.append(elapsed)
        return statistics.median(speeds), statistics.median(seconds)

    batch = torch.randint(100, 1000, (16, 96))

    def train_step() -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = policy(input_ids=batch, use_cache=False).logits.float().logsumexp(-1).mean()
        loss.backward()
        policy.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    def train_seconds() -> float:
        return statistics.median(train_step() for _ in range(args.repeats))

    class Rows(list):
        def append(self, row) -> None:  # print as measured: a long run stopped half-way keeps what it measured
            super().append(row)
            name, speed, seconds = row
            print(f"{name:30} {speed:10.0f} {seconds:9.2f}" if speed == speed else f"{name:30} {'':>10} {seconds:9.2f}",
                  flush=True)

    rows = Rows()
    rows.append(("train fwd+bwd, no engine", float("nan"), train_seconds()))
    hf = HFEngine()
    hf.bind(policy, tokenizer)
    rows.append(("HFEngine fp32", *rate(hf, torch.no_grad)))
    rows.append(("HFEngine bf16 autocast", *rate(hf, lambda: torch.autocast("cpu", dtype=torch.bfloat16))))

    import contextlib

    launch = EngineLaunch(resolve_model_path(args.model), max_prompt_length=256, max_tokens=args.max_tokens,
                          sequences_per_call=args.prompts * args.generations, log_dir="runs/bench_rollout")
    for cls, dtype in [(VLLMEngine, "float32"), (VLLMEngine, "bfloat16"), (VLLMServerEngine, "float32"),
                       (VLLMServerEngine, "bfloat16")]:
        engine = cls(dtype=dtype, kv_cache_memory_bytes=1 << 30)
        engine.bind(policy, tokenizer)
        engine.start(launch)
        rows.append((f"{cls.__name__} {dtype}", *rate(engine, contextlib.nullcontext)))
        pushes = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            engine.load_weights(policy.named_parameters())
            pushes.append(time.perf_counter() - start)
        rows.append(("  weight push", float("nan"), statistics.median(pushes)))
        rows.append(("  train fwd+bwd, engine up", float("nan"), train_seconds()))
        engine.close()
        del engine

    print(f"\n{args.prompts} prompts × {args.generations} samples, ≤{args.max_tokens} tokens, torch threads "
          f"{torch.get_num_threads()}, VLLM_CPU_OMP_THREADS_BIND={os.environ.get('VLLM_CPU_OMP_THREADS_BIND')}, "
          f"median of {args.repeats}")
    print(f"{'engine':30} {'tokens/s':>10} {'seconds':>9}")
    for name, speed, seconds in rows:
        print(f"{name:30} {speed:10.0f} {seconds:9.2f}" if speed == speed else f"{name:30} {'':>10} {seconds:9.2f}")
    write_result("bench_rollout", {
        "prompts": args.prompts, "generations": args.generations, "max_tokens": args.max_tokens, "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "rows": [{"row": name.strip(), "tokens_per_s": speed if speed == speed else None, "seconds": seconds}
                 for name, speed, seconds in rows]}, args.results)


if __name__ == "__main__":
    main()
