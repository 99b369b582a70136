"""assemble_rollout: which completion tokens count."""

import torch

from r1lit.rollout.types import assemble_rollout


class _Tokenizer:
    def batch_decode(self, rows, skip_special_tokens=True):
        return [" ".join(str(int(t)) for t in row) for row in rows]


def test_masks_stop_at_eos_and_at_a_samples_own_length():
    eos, pad = 2, 0
    ids = torch.tensor([[5, 2, 0, 0], [7, 8, 0, 0], [9, 9, 9, 9]])  # EOS at 1; cut at 2 tokens without EOS; full
    rollout = assemble_rollout([[11], [12], [13]], 1, ids, torch.full((3, 4), -1.0), [eos], pad, _Tokenizer(),
                               lengths=torch.tensor([2, 2, 4]))
    assert rollout.completion_mask.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert rollout.truncated.tolist() == [False, True, True]
    assert rollout.sampler_logprobs.tolist()[1] == [-1.0, -1.0, 0.0, 0.0]
    assert rollout.texts == ["5 2", "7 8", "9 9 9 9"]
    without = assemble_rollout([[11], [12], [13]], 1, ids, None, [eos], pad, _Tokenizer())
    assert without.completion_mask.tolist()[1] == [1, 1, 1, 1]  # padding counted: why engines pass lengths


def test_non_finite_values_after_the_cut_become_zeros_in_every_engines_path():
    """Guards -inf x 0 = NaN: whatever a sampler wrote after a row's EOS or past its length (-inf, +inf, NaN) is 0 in
    the rollout, through assemble_rollout (HFEngine) and rollout_from_samples (the vLLM engines)."""
    import math

    import pytest

    from r1lit.rollout.types import Rollout, rollout_from_samples

    eos, pad = 2, 0
    ids = torch.tensor([[5, 2, 7, 7], [7, 8, 9, 2], [9, 2, 9, 9]])
    logps = torch.tensor([[-0.5, -0.25, -math.inf, math.nan], [-1.0, -2.0, -0.75, -0.5], [-4.0, -0.125, math.inf, -math.inf]])
    rollout = assemble_rollout([[11], [12], [13]], 1, ids, logps, [eos], pad, _Tokenizer())
    assert rollout.sampler_logprobs.tolist() == [[-0.5, -0.25, 0.0, 0.0], [-1.0, -2.0, -0.75, -0.5], [-4.0, -0.125, 0.0, 0.0]]
    samples = rollout_from_samples([[11], [12]], 1, [[5, 2], [7, 8, 9]], [[-0.5, -0.25], [-1.0, -2.0, -0.75]], [eos], pad,
                                   _Tokenizer())
    assert torch.isfinite(samples.sampler_logprobs).all()
    assert samples.sampler_logprobs.tolist() == [[-0.5, -0.25, 0.0], [-1.0, -2.0, -0.75]]
    with pytest.raises(ValueError, match="assemble_rollout"):  # a rollout built by hand must hold the same rule
        Rollout(prompt_ids=rollout.prompt_ids, prompt_mask=rollout.prompt_mask, completion_ids=rollout.completion_ids,
                completion_mask=rollout.completion_mask, texts=rollout.texts, truncated=rollout.truncated,
                num_generations=1, sampler_logprobs=logps)
