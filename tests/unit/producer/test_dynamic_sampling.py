"""Dynamic sampling (DAPO): zero-spread groups dropped, extra rounds drawn until the batch is full, the cap, the
extra-problem stream, and a fit on a tiny model; 2-rank and resume runs are in test_dynamic_sampling_runs.py."""

import lightning as L
import pytest
import torch

from custom_rewards import HalfFlatReward
from r1lit.data import ArithmeticSource, MathDataModule
from r1lit.data.extra import ExtraProblems
from r1lit.data.batch import ProblemBatch
from r1lit.grpo.advantages import flat_groups
from r1lit.grpo.types import ScoredRollout
from r1lit.producer.dynamic_sampling import DynamicSampling, concat_rollouts, pick_groups
from r1lit.module import GRPOModule
from r1lit.rollout import SamplingConfig
from r1lit.rollout.types import Rollout

G = 4


def toy_round(name: str, rewards: list[list[float]]) -> ScoredRollout:
    """A round of len(rewards) groups of G completions; completion i of group g is the text f"{name}{g}.{i}"."""
    B = len(rewards)
    texts = [f"{name}{g}.{i}" for g in range(B) for i in range(G)]
    rollout = Rollout(
        prompt_ids=torch.ones(B * G, 2, dtype=torch.long), prompt_mask=torch.ones(B * G, 2, dtype=torch.long),
        completion_ids=torch.ones(B * G, 3, dtype=torch.long), completion_mask=torch.ones(B * G, 3, dtype=torch.long),
        texts=texts, truncated=torch.zeros(B * G, dtype=torch.bool), num_generations=G,
    )
    flat = torch.tensor(rewards).flatten()
    batch = ProblemBatch([f"{name}{g}" for g in range(B)], ["1"] * B, ["p"] * B, [[1, 1]] * B)
    return ScoredRollout(batch, rollout, flat.unsqueeze(0), flat, torch.zeros(1, dtype=torch.long))


