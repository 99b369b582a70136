"""The GRPO math against numbers worked out by hand (in the comments)."""

import math

import pytest
import torch

from helpers import loss_inputs
from r1lit.grpo.advantages import group_advantages
from r1lit.grpo.metrics import completion_length_stats
from r1lit.grpo.losses import (
    BNPOLoss,
    DAPOLoss,
    DrGRPOLoss,
    GRPOLoss,
    clipped_surrogate,
    k3_kl,
)
from r1lit.policy.logprobs import full_logprobs


def test_group_advantages_normalise_within_each_group():
    """Guards the std convention (unbiased) and the grouping order (G consecutive completions share a prompt)."""
    rewards = torch.tensor([1.0, 0.0, 3.0, 3.0, 0.0, 2.0])  # G = 3: [1, 0, 3], [3, 0, 2]
    adv = group_advantages(rewards, 3, "group", eps=0.0)
    # group 1: mean 4/3, deviations [-1/3, -4/3, 5/3], unbiased var = (1/9 + 16/9 + 25/9) / 2 = 7/3
    s1 = math.sqrt(7 / 3)
    # group 2: mean 5/3, deviations [4/3, -5/3, 1/3], unbiased var = (16/9 + 25/9 + 1/9) / 2 = 7/3
    expected = torch.tensor([-1 / 3, -4 / 3, 5 / 3, 4 / 3, -5 / 3, 1 / 3]) / s1
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(adv.view(2, 3).mean(dim=1), torch.zeros(2), atol=1e-6, rtol=0)


def test_zero_std_group_gives_zero_advantage_and_no_nan():
    """A group whose completions all score the same carries no signal: exactly 0, never NaN (0/0)."""
    rewards = torch.tensor([0.5, 0.5, 0.5, 0.5, 1.0, 0.0, 1.0, 0.0])
    for scale in ("group", "batch", "none"):
        adv = group_advantages(rewards, 4, scale)
        assert torch.isfinite(adv).all()
        assert torch.equal(adv[:4], torch.zeros(4))
    # one completion per group would have an undefined std; it must still be finite
    assert torch.isfinite(group_advantages(torch.tensor([1.0, 0.0]), 1, "group")).all()


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("value", [0.7, 0.1, 1 / 3, 1e6 + 0.1, -2.3, 0.0])
def test_a_group_without_spread_gets_exactly_zero_advantage(value, scale):
    """Guards kind 5 of issue 15: eight rewards of 0.7 gave |advantage| ~ 6e-4, the float32 mean's residue divided
    by std + eps. A group with max == min is exactly 0 in every scaling; the other group is untouched."""
    rewards = torch.tensor([value] * 8 + [1.0, 0.0] * 4)
    adv = group_advantages(rewards, 8, scale)
    assert torch.equal(adv[:8], torch.zeros(8))
    # second group: mean 0.5, deviations ±0.5; unbiased std over 8 = sqrt(8 * 0.25 / 7)
    expected = torch.tensor([0.5, -0.5] * 4)
    if scale == "group":
        expected = expected / (math.sqrt(2 / 7) + 1e-4)
    elif scale == "batch":
        expected = expected / (rewards.std() + 1e-4)
    torch.testing.assert_close(adv[8:], expected)


def test_weighted_constant_rewards_give_zero_advantage():
    """Guards the module's path: rewards summed with weights (0.3 × 1 + 0.4 × 1 = 0.7 in float32) on every
    completion of a group are one value, so the group's advantage is exactly 0."""
    per_reward = torch.ones(2, 8)  # [R, N]: two rewards, both 1 on all eight completions
    rewards = (per_reward * torch.tensor([[0.3], [0.4]])).sum(dim=0)  # [N]
    for scale in ("group", "batch", "none"):
        assert torch.equal(group_advantages(rewards, 8, scale), torch.zeros(8))


