"""Large host tensors without a page fault per allocation: glibc's malloc told to keep freed memory (CPU training).

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and gives it back with
``munmap`` when freed, so the next tensor of that size is faulted in again page by page. A CPU training step makes
such tensors dozens of times: a chunk's float32 logits ([256, 49,152] is 48 MiB), the bfloat16 copy autocast makes
of a tied 49,152 × 576 embedding, that embedding's gradient. ``mallopt(3)`` with ``M_MMAP_MAX = 0`` serves them from
the heap instead, and a high ``M_TRIM_THRESHOLD`` keeps the heap's freed top for the next step. The cost: the heap
only grows, and a freed hole is a little too small for the next aligned block of its size, so the peak RSS grows
with the run (docs/benchmarks.md, "Host memory on CPU"); ``KeepFreedHostMemory`` makes it a per-run choice.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # from glibc's <malloc.h>
M_MMAP_MAX = -4
KEEP_BYTES = 2**31 - 1  # the largest trim threshold mallopt takes (an int): up to 2 GiB of freed heap top is kept


def keep_freed_host_memory() -> bool:
    """Make glibc keep freed memory for reuse (no mmap for large blocks, no trimming). Returns whether it took
    effect: False where the C library is not glibc (macOS, musl), which then keeps its own behaviour."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # only glibc has it: other libcs' mallopt takes other parameters
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1
    if done:
        log.debug("host memory: glibc keeps freed memory for reuse (mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=2 GiB)")
    return done
