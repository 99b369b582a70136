"""Shared-prefix log-probs against the unshared path on one synthetic rollout: forward + backward (the policy's
pass) and a no-grad forward (the reference's), each micro-batch as the trainer runs it, best of ``--repeats``.

    .venv/bin/python benchmarks/bench_shared_prefix.py [--model embedded:smollm2-135m-instruct] [--prompts 2]
        [--generations 8] [--prompt-tokens 78] [--completion-tokens 22] [--micro-batch 16] [--bf16] [--threads 2]
        [--attn-implementation sdpa|eager] [--keep-host-memory] [--device cuda] [--gradient-checkpointing]

``--model`` also takes a transformers config JSON (``dev/gpu/qwen2.5-0.5b-config.json``): a randomly initialised
model of that shape, for machines with no hub (the token ids are random either way). On ``--device cuda`` each timing
ends with a synchronise and each path's peak GPU memory is reported.

The rollout: ``--prompts`` prompts of about ``--prompt-tokens`` tokens (lengths spread ±25 %, left-padded to the
longest), ``--generations`` completions each with lengths uniform in [C/2, 3C/2] (right-padded), random token ids,
rows of a prompt adjacent; micro-batches of ``--micro-batch`` rows with the trainer's width (the micro-batch's longest
completion). The defaults are the embedded default's measured shape (issue 23: prompt 78, completions 22, G = 8).
It checks that both paths agree on the real tokens before timing them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling flop_floor.py
from flop_floor import best_seconds  # noqa: E402
from record import write_result  # noqa: E402


def rollout(prompts: int, generations: int, prompt_tokens: int, completion_tokens: int, vocab: int,
            seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(input_ids [N, P + C], attention [N, P + C], C) with prompts left-padded and completions right-padded."""
    g = torch.Generator().manual_seed(seed)
    p_lens = [max(1, round(prompt_tokens * (0.75 + 0.5 * float(torch.rand(1, generator=g))))) for _ in range(prompts)]
    c_lens = torch.randint(max(1, completion_tokens // 2), max(2, 3 * completion_tokens // 2 + 1),
                           (prompts * generations,), generator=g).tolist()
    P, C = max(p_lens), max(c_lens)
    ids = torch.zeros(prompts * generations, P + C, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for b, p in enumerate(p_lens):
        prompt = torch.randint(10, vocab, (p,), generator=g)
        for row in range(b * generations, (b + 1) * generations):
            c = c_lens[row]
            ids[row, P - p:P], attention[row, P - p:P] = prompt, 1
            ids[row, P:P + c], attention[row, P:P + c] = torch.randint(10, vocab, (c,), generator=g), 1
    return ids, attention, C


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct", help="hub id, folder or embedded:…")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=78)
    parser.add_argument("--completion-tokens", type=int, default=22)
    parser.add_argument("--micro-batch", type=int, default=16, help="rows per micro-batch")
    parser.add_argument("--chunk-tokens", type=int, default=256, help="the LM head's chunk (model.policy.logprob_chunk_tokens)")
    parser.add_argument("--row-tokens", type=int, default=2048, help="SharedPrefixLogprobs' packed row budget")
    parser.add_argument("--bf16", action="store_true", help="under bf16 autocast (fp32 weights), as bf16-mixed trains")
    parser.add_argument("--attn-implementation", default=None, help="transformers' attention kernel (sdpa, eager)")
    parser.add_argument("--keep-host-memory", action="store_true",
                        help="what the KeepFreedHostMemory callback does on a CPU fit: glibc keeps freed memory")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="as model.policy.gradient_checkpointing")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, default=None,
                        help="result file (default: benchmarks/results/<date>-<commit>-<machine>-bench_shared_prefix.json)")
    args = parser.parse_args()

    from r1lit.policy.loading import disable_dropout_in_model, load_policy
    from r1lit.policy.logprobs import CompletionLogprobs
    from r1lit.policy.shared_prefix import SharedPrefixLogprobs
    from r1lit.training.host_memory import keep_freed_host_memory

    torch.set_num_threads(args.threads)
    if args.keep_host_memory and not keep_freed_host_memory():
        sys.exit("--keep-host-memory: this C library is not glibc")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        sys.exit(f"--device {args.device}: not a torch device; use cpu or cuda (cuda:N)")
    config_json = Path(args.model) if args.model.endswith(".json") else None
    if config_json is not None and not config_json.is_file():
        sys.exit(f"--model {args.model}: no such file (a transformers config JSON, or a model folder or hub id)")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: this torch ({torch.__version__}) sees no CUDA GPU; use --device cpu")
    if config_json is not None:
        model = random_model(config_json, args.attn_implementation)
    else:
        model = load_policy(args.model, attn_implementation=args.attn_implementation)
    model = disable_dropout_in_model(model).to(device)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ids, attention, C = rollout(args.prompts, args.generations, args.prompt_tokens, args.completion_tokens,
                                model.config.vocab_size)
    ids, attention = ids.to(device), attention.to(device)
    n = ids.shape[0]
    slices = [(slice(i, i + args.micro_batch), int(attention[i:i + args.micro_batch, -C:].sum(1).max()))
              for i in range(0, n, args.micro_batch)]
    scorers = {"unshared": CompletionLogprobs(1.0, args.chunk_tokens),
               "shared": SharedPrefixLogprobs(1.0, args.chunk_tokens, row_tokens=args.row_tokens)}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def policy_pass(scorer):
        for mb, width in slices:
            with autocast:
                logps, _ = scorer(model, ids[mb], attention[mb], C, width, "metric")
            logps.sum().backward()
        model.zero_grad(set_to_none=True)

    @torch.no_grad()
    def reference_pass(scorer):
        with autocast:
            return [scorer(model, ids[mb], attention[mb], C, width)[0] for mb, width in slices]

    def timed(fn):
        """fn's best time (the GPU's queue drained at the end) and, on CUDA, the peak memory it allocated."""
        def run():
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()

        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        seconds = best_seconds(run, args.repeats)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        return seconds, peak

    real = [attention[mb, -C:][:, :width].float() for mb, width in slices]
    gap = max(float(((a - b) * m).abs().max()) for a, b, m in
              zip(reference_pass(scorers["shared"]), reference_pass(scorers["unshared"]), real))
    fed = int(attention.sum())
    print(f"model {args.model}: {n} rows ({args.prompts} prompts × {args.generations}), padded {ids.shape[1]} columns, "
          f"{fed} real tokens, {len(slices)} micro-batches; {'bf16 autocast' if args.bf16 else 'fp32'}, "
          f"attention {model.config._attn_implementation}, host memory {'kept' if args.keep_host_memory else 'glibc default'}, "
          f"torch threads {torch.get_num_threads()}, device {device}, gradient checkpointing "
          f"{'on' if args.gradient_checkpointing else 'off'}; max |shared − unshared| log-prob on real tokens "
          f"{gap:.2e}")
    print(f"  {'':10} {'fwd+bwd s':>10} {'no-grad fwd s':>14} {'peak GiB (fwd+bwd)':>19}")
    times, peaks = {}, {}
    for name, scorer in scorers.items():
        (train, peaks[name]), (ref, _) = timed(lambda: policy_pass(scorer)), timed(lambda: reference_pass(scorer))
        times[name] = (train, ref)
        peak = "-" if peaks[name] is None else f"{peaks[name]:.2f}"
        print(f"  {name:10} {train:10.3f} {ref:14.3f} {peak:>19}")
    (u_train, u_ref), (s_train, s_ref) = times["unshared"], times["shared"]
    print(f"  speed-up   {u_train / s_train:10.2f}× {u_ref / s_ref:13.2f}×")
    write_result("bench_shared_prefix", {
        "arguments": {k: v for k, v in vars(args).items() if k != "results"}, "rows": n, "columns": ids.shape[1],
        "real_tokens": fed, "max_logprob_gap": gap,
        "seconds": {name: {"policy_fwd_bwd": t, "reference_fwd": r} for name, (t, r) in times.items()},
        "peak_gpu_gib_fwd_bwd": peaks if device.type == "cuda" else None}, args.results)


def random_model(config_json: Path, attn_implementation: str | None):
    """A randomly initialised causal LM of a transformers config's shape (seeded), in training mode."""
    import json

    from transformers import AutoConfig, AutoModelForCausalLM

    fields = json.loads(config_json.read_text())
    if "model_type" not in fields:
        sys.exit(f"--model {config_json}: a config JSON needs its model_type (e.g. \"qwen2\"), as in a model's "
                 "config.json")
    config = AutoConfig.for_model(fields.pop("model_type"), **{k: v for k, v in fields.items()
                                                               if k not in ("architectures", "torch_dtype")})
    torch.manual_seed(0)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    return AutoModelForCausalLM.from_config(config, **kwargs).train()


if __name__ == "__main__":
    main()