def test_batch_and_none_scaling():
    rewards = torch.tensor([2.0, 0.0, 1.0, 1.0])
    # none: centred only -> [1, -1, 0, 0]
    torch.testing.assert_close(group_advantages(rewards, 2, "none"), torch.tensor([1.0, -1.0, 0.0, 0.0]))
    # batch: divided by the std of all 4 rewards: mean 1, unbiased var = (1 + 1 + 0 + 0) / 3
    std = math.sqrt(2 / 3)
    torch.testing.assert_close(group_advantages(rewards, 2, "batch", eps=0.0), torch.tensor([1 / std, -1 / std, 0.0, 0.0]))
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(rewards, 2, "groups")


def test_clipping_on_both_sides():
    """ratio 1.5 / 0.5 against positive / negative advantages, ε = 0.2 (and ε_high = 0.28)."""
    logps = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]]))
    old = torch.zeros(1, 4)
    # one sequence, so give each token its own advantage by running four one-token sequences
    logps, old = logps.view(4, 1), old.view(4, 1)
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0])
    loss, low, high = clipped_surrogate(logps, old, adv, 0.2, 0.2)
    # A=+1, r=1.5: min(1.5, 1.2) = 1.2 -> loss -1.2, clipped high
    # A=-1, r=0.5: min(-0.5, -0.8) = -0.8 -> loss 0.8, clipped low
    # A=-1, r=1.5: min(-1.5, -1.2) = -1.5 -> loss 1.5, not clipped (the pessimistic side keeps the gradient)
    # A=+1, r=0.5: min(0.5, 0.8) = 0.5 -> loss -0.5, not clipped
    torch.testing.assert_close(loss.view(-1), torch.tensor([-1.2, 0.8, 1.5, -0.5]))
    assert high.view(-1).tolist() == [True, False, False, False]
    assert low.view(-1).tolist() == [False, True, False, False]
    # decoupled upper clip: A=+1, r=1.5 -> 1.28
    loss, _, _ = clipped_surrogate(logps, old, adv, 0.2, 0.28)
    torch.testing.assert_close(loss.view(-1)[0], torch.tensor(-1.28))


def test_k3_kl_by_hand():
    # p = 0.5, ref = 0.25: r - p = log(0.5); exp(log 0.5) - log 0.5 - 1 = 0.5 + 0.693147 - 1 = 0.193147
    kl = k3_kl(torch.log(torch.tensor([0.5, 0.3])), torch.log(torch.tensor([0.25, 0.3])))
    torch.testing.assert_close(kl, torch.tensor([0.5 + math.log(2) - 1, 0.0]))


# mask of two completions in a batch padded to C = 4; per-token terms [[1, 2, 3, -], [4, -, -, -]]
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
TERMS = torch.tensor([[1.0, 2.0, 3.0, 99.0], [4.0, 99.0, 99.0, 99.0]])


@pytest.mark.parametrize(
    "loss, world, global_tokens, expected",
    [
        (GRPOLoss(), 1, 4, ((1 + 2 + 3) / 3 + 4 / 1) / 2),  # mean of sequence means = (2 + 4) / 2 = 3
        (BNPOLoss(), 1, 4, (1 + 2 + 3 + 4) / 4),  # token mean on this rank = 2.5
        (DrGRPOLoss(), 1, 4, (1 + 2 + 3 + 4) / (2 * 4)),  # sum / (sequences × max length 4) = 1.25
        (DAPOLoss(), 1, 4, (1 + 2 + 3 + 4) / 4),  # one rank: global token mean = 2.5
        # two ranks, 10 tokens in all: this rank contributes 10 / 10 and DDP's average halves it -> × world 2
        (DAPOLoss(), 2, 10, (1 + 2 + 3 + 4) * 2 / 10),
    ],
)
def test_aggregations_by_hand(loss, world, global_tokens, expected):
    weights = loss.token_weights(MASK, max_completion_length=4, global_tokens=global_tokens, world_size=world)
    assert float((TERMS * weights).sum()) == pytest.approx(expected)
    assert float(weights[MASK == 0].abs().sum()) == 0.0


def test_loss_value_through_the_loss_class():
    """End to end for one class: ratio 1 (μ = 1), advantages [+1, -2]: per-token loss = -A."""
    logps = torch.zeros(2, 4)
    weights = GRPOLoss().token_weights(MASK, 4, 4, 1)
    loss, stats = GRPOLoss()(loss_inputs(logps, logps, None, torch.tensor([1.0, -2.0]), weights))
    # sequence means: -1 and +2 -> mean 0.5
    assert float(loss) == pytest.approx(0.5)
    assert stats.clip_low == 0.0 and stats.clip_high == 0.0 and stats.kl == 0.0


