"""GSPO's sequence-level ratio on a 3-token completion worked by hand, and the mismatch corrections that mask
(masked IS, the geometric-mean sequence mask) with the mismatch KL metric."""

import math

import pytest
import torch

from helpers import loss_inputs
from r1lit.grpo.importance_sampling import GeometricSequenceMask, MaskedImportanceSampling
from r1lit.errors import ConfigError
from r1lit.grpo.losses import GRPOLoss, GSPOLoss
from r1lit.grpo.metrics import sampling_mismatch

# One completion of 3 tokens: π = (0.5, 0.25, 0.8), π_old = (0.25, 0.25, 0.4): token ratios (2, 1, 2).
# The sequence ratio is their geometric mean s = (2·1·2)^(1/3) = 4^(1/3) = 1.587401.
NEW = torch.log(torch.tensor([[0.5, 0.25, 0.8]]))
OLD = torch.log(torch.tensor([[0.25, 0.25, 0.4]]))
MASK = torch.ones(1, 3)
S = 4 ** (1 / 3)


def gspo(advantage: float, eps=0.2, eps_high=0.28):
    logps = NEW.clone().requires_grad_(True)
    loss_fn = GSPOLoss(epsilon=eps, epsilon_high=eps_high)
    weights = loss_fn.token_weights(MASK, 3, 3.0, 1)  # 1/3 per token: the sequence's term counts once
    loss, stats = loss_fn(loss_inputs(logps, OLD, None, torch.tensor([advantage]), weights))
    loss.backward()
    return float(loss.detach()), logps.grad, stats


def test_gspo_three_token_sequence_by_hand():
    """Guards the sequence ratio (geometric mean, not product or token ratios), the sequence-level clip and the
    gradient through the mean of log-probs."""
    # A = -1: min(-s, -clip(s, 0.8, 1.28)) = min(-1.5874, -1.28) = -1.5874 -> loss +1.5874, not clipped;
    # d loss / d log π_t = s · (1/3) = 0.529134 for each token
    loss, grad, stats = gspo(-1.0)
    assert loss == pytest.approx(S)
    torch.testing.assert_close(grad, torch.full((1, 3), S / 3))
    assert stats.mean("clip_high") == 0.0 and stats.mean("clip_low") == 0.0
    # A = +1: min(s, 1.28) = 1.28 -> loss -1.28, clipped high, no gradient
    loss, grad, stats = gspo(+1.0)
    assert loss == pytest.approx(-1.28)
    assert float(grad.abs().max()) == 0.0 and stats.mean("clip_high") == pytest.approx(1.0)
    # token-level GRPO on the same tokens would clip tokens 1 and 3 (ratio 2 > 1.28) and keep token 2 (ratio 1):
    # loss = -(1.28 + 1 + 1.28) / 3 — the two objectives really differ
    logps = NEW.clone().requires_grad_(True)
    grpo = GRPOLoss(epsilon=0.2, epsilon_high=0.28)
    loss, _ = grpo(loss_inputs(logps, OLD, None, torch.tensor([1.0]), grpo.token_weights(MASK, 3, 3.0, 1)))
    assert float(loss) == pytest.approx(-(1.28 + 1 + 1.28) / 3)


def test_gspo_ignores_padding_and_defaults_to_the_papers_clip():
    """Guards the length normalisation: a padded 4th token must not enter the geometric mean."""
    padded_new = torch.cat([NEW, torch.log(torch.tensor([[0.9]]))], dim=1)
    padded_old = torch.cat([OLD, torch.log(torch.tensor([[0.1]]))], dim=1)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    loss_fn = GSPOLoss(epsilon=0.2, epsilon_high=0.28)
    loss, _ = loss_fn(loss_inputs(padded_new, padded_old, None, torch.tensor([-1.0]), loss_fn.token_weights(mask, 4, 3.0, 1)))
    assert float(loss) == pytest.approx(S)
    assert (GSPOLoss().epsilon, GSPOLoss().epsilon_high) == (3e-4, 4e-4)


def test_masked_importance_sampling_by_hand():
    """Guards masking (weight 0) instead of truncation, at token and sequence level."""
    trainer = torch.log(torch.tensor([[0.5, 0.4, 0.9], [0.3, 0.3, 0.3]]))
    sampler = torch.log(torch.tensor([[0.25, 0.4, 0.3], [0.3, 0.6, 0.3]]))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # token ratios [[2, 1, 3], [1, 0.5, pad]]; kept range [1/2.5, 2.5] = [0.4, 2.5]: 3 is masked, 2 and 0.5 kept
    token = MaskedImportanceSampling("token", upper=2.5).weights(trainer, sampler, mask)
    torch.testing.assert_close(token, torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.5, 0.0]]))
    # sequence ratios 6 (masked) and 0.5 (kept, on every token of the row)
    seq = MaskedImportanceSampling("sequence", upper=2.5).weights(trainer, sampler, mask)
    torch.testing.assert_close(seq, torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0]]))


def test_geometric_sequence_mask_by_hand():
    """Guards the geometric mean (length-normalised) as the rejection statistic, and the optional token TIS."""
    trainer = torch.log(torch.tensor([[0.5, 0.4, 0.9], [0.33, 0.3, 0.3]]))
    sampler = torch.log(torch.tensor([[0.25, 0.4, 0.3], [0.3, 0.3, 0.5]]))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # row 0: (2·1·3)^(1/3) = 1.817 > 1.5 -> rejected; row 1: (1.1·1)^(1/2) = 1.0488 inside [1/1.5, 1.5] -> kept
    kept = GeometricSequenceMask(upper=1.5).weights(trainer, sampler, mask)
    torch.testing.assert_close(kept, torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    # with token TIS capped at 1.05: row 1's tokens get min(1.1, 1.05) and 1
    tis = GeometricSequenceMask(upper=1.5, cap=1.05).weights(trainer, sampler, mask)
    torch.testing.assert_close(tis, torch.tensor([[0.0, 0.0, 0.0], [1.05, 1.0, 0.0]]))
    with pytest.raises(ConfigError):
        GeometricSequenceMask(upper=0.9)


def test_mismatch_kl_by_hand():
    """Guards the logged KL(sampler ‖ trainer): k3 = r − 1 − log r per token, and k1 = mean log(π_s / π_t)."""
    trainer = torch.log(torch.tensor([[0.5, 0.2]]))
    sampler = torch.log(torch.tensor([[0.25, 0.2]]))
    stats = sampling_mismatch(trainer, sampler, torch.ones(1, 2))
    # token 1: r = 2 -> 2 - 1 - ln 2 = 0.306853; token 2: r = 1 -> 0
    assert stats["mismatch_kl"] == pytest.approx((1 - math.log(2)) / 2)
    assert stats["mismatch_kl_k1"] == pytest.approx(-math.log(2) / 2)
