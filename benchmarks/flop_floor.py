"""The FLOP floor of one GRPO step on this machine: the model's own GEMM shapes timed in bf16 and fp32, the step's
arithmetic counted, and a measured step time's ratio to the floor (and to the floor of the unshared layout).

    .venv/bin/python benchmarks/flop_floor.py [--prompts 4] [--generations 4] [--completion-tokens 64] [--decode-steps 64]
        [--step-seconds r1lit-best=20.7 trl-best=27.3 …] [--threads 2] [--smoke]
    .venv/bin/python benchmarks/flop_floor.py --recompute benchmarks/results/*flop_floor*.json

benchmarks/bench_vs_trl.py runs it at the end with the workload's measured completion lengths and step times.

Counted (2 FLOPs per multiply-add; B distinct prompts, G generations each, N = B·G sequences, P prompt tokens,
C completion tokens, both means over real tokens, no padding):
- policy forward + backward = 3 × forward (backward = grad-input + grad-weight GEMMs; the extra forward of
  gradient checkpointing is not counted);
- reference forward = 1 × forward;
- the forward that must be done runs each prompt once per group: B·P + N·C tokens through the linears, each prompt
  token attending causally within its prompt and each completion token to its prompt and its own earlier tokens
  (what r1lit/policy/shared_prefix.py computes); the floor of the unshared layout, every completion with its own
  copy of the prompt (N·(P + C) tokens), is printed next to it. Both feed each completion's last token, which
  predicts nothing scored (about 1/C of the completion work);
- prefill of the B distinct prompts (HF generate prefills all N copies; a floor needs each prompt once);
- decode: ``decode-steps`` − 1 passes over N sequences (the first token comes from the prefill), each new token
  attending to everything before it.
A forward per token = the 7 linear layers of each block + causal attention (QKᵀ and AV over the positions before it)
+ the LM head on the completion tokens only (what both trainers keep logits for; the prefill keeps its last one).

The floor's time = all FLOPs / the model's GEMM rate (forward and backward shapes at the training token count of
that layout, the FLOP-weighted rate over them), except that the decode passes take the larger of their arithmetic
and their weight reads (the weights in the setting's dtype, read once per pass, at the bandwidth of a large tensor
copy): a decode GEMM computes while it streams its weights, so the two overlap, and a floor adds only what cannot.
Norms, softmax, RoPE, the optimizer and sampling are left out: a step cannot be faster than this, and its ratio to
it says how much room there is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/record.py, run as a script or loaded by path
from record import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count needs from a decoder-only (Llama-style) model's config."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def from_config(cls, config) -> "ModelShape":
        heads = config.num_attention_heads
        return cls(
            hidden=config.hidden_size, intermediate=config.intermediate_size, layers=config.num_hidden_layers,
            heads=heads, kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads, vocab=config.vocab_size,
        )

    def linears(self) -> dict[str, tuple[int, int, int]]:
        """One block's linear layers as name -> (in features, out features, how many of this shape)."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        shapes: dict[tuple[int, int], list[str]] = {}
        for name, shape in [("q", (h, q)), ("k", (h, kv)), ("v", (h, kv)), ("o", (q, h)), ("gate", (h, i)),
                            ("up", (h, i)), ("down", (i, h))]:
            shapes.setdefault(shape, []).append(name)
        return {"/".join(names): (a, b, len(names)) for (a, b), names in shapes.items()}

    def block_params(self) -> int:
        """Weights of one block's linear layers."""
        return sum(a * b * n for a, b, n in self.linears().values())

    def matmul_params(self) -> int:
        """Weights a forward pass multiplies by: every block's linears and the LM head (tied or not, read once)."""
        return self.layers * self.block_params() + self.hidden * self.vocab


def linear_flops(shape: ModelShape, tokens: float) -> float:
    """FLOPs of all blocks' linear layers over ``tokens`` tokens."""
    return 2.0 * shape.layers * shape.block_params() * tokens


def lm_head_flops(shape: ModelShape, tokens: float) -> float:
    """FLOPs of the LM head for ``tokens`` positions whose logits are kept."""
    return 2.0 * shape.hidden * shape.vocab * tokens


def attention_flops(shape: ModelShape, context_sum: float) -> float:
    """FLOPs of QKᵀ and AV in every block, where ``context_sum`` is Σ over queries of the positions each attends to."""
    return 4.0 * shape.layers * shape.heads * shape.head_dim * context_sum


