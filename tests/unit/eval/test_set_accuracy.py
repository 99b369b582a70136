"""val/accuracy over named validation sets: the mean of the sets' accuracies, worked by hand."""

import torch

from r1lit.eval.set_accuracy import SetAccuracy


def test_each_set_counts_once_whatever_its_size():
    """a: 3 of 4 right over two batches (0.75); b: 1 of 10 (0.1). Mean of sets (0.75 + 0.1) / 2 = 0.425, not the
    pooled 4 / 14 = 0.2857."""
    sets = SetAccuracy()
    sets.add("a", torch.tensor([1.0, 1.0]))
    sets.add("a", torch.tensor([1.0, 0.0]))
    sets.add("b", torch.tensor([1.0] + [0.0] * 9))
    assert sets.mean(["a", "b"], "cpu") == 0.425


def test_a_set_that_saw_nothing_is_left_out_and_reset_clears():
    sets = SetAccuracy()
    sets.add("a", torch.tensor([1.0, 0.0]))
    assert sets.mean(["a", "b"], "cpu") == 0.5  # b saw no problem: not a 0 in the mean
    sets.reset()
    assert sets.mean(["a", "b"], "cpu") is None


def test_ranks_totals_are_summed_before_dividing():
    """Rank 0 saw a: 1 of 1; rank 1 saw a: 0 of 3. Summed: 1 of 4 = 0.25 (a mean of the ranks' rates would be 0.5)."""
    sets = SetAccuracy()
    sets.add("a", torch.tensor([1.0]))
    other = torch.tensor([[0.0, 3.0]], dtype=torch.float64)  # rank 1's [correct, problems] for set a
    assert sets.mean(["a"], "cpu", gather=lambda t: torch.stack([t, other])) == 0.25