def test_kl_term_adds_beta_times_k3():
    logps = torch.log(torch.full((1, 1), 0.5))
    ref = torch.log(torch.full((1, 1), 0.25))
    weights = torch.ones(1, 1)
    loss, stats = GRPOLoss(beta=0.1)(loss_inputs(logps, logps.detach(), ref, torch.zeros(1), weights))
    k3 = 0.5 + math.log(2) - 1
    assert float(loss) == pytest.approx(0.1 * k3)
    assert stats.mean("kl") == pytest.approx(k3)
    with pytest.raises(ValueError, match="reference"):
        GRPOLoss(beta=0.1)(loss_inputs(logps, logps, None, torch.zeros(1), weights))


def test_mu_one_ratio_is_one_and_gradient_is_plain_policy_gradient():
    """With old = current (detached), d loss / d logp = -A · w: REINFORCE with group advantages."""
    torch.manual_seed(0)
    logps = torch.randn(3, 5, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    adv = torch.tensor([0.7, -1.3, 0.2])
    for loss_fn in (GRPOLoss(), BNPOLoss(), DrGRPOLoss(), DAPOLoss()):
        logps.grad = None
        weights = loss_fn.token_weights(mask, 5, float(mask.sum()), 1)
        ratio = torch.exp(logps - logps.detach())
        assert torch.equal(ratio, torch.ones_like(ratio))
        loss, _ = loss_fn(loss_inputs(logps, logps.detach(), None, adv, weights))
        loss.backward()
        torch.testing.assert_close(logps.grad, -adv.unsqueeze(1) * weights)


def test_full_logprobs_match_full_log_softmax():
    torch.manual_seed(0)
    logits = torch.randn(5, 7, 11)
    targets = torch.randint(0, 11, (5, 7))
    expected = torch.log_softmax(logits / 0.7, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(full_logprobs(logits, targets, 0.7, chunk_rows=2)[0], expected)
    got_bf16 = full_logprobs(logits.bfloat16(), targets, 1.0)[0]
    assert got_bf16.dtype == torch.float32


def test_token_entropy_by_hand():
    """Guards the temperature scaling and the chunking of the logged ``entropy``."""
    ln3 = math.log(3.0)
    logits = torch.tensor([
        [[0.0, 0.0, -1e4], [ln3, 0.0, -1e4]],  # p = (1/2, 1/2, 0): ln 2;  p = (3/4, 1/4, 0): -(3/4 ln 3/4 + 1/4 ln 1/4)
        [[30.0, 0.0, 0.0], [0.0, 0.0, 0.0]],  # nearly one-hot: ~0;  uniform over 3: ln 3
    ])
    h_quarter = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))  # 0.5623
    expected = torch.tensor([[math.log(2.0), h_quarter], [0.0, ln3]])
    targets = torch.zeros(2, 2, dtype=torch.long)
    torch.testing.assert_close(full_logprobs(logits, targets, 1.0, "metric", chunk_rows=1)[1], expected, atol=1e-6, rtol=0)
    # temperature 2 on doubled logits is the same distribution
    torch.testing.assert_close(full_logprobs(2 * logits, targets, 2.0, "metric", chunk_rows=4)[1], expected, atol=1e-6,
                               rtol=0)
    # as a metric: float32 out of bf16 logits, and no graph back into the model
    trained = logits.clone().requires_grad_(True)
    out = full_logprobs(trained.bfloat16(), targets, 1.0, "metric")[1]
    assert out.dtype == torch.float32 and not out.requires_grad


def test_completion_length_stats_by_hand():
    lengths = torch.tensor([3, 8, 5, 8])
    truncated = torch.tensor([False, True, False, True])
    stats = completion_length_stats(lengths, truncated)
    assert float(stats["min_length"]) == 3 and float(stats["max_length"]) == 8
    assert float(stats["mean_terminated_length"]) == pytest.approx(4.0)  # (3 + 5) / 2: the truncated 8s are left out
    none_ended = completion_length_stats(lengths, torch.ones(4, dtype=torch.bool))
    assert float(none_ended["mean_terminated_length"]) == 0.0  # not NaN