def causal_context_sum(length: float) -> float:
    """Σ over a causal sequence of ``length`` tokens of the positions each attends to (itself included)."""
    return length * (length + 1) / 2


def forward_flops(shape: ModelShape, sequences: int, length: float, logit_tokens: float) -> float:
    """One forward over ``sequences`` sequences of ``length`` tokens, logits kept for ``logit_tokens`` of each."""
    per_sequence = (linear_flops(shape, length) + attention_flops(shape, causal_context_sum(length))
                    + lm_head_flops(shape, logit_tokens))
    return sequences * per_sequence


def shared_forward_flops(shape: ModelShape, prompts: int, generations: int, prompt_tokens: float,
                         completion_tokens: float) -> float:
    """One forward over ``prompts`` groups with each prompt computed once: per group P + G·C tokens through the
    linears; attention Σctx = P(P+1)/2 for the prompt and, per completion, C·P + C(C+1)/2 (each of its tokens sees
    the whole prompt and its own tokens up to itself); the LM head on the G·C completion tokens."""
    P, C, G = prompt_tokens, completion_tokens, generations
    context_sum = causal_context_sum(P) + G * (C * P + causal_context_sum(C))
    per_group = (linear_flops(shape, P + G * C) + attention_flops(shape, context_sum)
                 + lm_head_flops(shape, G * C))
    return prompts * per_group


def decode_flops(shape: ModelShape, sequences: int, prompt_tokens: float, passes: int) -> float:
    """``passes`` one-token forwards over ``sequences`` sequences after a prefill of ``prompt_tokens``: pass t
    (1-based) feeds the t-th generated token, which attends to the prompt, the tokens before it and itself."""
    context_sum = passes * prompt_tokens + passes * (passes + 1) / 2
    per_sequence = linear_flops(shape, passes) + attention_flops(shape, context_sum) + lm_head_flops(shape, passes)
    return sequences * per_sequence


def training_tokens(prompts: int, generations: int, prompt_tokens: float,
                    completion_tokens: float) -> dict[str, tuple[float, float]]:
    """Tokens one log-prob forward feeds and keeps logits for, by layout: ``shared`` (each prompt once per group:
    B·P + N·C) and ``unshared`` (every completion with its own copy: N·(P + C)); logits for N·C in both."""
    n = prompts * generations
    return {"shared": (prompts * prompt_tokens + n * completion_tokens, n * completion_tokens),
            "unshared": (n * (prompt_tokens + completion_tokens), n * completion_tokens)}


def step_flops(shape: ModelShape, prompts: int, generations: int, prompt_tokens: float, completion_tokens: float,
               decode_steps: int, shared_prompt: bool = True) -> dict[str, float]:
    """The step's arithmetic by stage (FLOPs); see the module docstring for what each stage counts.
    ``shared_prompt``: each prompt computed once per group in the log-prob passes (False: once per completion)."""
    n = prompts * generations
    if shared_prompt:
        forward = shared_forward_flops(shape, prompts, generations, prompt_tokens, completion_tokens)
    else:
        forward = forward_flops(shape, n, prompt_tokens + completion_tokens, completion_tokens)
    stages = {
        "policy forward + backward": 3.0 * forward,
        "reference forward": forward,
        "prefill (distinct prompts)": forward_flops(shape, prompts, prompt_tokens, 1),
        "decode": decode_flops(shape, n, prompt_tokens, max(decode_steps - 1, 0)),
    }
    stages["total"] = sum(stages.values())
    return stages


def decode_weight_bytes(shape: ModelShape, decode_steps: int, bytes_per_param: int) -> float:
    """Bytes of weights the decode passes read: every matmul weight once per pass."""
    return max(decode_steps - 1, 0) * shape.matmul_params() * bytes_per_param


def floor_seconds(stages: dict[str, float], rate: float, weight_read_seconds: float) -> float:
    """The step's floor from ``step_flops``' stages (FLOPs) at ``rate`` (FLOP/s): every stage's arithmetic, but the
    decode passes' ``weight_read_seconds`` instead of their arithmetic where reading the weights takes longer (a
    pass is bound by whichever of the two is slower; adding both would count time a GEMM overlaps)."""
    decode = stages["decode"] / rate
    return (stages["total"] / rate - decode) + max(decode, weight_read_seconds)


