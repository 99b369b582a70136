"""Probe: how the untrained embedded model does on candidate tasks before anything is trained.

For each task × prompt variant it samples ``--problems`` problems × ``--samples`` completions with the in-process
vLLM CPU engine (bf16) and reports pass@1 (mean accuracy of all samples) and pass@k (share of problems with at
least one correct sample), both graded by r1lit's ``AccuracyReward``; the format rate (``FormatReward``, strict);
the share of groups with mixed outcomes (some but not all samples correct: the groups GRPO learns from); mean
completion length in tokens and the share cut at ``--max-tokens``; and the rate of reflection and aha phrases
(``r1lit.eval.phrases``, unchanged) separately among correct and incorrect completions. One invocation, fixed seeds:

    R1LIT_CACHE_DIR=... python dev/probe_tasks.py [--problems 32] [--samples 8] [--max-tokens 256] \
        [--temperature 0.9] [--tasks two_step,...] [--prompts r1zero,worked] [--out runs/probe_tasks.json]

Prints one table and writes the JSON (summaries, the phrases found with excerpts, a few completions per variant).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

# The worked-example system prompt of configs/smollm2-cpu.yaml, and the same with a two-step example (no
# reflection words in it: a phrase in the prompt would be copied and counted).
WORKED = ("Solve the problem. Think inside <think> </think> tags, then write only the final number inside <answer> "
          "</answer> tags. Example: <think> 3 + 4 = 7 </think> <answer> 7 </answer>")
WORKED_STEPS = ("Solve the problem. Think step by step inside <think> </think> tags, then write only the final number "
                "inside <answer> </answer> tags. Example: What is 25 + 17 - 8? <think> First, 25 + 17 = 42. Then "
                "42 - 8 = 34. </think> <answer> 34 </answer>")


def candidate_tasks(n: int, seed: int) -> dict:
    from r1lit.data import ArithmeticSource, CarryAdditionSource, TwoStepSource, WordProblemSource

    return {
        "add_2d+1d_carry": CarryAdditionSource(n, digits=(2, 1), min_carries=1, seed=seed),
        "add_2d+2d_carry": CarryAdditionSource(n, digits=(2, 2), min_carries=1, seed=seed),
        "add_3d+3d_carry2": CarryAdditionSource(n, digits=(3, 3), min_carries=2, seed=seed),
        "two_step_2d": TwoStepSource(n, digits=2, seed=seed),
        "word_2op": WordProblemSource(n, max_number=20, seed=seed),
        "arith_3x1-20_+-": ArithmeticSource(n, max_operand=20, operations="+-", num_operands=3, seed=seed),
        "arith_2x1-20_*": ArithmeticSource(n, max_operand=20, operations="*", num_operands=2, seed=seed),
    }


def prompt_variants() -> dict:
    from r1lit.data import R1_ZERO_SYSTEM_PROMPT, ChatPrompt

    return {
        "r1zero": ChatPrompt(R1_ZERO_SYSTEM_PROMPT, prefill="<think>"),
        "worked": ChatPrompt(WORKED, prefill="<think>"),
        "worked_steps": ChatPrompt(WORKED_STEPS, prefill="<think>"),
    }


def summarise(problems, prompts, texts, lengths, truncated, accuracy, fmt, samples, matchers) -> dict:
    """The row of one variant, from its graded completions (problem i owns texts[i*samples:(i+1)*samples])."""
    n = len(texts)
    correct = [a >= 1.0 for a in accuracy]
    per_problem = [sum(correct[i * samples:(i + 1) * samples]) for i in range(len(problems))]
    row = {
        "pass@1": sum(correct) / n,
        f"pass@{samples}": sum(k > 0 for k in per_problem) / len(problems),
        "mixed_groups": sum(0 < k < samples for k in per_problem) / len(problems),
        "format": sum(f >= 1.0 for f in fmt) / n,
        "mean_tokens": sum(lengths) / n,
        "truncated": sum(truncated) / n,
        "n_correct": sum(correct),
        "n": n,
    }
    for kind, matcher in matchers.items():
        hits = [t in matcher for t in texts]
        n_ok = sum(correct)
        row[f"{kind}_correct"] = (sum(h and c for h, c in zip(hits, correct)) / n_ok) if n_ok else None
        row[f"{kind}_incorrect"] = (sum(h and not c for h, c in zip(hits, correct)) / (n - n_ok)) if n > n_ok else None
        row[f"{kind}_phrases"] = dict(Counter(m.phrase.lower() for t in texts for m in matcher.find(t)))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=1234, help="problem generators' seed (training uses others)")
    parser.add_argument("--sampling-seed", type=int, default=0)
    parser.add_argument("--tasks", default=None, help="comma-separated subset of the candidate tasks")
    parser.add_argument("--prompts", default="r1zero,worked,worked_steps", help="comma-separated prompt variants")
    parser.add_argument("--kv-gib", type=float, default=2.0, help="vLLM KV cache (GiB): all samples of a call fit")
    parser.add_argument("--examples", type=int, default=3, help="completions kept per variant in the JSON")
    parser.add_argument("--out", default="runs/probe_tasks.json")
    parser.add_argument("--completions", default=None, help="also write every completion, graded, to this jsonl")
    args = parser.parse_args()

    from r1lit.policy.loading import load_policy, load_tokenizer, resolve_model_path
    from r1lit.eval.phrases import AHA_PHRASES, REFLECTION_PHRASES, PhraseMatcher, excerpt
    from r1lit.rewards import AccuracyReward, FormatReward
    from r1lit.rollout import SamplingConfig, VLLMEngine
    from r1lit.rollout.vllm.launch import EngineLaunch

    tasks = candidate_tasks(args.problems, args.seed)
    if args.tasks:
        unknown = set(args.tasks.split(",")) - set(tasks)
        if unknown:
            parser.error(f"unknown tasks {sorted(unknown)}; known: {', '.join(tasks)}")
        tasks = {k: v for k, v in tasks.items() if k in args.tasks.split(",")}
    variants = {k: v for k, v in prompt_variants().items() if k in args.prompts.split(",")}
    tokenizer = load_tokenizer(args.model)
    rendered = {}
    for task, source in tasks.items():
        problems = source.load()
        for name, template in variants.items():
            texts = [template.render(p["problem"], tokenizer) for p in problems]
            ids = [tokenizer(t, add_special_tokens=template.add_special_tokens)["input_ids"] for t in texts]
            rendered[(task, name)] = (problems, texts, ids)
    longest = max(len(i) for _, _, ids in rendered.values() for i in ids)

    engine = VLLMEngine(dtype="bfloat16", kv_cache_memory_bytes=int(args.kv_gib * (1 << 30)))
    engine.bind(load_policy(args.model), tokenizer)
    engine.start(EngineLaunch(resolve_model_path(args.model), max_prompt_length=longest, max_tokens=args.max_tokens,
                              sequences_per_call=args.problems * args.samples))
    sampling = SamplingConfig(temperature=args.temperature, max_tokens=args.max_tokens)
    accuracy_reward, format_reward = AccuracyReward(), FormatReward()
    matchers = {"reflection": PhraseMatcher(REFLECTION_PHRASES), "aha": PhraseMatcher(AHA_PHRASES)}

    results, graded = [], []
    try:
        for (task, name), (problems, prompt_texts, ids) in rendered.items():
            start = time.perf_counter()
            rollout = engine.generate(ids, n=args.samples, sampling=sampling, seed=args.sampling_seed)
            seconds = time.perf_counter() - start
            prompts = [p for p in prompt_texts for _ in range(args.samples)]
            golds = [p["answer"] for p in problems for _ in range(args.samples)]
            texts = rollout.texts
            lengths = rollout.completion_lengths.tolist()
            accuracy = accuracy_reward(prompts, texts, golds)
            fmt = format_reward(prompts, texts, golds)
            row = summarise(problems, prompts, texts, lengths, rollout.truncated.tolist(), accuracy, fmt,
                            args.samples, matchers)
            row.update(task=task, prompt=name, seconds=seconds, tokens_per_s=sum(lengths) / seconds,
                       source=tasks[task].describe())
            row["phrase_excerpts"] = [
                {"kind": kind, "correct": accuracy[i] >= 1.0, "problem": problems[i // args.samples]["problem"],
                 "excerpt": excerpt(t, matcher.first(t), 100)}
                for kind, matcher in matchers.items() for i, t in enumerate(texts) if t in matcher
            ][:12]
            row["examples"] = [{"problem": problems[i // args.samples]["problem"], "gold": golds[i],
                                "completion": texts[i], "accuracy": accuracy[i], "format": fmt[i]}
                               for i in range(0, len(texts), max(1, len(texts) // max(args.examples, 1)))][:args.examples]
            results.append(row)
            graded += [{"task": task, "prompt": name, "problem": problems[i // args.samples]["problem"], "gold": golds[i],
                        "completion": t, "tokens": lengths[i], "accuracy": accuracy[i], "format": fmt[i]}
                       for i, t in enumerate(texts)]
            print(f"[probe] {task} / {name}: pass@1 {row['pass@1']:.3f}, {row['mean_tokens']:.0f} tokens, "
                  f"{seconds:.0f} s ({row['tokens_per_s']:.0f} tok/s)", flush=True)
    finally:
        accuracy_reward.close()
        engine.close()

    k = args.samples
    header = (f"{'task':18} {'prompt':12} {'pass@1':>6} {f'pass@{k}':>6} {'mixed':>5} {'format':>6} {'tokens':>6} "
              f"{'trunc':>5} {'refl+':>5} {'refl-':>5} {'aha+':>5} {'aha-':>5} {'tok/s':>5}")
    print(f"\n{args.problems} problems × {k} samples, T={args.temperature}, ≤{args.max_tokens} tokens, vLLM bf16; "
          "refl+/refl- and aha+/aha-: phrase rate among correct / incorrect completions ('-' = none of that kind)")
    print(header)
    fmt_rate = lambda v: "    -" if v is None else f"{v:5.3f}"  # noqa: E731
    for r in results:
        print(f"{r['task']:18} {r['prompt']:12} {r['pass@1']:6.3f} {r[f'pass@{k}']:6.3f} {r['mixed_groups']:5.2f} "
              f"{r['format']:6.3f} {r['mean_tokens']:6.0f} {r['truncated']:5.2f} {fmt_rate(r['reflection_correct'])} "
              f"{fmt_rate(r['reflection_incorrect'])} {fmt_rate(r['aha_correct'])} {fmt_rate(r['aha_incorrect'])} "
              f"{r['tokens_per_s']:5.0f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {**vars(args), "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "VLLM_CPU_OMP_THREADS_BIND")}}
    out.write_text(json.dumps({"settings": settings, "results": results}, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {out}")
    if args.completions:
        Path(args.completions).write_text("".join(json.dumps(g, ensure_ascii=False) + "\n" for g in graded))
        print(f"wrote {args.completions}")


if __name__ == "__main__":
    main()
