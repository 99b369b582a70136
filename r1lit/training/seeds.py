"""Sampling seeds derived from (base seed, step, rank): ranks draw different samples, and a resumed run draws the
same samples as an uninterrupted one without saving any generator state.

Every namespace of derived seeds is here, so no two uses can collide: a key after (step, rank) keeps a use apart
from the training rollouts, which use (step, rank) alone.
"""

from __future__ import annotations

import numpy as np

DYNAMIC_SAMPLING_KEY = 0xD5  # dynamic sampling's extra rounds: (seed, step, rank, key, round)
EXTRA_STREAM_KEY = 0xE7  # the extra problem stream's shuffles, under data.seed: (data seed, key, shuffle)
# validation batches: (seed, step, rank, 1 + batch index[, set index > 0]); the indices start at 1, clear of the training rollouts


def derive_seed(base: int, *keys: int) -> int:
    """A 31-bit seed that depends on every key; nearby keys give unrelated seeds."""
    return int(np.random.SeedSequence([base % 2**32, *(k % 2**32 for k in keys)]).generate_state(1)[0] >> 1)


def rollout_seed(base: int, step: int, rank: int) -> int:
    """The sampling seed of the training rollout asked for at optimizer step ``step`` on ``rank``."""
    return derive_seed(base, step, rank)


def dynamic_sampling_seed(base: int, step: int, rank: int, round_: int) -> int:
    """The sampling seed of dynamic sampling's extra round ``round_`` (1, 2, …) at ``step`` on ``rank``."""
    return derive_seed(base, step, rank, DYNAMIC_SAMPLING_KEY, round_)


def validation_seed(base: int, step: int, rank: int, batch_idx: int, dataloader_idx: int = 0) -> int:
    """The sampling seed of validation batch ``batch_idx`` of set ``dataloader_idx`` after ``step`` updates on
    ``rank`` (the first set keeps the keys of a run with one set, so its samples do not change)."""
    keys = (1 + batch_idx,) if dataloader_idx == 0 else (1 + batch_idx, dataloader_idx)
    return derive_seed(base, step, rank, *keys)


def extra_stream_seed(data_seed: int, shuffle: int) -> int:
    """The seed of shuffle ``shuffle`` of the extra problem stream (dynamic sampling's draws)."""
    return derive_seed(data_seed, EXTRA_STREAM_KEY, shuffle)
