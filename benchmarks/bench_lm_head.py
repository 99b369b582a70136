"""The LM head's log-probs by each route on one shape: forward + backward (the policy's pass, with the entropy as a
metric, as the trainer's first iteration asks) and a no-grad forward (the reference's), best of ``--repeats``.

    .venv/bin/python benchmarks/bench_lm_head.py [--tokens 870] [--hidden 576] [--vocab 49152]
        [--chunk-tokens 256 1024] [--bf16] [--keep-host-memory] [--threads 2] [--repeats 5]

Routes: ``module``: the head called per chunk inside an activation checkpoint (what heads ``HeadLogprobs`` cannot read
take: a bias, a subclass, a ZeRO-3 partition); ``one_node``: ``HeadLogprobs`` with the eager kernels;
``one_node_compiled``: with the compiled kernels (``model.policy.compile_logprobs``). The defaults are SmolLM2-135M's
head at TRL's comparison workload (16 completions of ~54 tokens: 870 scored tokens); random hidden states, weights
and targets (seeded). Under ``--bf16`` the policy's head is float32 under bf16 autocast without autocast's weight
cache (as Lightning's bf16-mixed runs it) and the reference's head is bfloat16 (``bf16_reference``). It checks
that every route gives the module route's log-probs before timing them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling flop_floor.py
from flop_floor import best_seconds  # noqa: E402
from record import write_result  # noqa: E402


class ModuleHead(nn.Linear):
    """The same head, of a type ``plain_head_weight`` leaves to the module route."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=870, help="scored tokens in the pass")
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--chunk-tokens", type=int, nargs="+", default=[256, 1024],
                        help="model.policy.logprob_chunk_tokens values to time each route at")
    parser.add_argument("--bf16", action="store_true", help="under bf16 autocast, as bf16-mixed trains")
    parser.add_argument("--keep-host-memory", action="store_true",
                        help="what the KeepFreedHostMemory callback does on a CPU fit: glibc keeps freed memory")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results", type=Path, default=None,
                        help="result file (default: benchmarks/results/<date>-<commit>-<machine>-bench_lm_head.json)")
    args = parser.parse_args()
    if min(args.tokens, args.hidden, args.vocab, *args.chunk_tokens) < 1:
        sys.exit("--tokens, --hidden, --vocab and --chunk-tokens must be at least 1")

    from r1lit.policy.logit_kernels import LogitKernels
    from r1lit.policy.logprobs import head_logprobs
    from r1lit.training.host_memory import keep_freed_host_memory

    torch.set_num_threads(args.threads)
    if args.keep_host_memory and not keep_freed_host_memory():
        sys.exit("--keep-host-memory: this C library is not glibc")
    torch.manual_seed(0)
    plain = nn.Linear(args.hidden, args.vocab, bias=False)
    module = ModuleHead(args.hidden, args.vocab, bias=False)
    with torch.no_grad():
        plain.weight.normal_(0.0, 0.05)  # logits of a few units over the vocabulary
        module.weight.copy_(plain.weight)
    heads = {"module": module, "one_node": plain, "one_node_compiled": plain}
    kernels = {"module": LogitKernels(), "one_node": LogitKernels(), "one_node_compiled": LogitKernels(compiled=True)}
    references = {name: _reference(head, args.bf16) for name, head in heads.items()}
    hidden = torch.randn(1, args.tokens, args.hidden)
    targets = torch.randint(0, args.vocab, (1, args.tokens))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16, cache_enabled=False)

    def policy_pass(name: str, chunk: int) -> torch.Tensor:
        h = hidden.clone().requires_grad_(True)
        with autocast:
            logps, _ = head_logprobs(heads[name], h, targets, 1.0, chunk, "metric", kernels[name])
        logps.sum().backward()
        heads[name].weight.grad = None
        return logps.detach()

    @torch.no_grad()
    def reference_pass(name: str, chunk: int) -> torch.Tensor:
        with autocast:
            return head_logprobs(references[name], hidden, targets, 1.0, chunk, "none", kernels[name])[0]

    gap = max(float((fn(name, chunk) - fn("module", chunk)).abs().max())
              for fn in (policy_pass, reference_pass) for name in heads for chunk in args.chunk_tokens)
    print(f"LM head [{args.vocab}, {args.hidden}], {args.tokens} tokens, {'bf16 autocast' if args.bf16 else 'fp32'}, "
          f"host memory {'kept' if args.keep_host_memory else 'glibc default'}, torch threads "
          f"{torch.get_num_threads()}; max |route − module| log-prob {gap:.2e}")
    print(f"  {'route':18} {'chunk':>6} {'fwd+bwd ms':>11} {'no-grad fwd ms':>15}")
    seconds: dict[str, dict[str, dict[str, float]]] = {}
    for chunk in args.chunk_tokens:
        for name in heads:
            train = best_seconds(lambda: policy_pass(name, chunk), args.repeats)
            ref = best_seconds(lambda: reference_pass(name, chunk), args.repeats)
            seconds.setdefault(str(chunk), {})[name] = {"policy_fwd_bwd": train, "reference_fwd": ref}
            print(f"  {name:18} {chunk:6} {1e3 * train:11.1f} {1e3 * ref:15.1f}")
    write_result("bench_lm_head", {"arguments": {k: v for k, v in vars(args).items() if k != "results"},
                                   "max_logprob_gap": gap, "seconds": seconds}, args.results)


def _reference(head: nn.Linear, bf16: bool) -> nn.Linear:
    """The reference's frozen copy of ``head``: bfloat16 under bf16-mixed (``bf16_reference``), as the fit keeps it."""
    import copy

    twin = copy.deepcopy(head).requires_grad_(False)
    return twin.to(torch.bfloat16) if bf16 else twin


if __name__ == "__main__":
    main()