def recomputed(result: dict) -> dict:
    """A stored flop_floor result's bf16 floors (shared and unshared layout) and each measured step's ratio to the
    shared one, recomputed from its stored rates, stage FLOPs and weight-read times by ``floor_seconds``: results
    written before the floor took the larger of decode's arithmetic and weight reads (it added them) read the same
    way as new ones."""
    floors = {layout: floor_seconds({k: v * 1e12 for k, v in stages.items()}, result["gflops"]["bf16"][layout] * 1e9,
                                    result["decode_weight_reads_s"]["bf16"])
              for layout, stages in result["stage_tflop"].items()}
    ratios = {name: row["seconds"] / floors["shared"] for name, row in result["measured"].items()
              if "fp32" not in name}
    return {"floor_s": floors, "stored_floor_s": result["floor_s"]["shared"]["bf16"], "x_floor": ratios}


def read_floor_result(path: Path) -> dict:
    """``recomputed`` of a stored flop_floor result file; ValueError naming what is wrong with it otherwise."""
    try:
        stored = json.loads(path.read_text())
    except OSError as e:
        raise ValueError(f"cannot read it ({e.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a JSON file ({e})") from None
    benchmark = stored.get("benchmark") if isinstance(stored, dict) else None
    if benchmark != "flop_floor" or not isinstance(stored.get("result"), dict):
        raise ValueError(f"not a flop_floor result file (its benchmark: {benchmark!r})")
    try:
        return recomputed(stored["result"])
    except (KeyError, TypeError, ZeroDivisionError) as e:
        raise ValueError(f"its result lacks what the floor needs ({type(e).__name__}: {e})") from None


# ---- measurements ------------------------------------------------------------------------------------------------

def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN picks and caches its kernel for the shape
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def gemm_seconds(m: int, k: int, n: int, dtype, repeats: int) -> dict[str, float]:
    """Best times of a linear layer's three GEMMs for ``m`` tokens, ``k`` in and ``n`` out features:
    forward x·Wᵀ, grad-input g·W and grad-weight gᵀ·x, each into an output allocated once: a new block per call
    would add the allocator's page faults (a fresh mmap per block above 32 MiB with glibc's defaults), which are
    not arithmetic."""
    import torch

    x, w, g = (torch.randn(*s, dtype=dtype) for s in ((m, k), (n, k), (m, n)))
    y, dx, dw = (torch.empty(*s, dtype=dtype) for s in ((m, n), (m, k), (n, k)))
    return {
        "forward": best_seconds(lambda: torch.matmul(x, w.t(), out=y), repeats),
        "grad_input": best_seconds(lambda: torch.matmul(g, w, out=dx), repeats),
        "grad_weight": best_seconds(lambda: torch.matmul(g.t(), x, out=dw), repeats),
    }


def model_gemm_rate(shape: ModelShape, tokens: int, logit_tokens: int, dtype, repeats: int, backward: bool = True) -> float:
    """FLOP/s of one forward (+ backward) of the model's GEMMs: every block's linears at ``tokens`` tokens and the
    LM head at ``logit_tokens``, each shape timed once and counted as often as the model has it."""
    flops = seconds = 0.0
    kinds = ("forward", "grad_input", "grad_weight") if backward else ("forward",)
    gemms = [(k, n, count * shape.layers, tokens) for k, n, count in shape.linears().values()]
    gemms.append((shape.hidden, shape.vocab, 1, logit_tokens))
    for k, n, count, m in gemms:
        if m < 1:
            continue
        measured = gemm_seconds(m, k, n, dtype, repeats)
        for kind in kinds:
            flops += 2.0 * m * k * n * count
            seconds += measured[kind] * count
    return flops / seconds


