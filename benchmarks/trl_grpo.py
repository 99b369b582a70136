"""TRL's GRPOTrainer on the workload of benchmarks/bench_vs_trl.py, timed the way a user would time it.

Runs in TRL's own environment (``make trl-env``), never in r1lit's; ``PYTHONPATH`` points at the repository so
that r1lit's rewards are importable (``r1lit.rewards`` needs neither lightning nor torch):

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv-trl/bin/python benchmarks/trl_grpo.py --workload W.json --out times.jsonl \
        [--bf16] [--gradient-checkpointing]

``W.json`` (written by benchmarks/bench_vs_trl.py) names the model folder, the problems file (jsonl: problem, answer),
the system prompt and the GRPO settings. Each optimizer step appends one line to ``--out``:
``{"step": n, "seconds": …}`` from a TrainerCallback (``on_step_begin`` to ``on_step_end``: generation, scoring,
reference forward, policy forward/backward and the optimizer step), then TRL's logged metrics for that step.
"""

from __future__ import annotations

import argparse
import json
import time


def reward_functions():
    """r1lit's AccuracyReward and FormatReward as TRL reward functions (``f(prompts, completions, **columns)``).

    The dataset is conversational, so a completion arrives as ``[{"role": "assistant", "content": text}]`` and a
    prompt as its messages; the prompt matters to FormatReward only when it ends with a pre-filled ``<think>``,
    which this workload does not use, so the last message's text stands for it.
    """
    from r1lit.rewards import AccuracyReward, FormatReward

    def text(x) -> str:
        return x if isinstance(x, str) else x[-1]["content"]

    made = []
    for reward in (AccuracyReward(), FormatReward()):
        def score(prompts, completions, answer, _reward=reward, **_):
            return _reward([text(p) for p in prompts], [text(c) for c in completions], list(answer))

        score.__name__ = reward.name  # TRL keys its metrics by the function's name: rewards/accuracy/mean, …
        made.append((reward, score))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True, help="json written by benchmarks/bench_vs_trl.py")
    parser.add_argument("--out", required=True, help="jsonl: one line per step (seconds), then TRL's logs")
    parser.add_argument("--output-dir", default=None, help="TRL's output_dir (nothing is saved into it)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (TRL's default; off = fp32)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="TRL's default; off = no checkpointing")
    args = parser.parse_args()
    w = json.load(open(args.workload))

    import torch

    torch.set_num_threads(w["threads"])
    import datasets
    import transformers
    import trl
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    out = open(args.out, "a", buffering=1)

    def record(**fields) -> None:
        out.write(json.dumps(fields) + "\n")

    class StepTimes(TrainerCallback):
        """Seconds from on_step_begin to on_step_end of each optimizer step, and TRL's logs."""

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            record(step=state.global_step, seconds=time.perf_counter() - self.start)

        def on_log(self, args, state, control, logs=None, **kwargs):
            record(step=state.global_step, logs=logs)

    problems = [json.loads(line) for line in open(w["problems"])]
    dataset = datasets.Dataset.from_list([
        {"prompt": [{"role": "system", "content": w["system_prompt"]}, {"role": "user", "content": p["problem"]}],
         "answer": p["answer"]}
        for p in problems
    ])
    config = GRPOConfig(
        output_dir=args.output_dir or "trl_out",
        max_steps=w["steps"],
        per_device_train_batch_size=w["prompts"] * w["generations"],  # TRL counts completions: one step = B·G
        gradient_accumulation_steps=1,
        num_generations=w["generations"],
        max_completion_length=w["max_tokens"],
        temperature=w["temperature"],
        beta=w["beta"],
        epsilon=w["epsilon"],
        loss_type="grpo",
        num_iterations=1,
        learning_rate=w["learning_rate"],
        bf16=args.bf16,
        gradient_checkpointing=args.gradient_checkpointing,
        seed=w["seed"],
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )
    rewards = reward_functions()
    trainer = GRPOTrainer(
        model=w["model"], reward_funcs=[f for _, f in rewards], args=config, train_dataset=dataset,
        callbacks=[StepTimes()],
    )
    record(setup={
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
        "threads": torch.get_num_threads(), "policy_dtype": str(trainer.model.dtype),
        "ref_model": trainer.ref_model is not None, "bf16": config.bf16,
        "mixed_precision": str(trainer.accelerator.mixed_precision), "native_amp": trainer.accelerator.native_amp,
        "gradient_checkpointing": config.gradient_checkpointing,
        "gradient_checkpointing_kwargs": config.gradient_checkpointing_kwargs,
        "lr_scheduler": str(config.lr_scheduler_type), "adam_betas": [config.adam_beta1, config.adam_beta2],
        "max_grad_norm": config.max_grad_norm, "scale_rewards": config.scale_rewards,
    })
    try:
        trainer.train()
    finally:
        for reward, _ in rewards:
            reward.close()
    out.close()


if __name__ == "__main__":
    main()