def test_cosine_with_warmup_by_hand():
    from r1lit.training.optim import cosine_with_warmup

    # warmup 4: (step + 1) / 5 -> 0.2 at step 0; then cosine over 10 steps: halfway (step 9) = 0.5, end = min
    assert cosine_with_warmup(0, 4, 14) == pytest.approx(0.2)
    assert cosine_with_warmup(3, 4, 14) == pytest.approx(0.8)
    assert cosine_with_warmup(4, 4, 14) == pytest.approx(1.0)
    assert cosine_with_warmup(9, 4, 14) == pytest.approx(0.5)
    assert cosine_with_warmup(14, 4, 14) == pytest.approx(0.0)
    assert cosine_with_warmup(14, 4, 14, min_ratio=0.1) == pytest.approx(0.1)
    assert cosine_with_warmup(0, 0, 10) == pytest.approx(1.0)


def test_bad_loss_settings_fail_at_construction():
    with pytest.raises(ValueError, match="clip"):
        GRPOLoss(epsilon=0)
    with pytest.raises(ValueError, match="beta"):
        GRPOLoss(beta=-1)


def test_truncated_importance_sampling_by_hand():
    from r1lit.grpo.importance_sampling import ImportanceSampling
    from r1lit.grpo.metrics import sampling_mismatch

    trainer = torch.log(torch.tensor([[0.5, 0.4, 0.9], [0.3, 0.3, 0.3]]))
    sampler = torch.log(torch.tensor([[0.25, 0.4, 0.3], [0.3, 0.6, 0.3]]))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # token ratios: [[2, 1, 3 -> cap 2.5], [1, 0.5, (pad)]]
    token = ImportanceSampling("token", cap=2.5).weights(trainer, sampler, mask)
    torch.testing.assert_close(token, torch.tensor([[2.0, 1.0, 2.5], [1.0, 0.5, 0.0]]))
    # sequence ratios: 2 × 1 × 3 = 6 -> cap 2.5 on every token; 1 × 0.5 = 0.5
    seq = ImportanceSampling("sequence", cap=2.5).weights(trainer, sampler, mask)
    torch.testing.assert_close(seq, torch.tensor([[2.5, 2.5, 2.5], [0.5, 0.5, 0.0]]))
    stats = sampling_mismatch(trainer, sampler, mask)
    # |log 2|, 0, |log 3|, 0, |log 0.5| over 5 tokens
    assert stats["logp_diff_mean"] == pytest.approx((2 * math.log(2) + math.log(3)) / 5)
    assert stats["logp_diff_max"] == pytest.approx(math.log(3))
    assert stats["is_ratio_mean"] == pytest.approx((2 + 1 + 3 + 1 + 0.5) / 5)


def test_is_weights_scale_only_the_policy_gradient_term():
    from r1lit.grpo.importance_sampling import MaskedImportanceSampling

    logps = torch.log(torch.full((1, 2), 0.5))
    ref = torch.log(torch.full((1, 2), 0.25))
    weights = torch.full((1, 2), 0.5)
    sampler = torch.log(torch.tensor([[0.25, 0.125]]))  # ratios π/π_sampler = [2, 4]: masked IS keeps 2, zeroes 4
    loss_fn = GRPOLoss(beta=0.1, importance_sampling=MaskedImportanceSampling(upper=2.5))
    loss, stats = loss_fn(loss_inputs(logps, logps.detach(), ref, torch.tensor([1.0]), weights, sampler))
    assert float(stats.is_masked) == 1.0
    # surrogate per token = -A·ratio = -1, times IS [2, 0] -> [-2, 0]; plus 0.1·k3 on both; weighted by 0.5 each
    k3 = 0.5 + math.log(2) - 1
    assert float(loss) == pytest.approx(0.5 * (-2 + 0.1 * k3) + 0.5 * (0 + 0.1 * k3))
