"""ExtraProblems: the problems a step draws beyond its batch (dynamic sampling), from an order of their own.

Each rank reads its own stride of an endless sequence of shuffles of the training set (shuffle e under a seed
derived from (data seed, e)), so the problems drawn are a function of the seed and of how many were drawn before:
that count is part of the data position a checkpoint records, and a resumed run draws what the uninterrupted run
would have drawn. The stream is independent of the main epoch order, so a problem can come up both as an extra
and in its epoch's batches.
"""

from __future__ import annotations

import torch

from r1lit.training.seeds import extra_stream_seed


class ExtraProblems:
    """Indices into the training set for one rank; ``drawn`` counts what this rank has taken so far."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        if size < num_replicas:
            raise ValueError(f"{size} problems cannot be shared by {num_replicas} ranks")
        self.size, self.num_replicas, self.rank, self.seed = size, num_replicas, rank, seed
        self.per_rank = size // num_replicas
        self.drawn = 0
        self._cached: tuple[int, list[int]] | None = None

    def _share(self, shuffle: int) -> list[int]:
        if self._cached is None or self._cached[0] != shuffle:
            generator = torch.Generator().manual_seed(extra_stream_seed(self.seed, shuffle))
            order = torch.randperm(self.size, generator=generator)[: self.per_rank * self.num_replicas]
            self._cached = (shuffle, order[self.rank :: self.num_replicas].tolist())
        return self._cached[1]

    def draw(self, count: int) -> list[int]:
        """The next ``count`` indices of this rank's stream."""
        out = []
        for _ in range(count):
            shuffle, position = divmod(self.drawn, self.per_rank)
            out.append(self._share(shuffle)[position])
            self.drawn += 1
        return out