def copy_bandwidth(megabytes: int, repeats: int) -> float:
    """Bytes/s moved by copying one large tensor into another (read + write counted)."""
    import torch

    src = torch.randn(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / best_seconds(lambda: dst.copy_(src), repeats)


def prompt_token_count(model_path: str, problems_file: str | None) -> float:
    """Mean prompt length of the benchmark's problems through the chat template with the R1-Zero system prompt."""
    from transformers import AutoTokenizer

    from r1lit.data.prompts import ChatPrompt

    if problems_file:
        problems = [json.loads(line)["problem"] for line in open(problems_file)]
    else:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from bench_vs_trl import make_problems

        problems = [p["problem"] for p in make_problems(64)]
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    template = ChatPrompt()
    return statistics.mean(len(tokenizer(template.render(p, tokenizer), add_special_tokens=False)["input_ids"])
                           for p in problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct", help="its config gives the shapes")
    parser.add_argument("--prompts", type=int, default=4, help="B: distinct prompts per step")
    parser.add_argument("--generations", type=int, default=4, help="G: completions per prompt")
    parser.add_argument("--prompt-tokens", type=float, default=None,
                        help="mean prompt length (default: measured on --problems through the chat template)")
    parser.add_argument("--problems", default=None, help="problems jsonl (default: benchmarks/bench_vs_trl.py's 64)")
    parser.add_argument("--completion-tokens", type=float, default=64, help="mean completion length (real tokens)")
    parser.add_argument("--decode-steps", type=int, default=64, help="tokens the longest completion took")
    parser.add_argument("--step-seconds", nargs="+", action="extend", default=[],
                        help="measured step times as NAME=SECONDS (a NAME with 'fp32' is compared with the fp32 floor)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timings per GEMM shape; the best is kept")
    parser.add_argument("--copy-mb", type=int, default=512, help="size of the tensor copied for the bandwidth")
    parser.add_argument("--smoke", action="store_true", help="one timing per shape, few tokens: checks the wiring")
    parser.add_argument("--recompute", nargs="+", type=Path, default=None, metavar="RESULT",
                        help="time nothing: print the bf16 floor and step ratios of stored flop_floor result files")
    parser.add_argument("--results", type=Path, default=None,
                        help="result file (default: benchmarks/results/<date>-<commit>-<machine>-flop_floor.json; "
                             "none with --smoke)")
    args = parser.parse_args()
    if args.recompute:
        if args.step_seconds or args.smoke or args.results is not None:
            parser.error("--recompute times nothing and writes nothing: drop --step-seconds, --smoke and --results")
        print(f"{'result file':72} {'floor s':>8} {'stored':>8}  step / floor")
        failed = 0
        for path in args.recompute:
            try:
                again = read_floor_result(path)
            except ValueError as e:
                print(f"flop_floor: {path}: {e}", file=sys.stderr)
                failed += 1
                continue
            steps = ", ".join(f"{name} {x:.2f}" for name, x in again["x_floor"].items())
            print(f"{path.name:72} {again['floor_s']['shared']:8.2f} {again['stored_floor_s']:8.2f}  {steps}")
        sys.exit(2 if failed else 0)

    import torch
    from transformers import AutoConfig

    from r1lit.policy.loading import resolve_model_path

    torch.set_num_threads(args.threads)
    path = resolve_model_path(args.model)
    shape = ModelShape.from_config(AutoConfig.from_pretrained(path))
    prompt_tokens = args.prompt_tokens if args.prompt_tokens is not None else prompt_token_count(path, args.problems)
    B, G, C, D = args.prompts, args.generations, args.completion_tokens, args.decode_steps
    N = B * G
    repeats, copy_mb = (1, 32) if args.smoke else (args.repeats, args.copy_mb)
    tokens = {name: (round(fed), round(logits)) for name, (fed, logits) in training_tokens(B, G, prompt_tokens, C).items()}
    if args.smoke:
        tokens = {name: (min(fed, 64), min(logits, 16)) for name, (fed, logits) in tokens.items()}

    print(f"model {path}: hidden {shape.hidden}, intermediate {shape.intermediate}, {shape.layers} layers, "
          f"{shape.heads}/{shape.kv_heads} heads × {shape.head_dim}, vocab {shape.vocab}; "
          f"{shape.matmul_params() / 1e6:.1f}M matmul weights")
    print(f"step: {B} prompts × {G} = {N} sequences, prompt {prompt_tokens:.1f} tokens, completion {C:.1f} tokens "
          f"(mean), {D} decode steps; torch threads {torch.get_num_threads()}"
          + ("; SMOKE: token counts cut, one timing per shape" if args.smoke else ""))

    rates: dict[str, dict[str, float]] = {}
    prefill_tokens = 16 if args.smoke else max(round(B * prompt_tokens), 1)
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        rates[name] = {layout: model_gemm_rate(shape, fed, logits, dtype, repeats) for layout, (fed, logits) in tokens.items()}
        rates[name]["prefill"] = model_gemm_rate(shape, prefill_tokens, B, dtype, repeats, backward=False)
        rates[name]["decode"] = model_gemm_rate(shape, N, N, dtype, repeats, backward=False)
    bandwidth = copy_bandwidth(copy_mb, repeats)
    print(f"\nGEMM rate on the model's shapes (GFLOP/s, best of {repeats}):")
    print(f"  {'':56} {'bf16':>8} {'fp32':>8}")
    labels = [(layout, f"forward + backward, {fed} tokens (LM head {logits}), {layout}")
              for layout, (fed, logits) in tokens.items()]
    labels += [("prefill", f"forward, {prefill_tokens} tokens (prefill)"), ("decode", f"forward, {N} tokens (one decode pass)")]
    for key, label in labels:
        print(f"  {label:56} {rates['bf16'][key] / 1e9:8.0f} {rates['fp32'][key] / 1e9:8.0f}")
    print(f"memory: copy of {copy_mb} MiB at {bandwidth / 1e9:.1f} GB/s (read + write)")

    reads = {name: decode_weight_bytes(shape, D, size) / bandwidth for name, size in (("bf16", 2), ("fp32", 4))}
    floors: dict[str, dict[str, float]] = {}
    for layout, title in (("shared", "each prompt once per group: the floor"),
                          ("unshared", "every completion with its own copy of the prompt: the unshared layout's floor")):
        stages = step_flops(shape, B, G, prompt_tokens, C, D, shared_prompt=layout == "shared")
        print(f"\nstep arithmetic, {title} (seconds = FLOP / that layout's forward + backward rate; decode: its "
              "arithmetic or its weight reads at the copy bandwidth, whichever takes longer):")
        print(f"  {'stage':30} {'TFLOP':>7} {'bf16 s':>8} {'fp32 s':>8}")
        for stage, flops in stages.items():
            print(f"  {stage:30} {flops / 1e12:7.3f} {flops / rates['bf16'][layout]:8.2f} "
                  f"{flops / rates['fp32'][layout]:8.2f}")
        print(f"  {'decode weight reads':30} {'':7} {reads['bf16']:8.2f} {reads['fp32']:8.2f}   "
              f"({max(D - 1, 0)} passes × {shape.matmul_params() / 1e6:.1f}M weights × 2 or 4 bytes)")
        floors[layout] = {name: floor_seconds(stages, rates[name][layout], reads[name]) for name in ("bf16", "fp32")}
        print(f"  {'floor (' + layout + ')':30} {'':7} {floors[layout]['bf16']:8.2f} {floors[layout]['fp32']:8.2f}")

    if args.step_seconds:
        print("\nmeasured step / floor (in brackets: / the unshared layout's floor):")
    measured = {}
    for item in args.step_seconds:
        name, _, value = item.rpartition("=")
        seconds = float(value)
        dtypes = ["fp32"] if "fp32" in name else ["bf16"] if name else ["bf16", "fp32"]
        measured[name or "step"] = {"seconds": seconds, **{f"x_{d}_floor_{layout}": seconds / floors[layout][d]
                                                           for d in dtypes for layout in floors}}
        print(f"  {name or 'step':20} {seconds:7.2f} s = " + ", ".join(
            f"{seconds / floors['shared'][d]:.1f} × the {d} floor ({seconds / floors['unshared'][d]:.1f})" for d in dtypes))
    if not args.smoke or args.results is not None:
        write_result("flop_floor", {
            "model": str(path), "prompts": B, "generations": G, "prompt_tokens": prompt_tokens, "completion_tokens": C,
            "decode_steps": D, "threads": torch.get_num_threads(), "repeats": repeats,
            "gflops": {d: {k: v / 1e9 for k, v in r.items()} for d, r in rates.items()},
            "copy_gb_per_s": bandwidth / 1e9,
            "stage_tflop": {layout: {k: v / 1e12 for k, v in step_flops(shape, B, G, prompt_tokens, C, D,
                                                                        shared_prompt=layout == "shared").items()}
                            for layout in floors},
            "decode_weight_reads_s": reads, "floor_s": floors, "measured": measured}, args.results)


if __name__ == "__main__":
    main()
