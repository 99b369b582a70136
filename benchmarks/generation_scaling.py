"""How many GPUs per node to reserve for generation (K) and what more nodes buy: a timing model of the reserved
topology at the multi-node recipe's sizes, fed with per-token rates. A prediction, not a measurement: no GPU
cluster has run it here.

    .venv/bin/python benchmarks/generation_scaling.py                    # the table, with the default rates below
    .venv/bin/python benchmarks/generation_scaling.py --decode-rate 12000 --train-rate 15000 --completion-tokens 600
    .venv/bin/python benchmarks/generation_scaling.py --from-run runs/qwen1.5b/version_0 --run-ranks-per-engine 7

The model. Every node has G GPUs: K = data_parallel_size × tensor_parallel_size run its vLLM engine, G − K train
(``trainer.devices``). Each training rank draws ``prompts_per_rank`` prompts × ``generations`` completions per step.
With an engine per node, a node's engine generates that node's ranks' completions; with one engine for the job
(``engine_per_node: false``) node 0's engine generates every rank's. Generation time = the completion tokens an
engine decodes ÷ its rate: data parallel splits them evenly over dp replicas; one replica on tp GPUs decodes
tp × ``tp_efficiency`` ** log2(tp) times as fast as on one (tensor parallel gains sub-linearly: every layer all-reduces
and a small model's GEMMs shrink). Optimisation time = a rank's prompt + completion tokens ÷ the training rate (ZeRO-2
data parallel: each rank trains its own batch). The synchronous step is generate + score + optimise + push; one-step-off
is max(generate, score + optimise) + push (``async_speedup.StepParts``). Pushes to the engines run in parallel, one
per node, so push time does not grow with nodes. Left out: prefill (a prompt of ≤ 256 tokens is prefilled once for
its 16 completions, < 2 % of 1,024 decoded tokens each), uneven completion lengths inside a step, gradient
communication across nodes (measure the training rate at the rank count you run to include it).

Default rates: assumptions for Qwen2.5-1.5B (1.54e9 parameters, 28 layers, 2 KV heads of 128) on H100 SXM-class GPUs,
derived from the datasheet's peaks with stated efficiencies; no published per-stage rate for a 1.5B model was found.
- training 19,266 tokens/s per GPU: 30 % of 989 TFLOP/s (bf16 dense) ÷ 10 × 1.54e9 FLOPs per token (policy forward +
  backward = 6N, the forward again under gradient checkpointing 2N, the reference forward 2N);
- decode 29,514 tokens/s per GPU: 30 % of the HBM bound at 3.35 TB/s with 256 sequences decoding together at a mean
  context of 768 tokens (each step reads the bf16 weights, 3.08 GB, and 256 × 768 × 28,672 B of KV cache).
Feed measured rates instead (``--decode-rate``, ``--train-rate``), or ``--from-run`` a synchronous run's TensorBoard
folder: decode rate = completions per engine per step × ``completions/mean_length`` ÷ (``time/generate`` × engine
GPUs), training rate = prompts × generations × (prompt + mean completion tokens) ÷ ``time/optimise``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/async_speedup.py, as a script or by path
from async_speedup import StepParts, medians_from_run  # noqa: E402

H100_BF16_FLOPS = 989e12  # dense bf16 tensor-core peak, H100 SXM datasheet
H100_HBM_BYTES_PER_S = 3.35e12  # HBM3, H100 SXM datasheet
QWEN_1_5B_PARAMETERS = 1.54e9
QWEN_1_5B_KV_BYTES_PER_TOKEN = 28 * 2 * 2 * 128 * 2  # layers × (K, V) × KV heads × head dim × bf16 bytes = 28,672


def training_rate_from_mfu(parameters: float, peak_flops: float, mfu: float, flops_per_parameter: float = 10.0) -> float:
    """Training tokens/s of one GPU at a model-FLOPs utilisation ``mfu``: each token costs ``flops_per_parameter`` ×
    parameters FLOPs (10: policy forward + backward 6, checkpointing's recomputed forward 2, the reference forward 2)."""
    return mfu * peak_flops / (flops_per_parameter * parameters)


def decode_rate_from_bandwidth(parameters: float, kv_bytes_per_token: float, sequences: int, mean_context: float,
                               bytes_per_second: float, efficiency: float) -> float:
    """Decode tokens/s of one GPU when each step of ``sequences`` new tokens reads the bf16 weights once and every
    sequence's KV cache (``mean_context`` tokens), at ``efficiency`` of the memory bandwidth."""
    step_bytes = 2 * parameters + sequences * mean_context * kv_bytes_per_token
    return efficiency * bytes_per_second / step_bytes * sequences


DEFAULT_TRAIN_RATE = training_rate_from_mfu(QWEN_1_5B_PARAMETERS, H100_BF16_FLOPS, 0.30)
DEFAULT_DECODE_RATE = decode_rate_from_bandwidth(QWEN_1_5B_PARAMETERS, QWEN_1_5B_KV_BYTES_PER_TOKEN, 256, 768,
                                                 H100_HBM_BYTES_PER_S, 0.30)


@dataclass(frozen=True)
class Layout:
    """Where things run: ``nodes`` × ``gpus_per_node`` GPUs, K = dp × tp reserved per node."""

    nodes: int
    gpus_per_node: int = 8
    data_parallel: int = 1
    tensor_parallel: int = 1
    engine_per_node: bool = True

    @property
    def reserved(self) -> int:
        return self.data_parallel * self.tensor_parallel

    @property
    def ranks_per_node(self) -> int:
        return self.gpus_per_node - self.reserved

    @property
    def ranks(self) -> int:
        return self.nodes * self.ranks_per_node

    @property
    def ranks_per_engine(self) -> int:
        return self.ranks_per_node if self.engine_per_node else self.ranks


@dataclass(frozen=True)
class Workload:
    """One step's sizes per training rank (the recipe's: 8 prompts × 16 completions, ≤ 256 + 1,024 tokens)."""

    prompts_per_rank: int = 8
    generations: int = 16
    prompt_tokens: float = 256
    completion_tokens: float = 1024

    @property
    def completions_per_rank(self) -> int:
        return self.prompts_per_rank * self.generations


@dataclass(frozen=True)
class Rates:
    """Per-GPU rates and the parts that do not scale with tokens."""

    decode_tokens_per_s: float = DEFAULT_DECODE_RATE
    train_tokens_per_s: float = DEFAULT_TRAIN_RATE
    tp_efficiency: float = 0.8
    score_s: float = 0.0
    push_s: float = 0.5


def replica_speedup(tensor_parallel: int, efficiency: float) -> float:
    """How much faster one replica decodes on ``tensor_parallel`` GPUs than on one: tp × efficiency ** log2(tp)."""
    return tensor_parallel * efficiency ** math.log2(tensor_parallel)


def step_parts(layout: Layout, workload: Workload, rates: Rates) -> StepParts:
    """Seconds of each part of one synchronous step (the slowest engine's generation)."""
    if layout.ranks_per_node < 1:
        raise ValueError(f"K = {layout.reserved} leaves no training GPU of {layout.gpus_per_node} per node")
    decoded = layout.ranks_per_engine * workload.completions_per_rank * workload.completion_tokens
    engine_rate = rates.decode_tokens_per_s * layout.data_parallel * replica_speedup(layout.tensor_parallel,
                                                                                      rates.tp_efficiency)
    trained = workload.completions_per_rank * (workload.prompt_tokens + workload.completion_tokens)
    return StepParts(generate=decoded / engine_rate, score=rates.score_s,
                     optimise=trained / rates.train_tokens_per_s, push=rates.push_s)


def completions_per_second(layout: Layout, workload: Workload, seconds_per_step: float) -> float:
    return layout.ranks * workload.completions_per_rank / seconds_per_step


def rates_from_run(parts: StepParts, mean_completion: float, workload: Workload, ranks_per_engine: int,
                   engine_gpus: int, tp_efficiency: float = 0.8) -> Rates:
    """Per-GPU rates from a synchronous run's medians: its engine decoded ``ranks_per_engine`` × completions per rank
    × ``mean_completion`` tokens in ``parts.generate`` seconds on ``engine_gpus`` GPUs (data parallel); each rank
    trained its completions' prompt + completion tokens in ``parts.optimise``."""
    decoded = ranks_per_engine * workload.completions_per_rank * mean_completion
    trained = workload.completions_per_rank * (workload.prompt_tokens + mean_completion)
    return Rates(decode_tokens_per_s=decoded / (parts.generate * engine_gpus),
                 train_tokens_per_s=trained / parts.optimise, tp_efficiency=tp_efficiency,
                 score_s=parts.score, push_s=parts.push)


def table(nodes: list[int], ks: list[int], workload: Workload, rates: Rates, gpus_per_node: int = 8,
          tensor_parallel: bool = False) -> str:
    """Markdown: one row per (nodes, K), K as data parallel replicas (or one tensor-parallel replica)."""
    lines = ["| nodes | K (dp × tp) | training ranks | completions / step | generate s | optimise s | synchronous s "
             "| one-step-off s | completions/s, engine per node | completions/s, one engine (node 0) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in nodes:
        for k in ks:
            dp, tp = (1, k) if tensor_parallel else (k, 1)
            layout = Layout(n, gpus_per_node, dp, tp, engine_per_node=True)
            if layout.ranks_per_node < 1:
                continue
            parts = step_parts(layout, workload, rates)
            single = step_parts(replace(layout, engine_per_node=False), workload, rates)
            per_step = layout.ranks * workload.completions_per_rank
            lines.append(
                f"| {n} | {k} ({dp} × {tp}) | {layout.ranks} | {per_step} | {parts.generate:.1f} | "
                f"{parts.optimise:.1f} | {parts.synchronous():.1f} | {parts.one_step_off():.1f} | "
                f"{completions_per_second(layout, workload, parts.one_step_off()):.0f} | "
                f"{completions_per_second(layout, workload, single.one_step_off()):.0f} |")
    return "\n".join(lines)


def run_medians(run: Path) -> tuple[StepParts, float]:
    """A synchronous run's median step parts and median ``completions/mean_length`` (first step skipped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    parts = medians_from_run(run)
    acc = EventAccumulator(str(run))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    if "completions/mean_length" not in tags:
        raise SystemExit(f"{run} has no completions/mean_length: give a TensorBoard folder of an r1lit fit")
    if "rollout/staleness" in tags and max(e.value for e in acc.Scalars("rollout/staleness")) > 0:
        raise SystemExit(f"{run} sampled with stale weights (rollout/staleness > 0): under one-step-off its "
                         "time/generate is the wait for a rollout, not the generation. Give a synchronous run "
                         "(model.async_generation: false, weights pushed every step)")
    lengths = [e.value for e in acc.Scalars("completions/mean_length")]
    return parts, statistics.median(lengths[1:] or lengths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 4], help="reserved GPUs per node")
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--prompts-per-rank", type=int, default=8, help="data.batch_size")
    parser.add_argument("--generations", type=int, default=16, help="model.num_generations")
    parser.add_argument("--prompt-tokens", type=float, default=256, help="mean prompt tokens (recipe's cap: 256)")
    parser.add_argument("--completion-tokens", type=float,
                        help="mean completion tokens (default: the recipe's cap, 1024, or a run's mean length)")
    parser.add_argument("--decode-rate", type=float, default=DEFAULT_DECODE_RATE, help="decode tokens/s per engine GPU")
    parser.add_argument("--train-rate", type=float, default=DEFAULT_TRAIN_RATE, help="training tokens/s per rank")
    parser.add_argument("--tp-efficiency", type=float, default=0.8, help="tensor parallel's gain kept per doubling")
    parser.add_argument("--score", type=float, default=0.0, help="seconds of scoring per step")
    parser.add_argument("--push", type=float, default=0.5, help="seconds of weight push per step")
    parser.add_argument("--tensor-parallel", action="store_true", help="K as one tensor-parallel replica, not dp")
    parser.add_argument("--from-run", type=Path, help="TensorBoard folder of a synchronous run: its measured rates")
    parser.add_argument("--run-ranks-per-engine", type=int, default=1, help="ranks the run's engine served")
    parser.add_argument("--run-engine-gpus", type=int, default=1, help="GPUs of the run's engine (data parallel)")
    args = parser.parse_args(argv)
    workload = Workload(args.prompts_per_rank, args.generations, args.prompt_tokens, args.completion_tokens or 1024)
    if args.from_run is not None:
        parts, mean_completion = run_medians(args.from_run)
        rates = rates_from_run(parts, mean_completion, workload, args.run_ranks_per_engine, args.run_engine_gpus,
                               args.tp_efficiency)
        workload = replace(workload, completion_tokens=args.completion_tokens or mean_completion)
        source = f"measured in {args.from_run} (mean completion {mean_completion:.0f} tokens)"
    else:
        rates = Rates(args.decode_rate, args.train_rate, args.tp_efficiency, args.score, args.push)
        source = "given" if (args.decode_rate, args.train_rate) != (DEFAULT_DECODE_RATE, DEFAULT_TRAIN_RATE) else \
            "assumed (H100-class defaults, see --help)"
    print(f"rates ({source}): decode {rates.decode_tokens_per_s:,.0f} tokens/s per engine GPU, training "
          f"{rates.train_tokens_per_s:,.0f} tokens/s per rank, score {rates.score_s:.2f} s, push {rates.push_s:.2f} s; "
          f"per rank {workload.prompts_per_rank} prompts × {workload.generations} completions of "
          f"{workload.prompt_tokens:.0f} + {workload.completion_tokens:.0f} tokens\n")
    print(table(args.nodes, args.k, workload, rates, args.gpus_per_node, args.tensor_parallel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
