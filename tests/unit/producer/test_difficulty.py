"""The online difficulty filter: which problems it skips, when it retries them, and a fit where it saves the
generation of problems known to be flat."""

import lightning as L
import pytest

from custom_rewards import HalfFlatReward
from r1lit.data import ArithmeticSource, MathDataModule
from r1lit.producer.difficulty import DifficultyFilter
from r1lit.producer.dynamic_sampling import DynamicSampling
from r1lit.errors import ConfigError
from r1lit.module import GRPOModule
from r1lit.rollout import SamplingConfig


def test_skips_recent_flat_problems_only_and_never_a_whole_round():
    """Guards the rule: flat within max_age -> skipped; informative -> kept; older than max_age -> retried; a round
    whose every problem would be skipped keeps its first."""
    f = DifficultyFilter(max_age=3)
    f.update(["easy", "hard", "useful"], [True, True, False], step=10)
    assert f.skips(["easy", "useful", "new"], step=12) == [True, False, False]
    assert f.skips(["easy", "hard"], step=13) == [False, True]  # all would go: the first stays
    assert f.skips(["easy", "new"], step=14) == [False, False]  # 4 steps on: tried again
    again = DifficultyFilter(max_age=3)
    again.load_state_dict(f.state_dict())
    assert again.skips(["easy", "useful", "new"], step=12) == [True, False, False]
    with pytest.raises(ConfigError):
        DifficultyFilter(max_age=0)


def test_fit_skips_problems_that_came_out_flat(tiny_model_dir):
    """End to end: 8 problems, 2 per step, so the second epoch meets the first's problems again; the even-answer
    (flat) ones are skipped before generation, and only odd ones get loss."""
    L.seed_everything(0)
    module = GRPOModule(
        str(tiny_model_dir), rewards=[HalfFlatReward()], sampling=SamplingConfig(max_tokens=6), num_generations=2,
        micro_batch_size=4, dynamic_sampling=DynamicSampling(max_num_gen_batches=4),
        difficulty_filter=DifficultyFilter(max_age=20),
    )
    data = MathDataModule(ArithmeticSource(num_problems=8, seed=1), tokenizer=str(tiny_model_dir), batch_size=2,
                          check_gold=False)
    skipped, trained = [], []

    class Capture(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            skipped.append(float(trainer.callback_metrics["difficulty_filter/skipped"]))
            trained.extend(int(g.answer) for g in outputs["groups"] if any(c.advantage for c in g.completions))

    L.Trainer(accelerator="cpu", max_steps=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=0, callbacks=[Capture()]).fit(module, data)
    assert sum(skipped) > 0 and skipped[0] == 0  # nothing known at step 1
    assert trained and all(a % 2 == 1 for a in trained)  # only informative (odd) problems get loss
    answers = {e["problem"]: int(e["answer"]) for e in data.train_set}
    seen = module.producer.difficulty_filter.seen
    even = [p for p in seen if answers[p] % 2 == 0]
    assert even and all(seen[p][1] for p in even)  # every even-answer problem is remembered as flat


def test_difficulty_filter_needs_dynamic_sampling(tiny_model_dir):
    with pytest.raises(ConfigError, match="dynamic_sampling"):
        GRPOModule(str(tiny_model_dir), rewards=[HalfFlatReward()], num_generations=2, difficulty_filter=DifficultyFilter())