# The 2-group toy batch: group a0 all right (zero spread), a1 one right of four. An extra round brings b0 (all
# wrong, zero spread) and b1 (two right). batch_size 2.
FIRST = [[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]]
SECOND = [[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]


def test_flat_groups_and_pick_by_hand():
    """Guards which groups count as informative and the order picks (and filler) are taken in."""
    assert flat_groups(torch.tensor(FIRST + SECOND).flatten(), G).tolist() == [True, False, True, False]
    assert pick_groups(torch.tensor([False, True, False, True]), 2) == ([1, 3], [True, True])
    assert pick_groups(torch.tensor([False, True, False, True, True]), 2) == ([1, 3], [True, True])  # surplus left
    assert pick_groups(torch.tensor([False, True]), 2) == ([1, 0], [True, False])  # one filler, not trained


def test_two_group_toy_batch_fills_from_an_extra_round():
    """Guards the fill loop: a0 dropped, one extra round (seeded round 1, batch_size problems), b0 dropped,
    a1 and b1 trained, in that order, with the rewards and texts of those groups."""
    calls = []

    def more(round_, count):
        calls.append((round_, count))
        return toy_round("b", SECOND)

    filled = DynamicSampling(max_num_gen_batches=3).fill(toy_round("a", FIRST), 2, more, lambda short: short)
    assert calls == [(1, 2)]
    assert filled.rounds == 2 and filled.kept == 2 and filled.dropped == 2 and not filled.capped
    assert filled.selected.batch.problems == ["a1", "b1"] and filled.trained.tolist() == [True, True]
    assert filled.selected.rewards.tolist() == [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    assert filled.selected.rollout.texts[4:] == ["b1.0", "b1.1", "b1.2", "b1.3"]
    assert filled.pool.num_groups == 4  # what the step's reward metrics describe


def test_cap_trains_on_what_was_found_and_says_so():
    """Guards the cap: with max_num_gen_batches=1 no extra round runs; a1 is trained, a0 fills the batch untrained."""
    filled = DynamicSampling(max_num_gen_batches=1).fill(toy_round("a", FIRST), 2, pytest.fail, lambda short: short)
    assert filled.rounds == 1 and filled.kept == 1 and filled.dropped == 1 and filled.capped
    assert filled.selected.batch.problems == ["a1", "a0"] and filled.trained.tolist() == [True, False]


def test_a_full_rank_keeps_generating_while_another_is_short():
    """Guards agreement across ranks: the rounds follow the largest shortfall, not this rank's own."""
    rounds = []
    filled = DynamicSampling(max_num_gen_batches=3).fill(
        toy_round("a", SECOND[1:] * 2), 2, lambda r, c: rounds.append(r) or toy_round("b", SECOND), lambda short: 1,
    )
    assert rounds == [1, 2] and filled.rounds == 3 and filled.selected.batch.problems == ["a0", "a1"]


def test_concat_rollouts_repads_prompts_left_and_completions_right():
    a = Rollout(torch.tensor([[7, 8]]), torch.tensor([[1, 1]]), torch.tensor([[5]]), torch.tensor([[1]]), ["x"],
                torch.tensor([False]), 1)
    b = Rollout(torch.tensor([[9]]), torch.tensor([[1]]), torch.tensor([[5, 6]]), torch.tensor([[1, 1]]), ["y"],
                torch.tensor([True]), 1)
    both = concat_rollouts([a, b])
    assert both.prompt_ids.tolist() == [[7, 8], [0, 9]] and both.prompt_mask.tolist() == [[1, 1], [0, 1]]
    assert both.completion_mask.tolist() == [[1, 0], [1, 1]] and both.truncated.tolist() == [False, True]


def test_extra_stream_is_a_function_of_seed_rank_and_count():
    """Guards exact resume and the split across ranks: the next draws depend only on how many came before, and
    ranks draw disjoint problems within a shuffle."""
    straight = ExtraProblems(10, num_replicas=2, rank=0, seed=3)
    first = straight.draw(7)  # crosses into the second shuffle (5 per rank each)
    resumed = ExtraProblems(10, num_replicas=2, rank=0, seed=3)
    resumed.drawn = 4
    assert resumed.draw(3) == first[4:]
    other = ExtraProblems(10, num_replicas=2, rank=1, seed=3).draw(5)
    assert not set(first[:5]) & set(other) and sorted(first[:5] + other) == list(range(10))
    assert ExtraProblems(10, seed=4).draw(10) != ExtraProblems(10, seed=3).draw(10)


def test_fit_trains_only_on_informative_groups_and_logs_the_rounds(tiny_model_dir):
    """End to end on a tiny model: half the problems give flat rewards; every trained group has a spread, extra
    problems come from the datamodule's stream (counted in its state), and the metrics are logged."""
    L.seed_everything(0)
    module = GRPOModule(
        str(tiny_model_dir), rewards=[HalfFlatReward()], sampling=SamplingConfig(max_tokens=8), num_generations=4,
        micro_batch_size=8, dynamic_sampling=DynamicSampling(max_num_gen_batches=6),
    )
    data = MathDataModule(ArithmeticSource(num_problems=32), tokenizer=str(tiny_model_dir), batch_size=2, check_gold=False)
    seen = []

    class Capture(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append((outputs["groups"], dict(trainer.callback_metrics), trainer.datamodule.state_dict()))

    L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=0, callbacks=[Capture()]).fit(module, data)
    drawn = 0
    for groups, metrics, state in seen:
        assert len(groups) == 2
        assert all(int(g.answer) % 2 == 1 for g in groups)  # even answers give flat rewards: dropped
        assert all(any(c.advantage != 0.0 for c in g.completions) for g in groups)
        rounds = int(metrics["dynamic_sampling/rounds"])
        drawn += 2 * (rounds - 1)
        assert state["extra_drawn"] == drawn
        assert float(metrics["dynamic_sampling/groups_kept"]) == 2 and float(metrics["dynamic_sampling/capped"]) == 0
        assert "frac_reward_zero_std" in metrics
    assert drawn > 0  # the flat groups did make it draw more
