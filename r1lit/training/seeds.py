"""Sampling seeds derived from (base seed, step, rank): ranks draw different samples, and a resumed run draws the
same samples as an uninterrupted one without saving any generator state."""

from __future__ import annotations

import numpy as np


def derive_seed(base: int, *keys: int) -> int:
    """A 31-bit seed that depends on every key; nearby keys give unrelated seeds."""
    return int(np.random.SeedSequence([base % 2**32, *(k % 2**32 for k in keys)]).generate_state(1)[0] >> 1)
