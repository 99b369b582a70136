"""Large host tensors without a page fault per 4 KiB: torch's huge-page allocation, and glibc told to keep freed memory.

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
import os

log = logging.getLogger(__name__)

THP_VARIABLE = "THP_MEM_ALLOC_ENABLE"  # torch's switch (c10's alloc_cpu, torch >= 2.2)
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


def huge_pages_for_large_tensors() -> bool:
    """Ask torch's CPU allocator to back every block of 2 MiB or more with transparent huge pages
    (``THP_MEM_ALLOC_ENABLE=1``; the kernel's THP mode must be ``madvise`` or ``always``): a new large tensor is then
    faulted in 2 MiB at a time instead of 4 KiB, and freed memory still goes back to the system, so nothing grows
    with the run. torch reads the variable once, at its first CPU allocation: this must run before anything
    imports torch (the ``r1lit`` command calls it first). A value already set is kept (``0`` turns it off).
    Returns whether it is on."""
    return os.environ.setdefault(THP_VARIABLE, "1") == "1"
