"""A reward may return its scores as a tensor or a numpy array (or a list of their scalars): they count as the
finite floats they are, and only NaN/inf is called non-finite."""

import numpy as np
import pytest
import torch

from r1lit.errors import RewardError
from r1lit.rewards.base import Reward
from r1lit.rewards.scoring import score_completions


class Returns(Reward):
    def __init__(self, make):
        super().__init__()
        self.make = make

    def __call__(self, prompts, completions, answers):
        return self.make([float(len(c)) for c in completions])


@pytest.mark.parametrize("make", [
    torch.tensor, lambda s: torch.tensor(s, dtype=torch.float64).unsqueeze(1), np.array,
    lambda s: np.array(s, dtype=np.float32), lambda s: [torch.tensor(x) for x in s], lambda s: [np.float32(x) for x in s],
    lambda s: np.array(s, dtype=np.int64),
], ids=["tensor", "tensor-N1", "ndarray", "ndarray-f32", "list-of-0d-tensors", "list-of-np-float32", "ndarray-int"])
def test_tensor_and_array_scores_are_accepted_as_their_values(make):
    scores, errors = score_completions([Returns(make)], ["p"] * 3, ["a", "bb", "cccc"], ["1"] * 3)
    assert scores.tolist() == [[1.0, 2.0, 4.0]] and errors.tolist() == [0]


def test_a_nan_inside_a_tensor_is_still_called_non_finite():
    with pytest.raises(RewardError, match=r"returned nan for completion 1"):
        score_completions([Returns(lambda s: torch.tensor([1.0, float("nan"), 2.0]))], ["p"] * 3, ["a", "b", "c"], ["1"] * 3)
