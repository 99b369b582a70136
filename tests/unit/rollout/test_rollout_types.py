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
