"""ResumableSampler: a shuffle that is a function of (seed, epoch), so a resumed run can pick up mid-epoch.

Lightning restores the loops' counters but not a plain DataLoader's position, and a ``RandomSampler`` driven by a
generator gives a different order once the process restarts. Here the order of epoch e is ``randperm`` under
seed + e, each rank takes every world-th index, and after a resume the first ``skip`` batches of the resumed epoch
are left out. It subclasses ``DistributedSampler`` so that Lightning keeps it instead of wrapping it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, DistributedSampler

from r1lit.data.batch import ProblemBatch


class ResumableSampler(DistributedSampler):
    """Whole batches per rank (the tail that does not fill every rank's batch is dropped each epoch)."""

    def __init__(self, size: int, batch_size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.size, self.batch_size = size, batch_size
        self.per_rank = (size // (batch_size * num_replicas)) * batch_size  # indices each rank gets per epoch
        self.resume_epoch, self.skip_batches = -1, 0

    def resume(self, epoch: int, batches_done: int) -> None:
        """Start at ``epoch`` with its first ``batches_done`` batches (per rank) already consumed."""
        batches_per_epoch = self.per_rank // self.batch_size
        if batches_done >= batches_per_epoch:  # saved at the end of an epoch: the next one starts from its beginning
            epoch, batches_done = epoch + 1, 0
        self.set_epoch(epoch)
        self.resume_epoch, self.skip_batches = epoch, batches_done

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's indices of ``epoch``, in order, before any skipping."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.size, generator=generator)[: self.per_rank * self.num_replicas]
        return order[self.rank :: self.num_replicas].tolist()

    def __iter__(self) -> Iterator[int]:
        indices = self.epoch_indices(self.epoch)
        if self.epoch == self.resume_epoch:  # one-shot: only the first pass over the resumed epoch is shortened
            indices = indices[self.skip_batches * self.batch_size :]
            self.resume_epoch, self.skip_batches = -1, 0
        return iter(indices)

    def __len__(self) -> int:
        # The full epoch, also when resumed: Lightning counts the restored batches towards the epoch's length.
        return self.per_rank


class ResumableLoader(DataLoader):
    """A DataLoader that tells Lightning it resumes mid-epoch (Lightning looks for ``state_dict``/``load_state_dict``
    and otherwise warns that the resume is unreliable). The position itself lives in the datamodule's checkpoint
    state, counted by the trainer, so the loader's one-batch prefetch cannot shift it.

    With ``lookahead`` each ``ProblemBatch`` also carries the batch that follows it in the epoch as ``next`` (None
    for the epoch's last): one-step-off generation starts on it while this one trains.
    """

    def __init__(self, *args, lookahead: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.lookahead = lookahead

    def __iter__(self):
        batches = super().__iter__()
        if not self.lookahead:
            return batches
        return _with_next(batches)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _with_next(batches: Iterator[ProblemBatch]) -> Iterator[ProblemBatch]:
    current = next(batches, None)
    while current is not None:
        following = next(batches, None)
        yield dataclasses.replace(current, next=following)
        current = following
