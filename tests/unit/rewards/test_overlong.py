"""Overlong shaping: DAPO's soft overlong penalty against a length table, and truncated completions masked out."""

import lightning as L
import pytest
import torch

from custom_rewards import LengthReward
from r1lit.data import ArithmeticSource, MathDataModule
from r1lit.errors import ConfigError
from r1lit.grpo.losses import GRPOLoss
from r1lit.module import GRPOModule
from r1lit.rewards import OverlongPenalty
from r1lit.rewards.overlong import soft_overlong_penalty
from r1lit.rewards.scoring import score_completions
from r1lit.rollout import SamplingConfig

# max_length L = 20, cache c = 4: no penalty up to L - c = 16, then (16 - n) / 4, -1 beyond 20
LENGTH_TABLE = [
    (1, 0.0), (16, 0.0),  # within L - c
    (17, -0.25), (18, -0.5), (19, -0.75), (20, -1.0),  # the ramp: (16 - n) / 4
    (21, -1.0), (40, -1.0),  # past the limit
]


def test_soft_overlong_penalty_by_hand():
    """Guards the ramp's start (strictly after L - c), its slope (1/c per token) and the -1 floor."""
    lengths, expected = zip(*LENGTH_TABLE)
    assert soft_overlong_penalty(list(lengths), max_length=20, cache=4) == pytest.approx(list(expected))


def test_overlong_reward_reads_token_lengths_and_defaults_to_max_tokens():
    """Guards the scoring path: the reward gets the engine's token counts (not a re-tokenisation of the text) and,
    without its own max_length, the sampling limit; a one-by-one retry hands each completion its own length."""
    reward = OverlongPenalty(cache=4)
    texts = ["a", "b", "c"]  # the text plays no part
    scores, errors = score_completions([reward], ["q"] * 3, texts, ["1"] * 3, lengths=[16, 18, 20], max_tokens=20)
    assert scores[0].tolist() == pytest.approx([0.0, -0.5, -1.0]) and errors.tolist() == [0]
    own = OverlongPenalty(cache=2, max_length=10)  # 10 - 2 = 8: 9 -> -0.5
    scores, _ = score_completions([own], ["q"], ["x"], ["1"], lengths=[9], max_tokens=20)
    assert scores[0].tolist() == pytest.approx([-0.5])
    with pytest.raises(ConfigError):
        OverlongPenalty(cache=8, max_length=8)
    with pytest.raises(Exception, match="token lengths"):
        score_completions([reward], ["q"], ["x"], ["1"])


def test_trained_rows_by_hand():
    """Guards which completions get loss: truncated ones under mask_truncated, and dynamic sampling's filler groups."""
    truncated = torch.tensor([False, True, False, False, True, True])  # G = 3: groups [F T F], [F T T]
    keep, drop = GRPOLoss(), GRPOLoss(mask_truncated_completions=True)
    assert keep.trained_rows(truncated, 3, None).tolist() == [True] * 6
    assert drop.trained_rows(truncated, 3, None).tolist() == [True, False, True, True, False, False]
    assert drop.trained_rows(truncated, 3, torch.tensor([False, True])).tolist() == [False] * 3 + [True, False, False]


def _one_step_grads(model_dir, mask_truncated: bool) -> tuple[dict, list[bool]]:
    L.seed_everything(0)
    module = GRPOModule(
        str(model_dir), rewards=[LengthReward()], sampling=SamplingConfig(max_tokens=3), num_generations=4,
        micro_batch_size=4, max_grad_norm=None, loss=GRPOLoss(mask_truncated_completions=mask_truncated),
    )
    data = MathDataModule(ArithmeticSource(num_problems=8), tokenizer=str(model_dir), batch_size=2, check_gold=False)
    seen = {}

    class Capture(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            seen["grads"] = {n: p.grad.clone() for n, p in pl_module.policy.named_parameters() if p.grad is not None}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen["truncated"] = [c.truncated for g in outputs["groups"] for c in g.completions]

    L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=0, callbacks=[Capture()]).fit(module, data)
    return seen["grads"], seen["truncated"]


def test_mask_truncated_completions_removes_their_gradient(tiny_model_dir):
    """Guards mask_truncated_completions: a 3-token limit cuts every completion of the untrained tiny model, so
    with the mask the step gets no gradient at all, and without it the same rollout does."""
    masked, truncated = _one_step_grads(tiny_model_dir, True)
    plain, truncated_again = _one_step_grads(tiny_model_dir, False)
    assert truncated == truncated_again and all(truncated)  # same rollout, every completion cut at 3 tokens
    assert masked and all(float(g.abs().max()) == 0.0 for g in masked.values())
    assert any(float(g.abs().max()) > 0.0 for g in plain.values())
