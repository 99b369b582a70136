"""Sampler–trainer corrections are immune to whatever lies under the mask (NeMo-RL#4154, OpenRLHF#1314): a
truncating sampler writes -inf after a row's EOS, and -inf × 0 is NaN. Every correction must give the weights it
gives with zeros there, and a sequence-level correction must not drop a completion that ended early."""

import math

import pytest
import torch

from r1lit.grpo.importance_sampling import GeometricSequenceMask, MaskedImportanceSampling
from r1lit.grpo.importance_sampling import ImportanceSampling

# Two completions of 4 slots: the first ended after 2 tokens, the second runs to the end.
MASK = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
# Token ratios π_trainer / π_sampler on the real tokens: (2, 1) and (1, 1, 0.5, 1).
TRAINER = torch.log(torch.tensor([[0.5, 0.25, 0.3, 0.3], [0.2, 0.2, 0.1, 0.9]]))
SAMPLER = torch.log(torch.tensor([[0.25, 0.25, 0.3, 0.3], [0.2, 0.2, 0.2, 0.9]]))

CORRECTIONS = [
    ImportanceSampling(level="token", cap=2.0),
    ImportanceSampling(level="sequence", cap=2.0),
    MaskedImportanceSampling(level="token", upper=3.0),
    MaskedImportanceSampling(level="sequence", upper=3.0),
    GeometricSequenceMask(upper=1.5),
    GeometricSequenceMask(upper=1.5, cap=1.5),
]
POISON = [float("-inf"), float("inf"), float("nan"), -1e30]


def _poisoned(values: torch.Tensor, poison: float) -> torch.Tensor:
    return torch.where(MASK.bool(), values, torch.full_like(values, poison))


@pytest.mark.parametrize("poison", POISON)
@pytest.mark.parametrize("correction", CORRECTIONS, ids=lambda c: f"{type(c).__name__}-{c.level}-{getattr(c, 'cap', '')}")
def test_weights_do_not_see_what_lies_under_the_mask(correction, poison):
    """Guards -inf × 0 = NaN: the sampler's (and the trainer's) values on padding change nothing, and the weights
    there are exactly 0."""
    clean = correction.weights(TRAINER, _poisoned(SAMPLER, 0.0), MASK)
    for trainer, sampler in [(TRAINER, _poisoned(SAMPLER, poison)), (_poisoned(TRAINER, poison), SAMPLER),
                             (_poisoned(TRAINER, poison), _poisoned(SAMPLER, poison))]:
        weights = correction.weights(trainer, sampler, MASK)
        assert torch.isfinite(weights).all()
        torch.testing.assert_close(weights, clean)
        assert (weights[~MASK.bool()] == 0).all()


def test_weights_by_hand():
    """Guards the values themselves (worked by hand from the ratios above)."""
    token = ImportanceSampling(level="token", cap=1.5).weights(TRAINER, _poisoned(SAMPLER, -math.inf), MASK)
    torch.testing.assert_close(token, torch.tensor([[1.5, 1.0, 0.0, 0.0], [1.0, 1.0, 0.5, 1.0]]))
    # sequence products: 2·1 = 2 (capped at 1.5) and 1·1·0.5·1 = 0.5
    sequence = ImportanceSampling(level="sequence", cap=1.5).weights(TRAINER, _poisoned(SAMPLER, -math.inf), MASK)
    torch.testing.assert_close(sequence, torch.tensor([[1.5, 1.5, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]]))
    # MIS sequence in [1/1.9, 1.9]: 2 is out (0), 0.5 is out (0.5 < 0.526)
    mis = MaskedImportanceSampling(level="sequence", upper=1.9).weights(TRAINER, _poisoned(SAMPLER, -math.inf), MASK)
    assert float(mis.abs().sum()) == 0.0
    # geometric means: sqrt(2) = 1.414 (kept under 1.5) and 0.5^(1/4) = 0.841 (1/1.5 = 0.667 <= 0.841: kept)
    geo = GeometricSequenceMask(upper=1.5).weights(TRAINER, _poisoned(SAMPLER, -math.inf), MASK)
    torch.testing.assert_close(geo, MASK.float())
    geo_tight = GeometricSequenceMask(upper=1.2).weights(TRAINER, _poisoned(SAMPLER, -math.inf), MASK)
    torch.testing.assert_close(geo_tight, torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]))


@pytest.mark.parametrize("correction", CORRECTIONS, ids=lambda c: f"{type(c).__name__}-{c.level}-{getattr(c, 'cap', '')}")
def test_agreeing_trainer_and_sampler_keep_every_completion(correction):
    """Guards the silent zeroing: when trainer and sampler agree exactly, every real token of every completion
    (the one that ended early included) has weight 1, whatever the sampler wrote after its EOS."""
    weights = correction.weights(TRAINER, _poisoned(TRAINER, -math.inf), MASK)
    torch.testing.assert_close(weights, MASK.float())


def test_a_row_with_no_trained_token_gives_zeros():
    """Guards the all-masked row (a truncated completion left out of training): zeros, not NaN from 0/0."""
    mask = torch.zeros(1, 3, dtype=torch.long)
    sampler = torch.full((1, 3), -math.inf)
    for correction in CORRECTIONS:
        weights = correction.weights(torch.zeros(1, 3), sampler, mask)
        assert torch.equal(weights, torch.zeros(1, 3))
