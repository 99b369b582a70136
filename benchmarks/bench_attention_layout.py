"""One decoder layer's attention over shared-prefix packed rows, two ways: eager attention over each row's whole
square under the packing mask (what r1lit runs), and the same attention gathered per completion, so that no score is
computed for a masked block (each completion against its prompt and itself; each prompt against itself).

    .venv/bin/python benchmarks/bench_attention_layout.py [--prompt-tokens 108] [--completions 64 50 55 60]
        [--rows 4] [--threads 2] [--repeats 10] [--eager-mode]

Queries, keys and values are random bf16 in SmolLM2-135M's shape (9 heads, 3 key/value heads, 64 per head); every row
holds one prompt and the given completions (each feeds its length − 1 tokens, as the packing does). Both functions run
through ``torch.compile(dynamic=True)`` as a compiled decoder layer would run them (``--eager-mode``: not compiled).
It checks that both give the same output on every real token before timing the forward + backward (gradients into
queries, keys and values) and the no-grad forward, best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings
from flop_floor import best_seconds  # noqa: E402
from record import write_result  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64
MIN = torch.finfo(torch.float32).min


def layout(prompt: int, completions: list[int], rows: int) -> dict:
    """Index tensors and masks of ``rows`` identical packed rows [prompt, c1[:-1], c2[:-1], …]."""
    fed = [k - 1 for k in completions]
    length = prompt + sum(fed)
    allowed = torch.zeros(length, length, dtype=torch.bool)
    allowed[:prompt, :prompt] = torch.ones(prompt, prompt, dtype=torch.bool).tril()
    queries, keys, col = [], [], prompt
    for k in fed:
        allowed[col:col + k, :prompt] = True
        allowed[col:col + k, col:col + k] = torch.ones(k, k, dtype=torch.bool).tril()
        queries.append(list(range(col, col + k)))
        keys.append(list(range(prompt)) + list(range(col, col + k)))
        col += k
    tokens = rows * length  # flat index of a token: row * length + column; index ``tokens`` is a scratch slot
    width_q, width_k = max(fed), prompt + max(fed)
    q_idx = torch.tensor([[r * length + c for c in q] + [tokens] * (width_q - len(q)) for r in range(rows) for q in queries])
    k_idx = torch.tensor([[r * length + c for c in k] + [tokens] * (width_k - len(k)) for r in range(rows) for k in keys])
    seen = torch.zeros(len(q_idx), width_q, width_k, dtype=torch.bool)  # [completions, width_q, width_k]
    for c, k in enumerate(fed * rows):
        seen[c, :k, :prompt] = True
        seen[c, :k, prompt:prompt + k] = torch.ones(k, k, dtype=torch.bool).tril()
    seen[:, :, 0] = True  # a padded query sees one key: no softmax over nothing
    p_idx = torch.tensor([[r * length + c for c in range(prompt)] for r in range(rows)])
    return {
        "length": length, "rows": rows, "tokens": tokens,
        "eager_mask": torch.zeros(1, 1, length, length).masked_fill(~allowed, MIN),  # [1, 1, L, L]
        "q_idx": q_idx, "k_idx": k_idx, "p_idx": p_idx,
        "gathered_mask": torch.zeros(seen.shape).masked_fill(~seen, MIN).unsqueeze(1),  # [C, 1, width_q, width_k]
        "prompt_mask": torch.zeros(prompt, prompt).masked_fill(~torch.ones(prompt, prompt, dtype=torch.bool).tril(),
                                                               MIN),  # [P, P]
    }


def attend(q, k, v, additive):
    """Softmax attention in float32 as transformers' eager kernel runs it; q [N, H, Lq, D], k/v [N, KV, Lk, D]."""
    k, v = (x.repeat_interleave(HEADS // KV_HEADS, dim=1) for x in (k, v))
    weights = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(HEAD_DIM) + additive
    weights = torch.softmax(weights, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(weights, v).transpose(1, 2)  # [N, Lq, H, D]


def eager(q, k, v, lay):
    return attend(q, k, v, lay["eager_mask"])  # [R, L, H, D]


def gathered(q, k, v, lay):
    def flat(x):  # [R, heads, L, D] → [R·L + 1, heads, D], the last slot a zero scratch token
        return torch.cat([x.transpose(1, 2).reshape(lay["tokens"], x.shape[1], HEAD_DIM), x.new_zeros(1, x.shape[1], HEAD_DIM)])

    qf, kf, vf = flat(q), flat(k), flat(v)

    def part(q_idx, k_idx, additive):
        return attend(qf[q_idx].transpose(1, 2), kf[k_idx].transpose(1, 2), vf[k_idx].transpose(1, 2), additive)

    out = qf.new_zeros(lay["tokens"] + 1, HEADS, HEAD_DIM)
    out = out.index_put((lay["p_idx"].reshape(-1),), part(lay["p_idx"], lay["p_idx"], lay["prompt_mask"]).reshape(-1, HEADS, HEAD_DIM))
    out = out.index_put((lay["q_idx"].reshape(-1),), part(lay["q_idx"], lay["k_idx"], lay["gathered_mask"]).reshape(-1, HEADS, HEAD_DIM))
    return out[:lay["tokens"]].view(lay["rows"], lay["length"], HEADS, HEAD_DIM)  # [R, L, H, D]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt-tokens", type=int, default=108)
    parser.add_argument("--completions", type=int, nargs="+", default=[64, 50, 55, 60], help="completion lengths of a row")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--eager-mode", action="store_true", help="run both functions uncompiled")
    parser.add_argument("--results", type=Path, default=None,
                        help="result file (default: benchmarks/results/<date>-<commit>-<machine>-bench_attention_layout.json)")
    args = parser.parse_args()
    if min(args.prompt_tokens, args.rows, args.threads, args.repeats) < 1 or min(args.completions) < 2:
        parser.error("--prompt-tokens, --rows, --threads and --repeats must be at least 1 and every completion at "
                     "least 2 tokens")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lay = layout(args.prompt_tokens, args.completions, args.rows)
    R, L = args.rows, lay["length"]
    q = torch.randn(R, HEADS, L, HEAD_DIM, dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(R, KV_HEADS, L, HEAD_DIM, dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    with torch.no_grad():  # every token of these rows is real
        reference = eager(q, k, v, lay)
        gap, scale = float((reference - gathered(q, k, v, lay)).abs().max()), float(reference.abs().max())
    if gap > 0.02 * scale:
        sys.exit(f"the two layouts disagree: max |eager − gathered| {gap:.4g} against outputs up to {scale:.4g}")
    seconds = {}
    for name, fn in (("eager", eager), ("gathered", gathered)):
        run = fn if args.eager_mode else torch.compile(fn, dynamic=True)

        def train():
            run(q, k, v, lay).float().square().sum().backward()

        def infer():
            with torch.no_grad():
                run(q, k, v, lay)

        seconds[name] = {"fwd_bwd": best_seconds(train, args.repeats), "no_grad_fwd": best_seconds(infer, args.repeats)}
    print(f"{R} rows of {L} tokens (prompt {args.prompt_tokens}, completions {args.completions}); "
          f"{'uncompiled' if args.eager_mode else 'compiled'}; one layer, best of {args.repeats}; max |eager − gathered| "
          f"{gap:.3g} (bf16; outputs up to {scale:.3g})")
    print(f"  {'layout':10} {'fwd+bwd ms':>11} {'no-grad fwd ms':>15}")
    for name, t in seconds.items():
        print(f"  {name:10} {t['fwd_bwd'] * 1e3:11.2f} {t['no_grad_fwd'] * 1e3:15.2f}")
    write_result("bench_attention_layout", {"prompt_tokens": args.prompt_tokens, "completions": args.completions,
                                            "rows": R, "row_tokens": L, "compiled": not args.eager_mode,
                                            "max_gap": gap, "seconds": seconds}, args.results)


if __name__ == "__main__":
    main()
