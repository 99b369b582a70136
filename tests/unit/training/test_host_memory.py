"""Host memory on CPU: torch backs large tensors with huge pages under the r1lit command; glibc keeps freed memory
(a large tensor comes from the heap instead of its own mmap, and the heap only grows)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import thp_mode

ROOT = Path(__file__).resolve().parents[3]

PROBE = textwrap.dedent("""
    import ctypes, json, torch
    from r1lit.training.host_memory import keep_freed_host_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    size = 64 << 20  # above glibc's largest mmap threshold (32 MiB)

    def allocate():
        x = torch.ones(size, dtype=torch.uint8)  # written: every page is touched
        info = libc.mallinfo2()
        del x
        return {"mapped": info.hblkhd, "heap": info.arena}

    out = {"before": allocate()}
    out["took_effect"] = keep_freed_host_memory()
    out["first"] = allocate()
    out["later"] = [allocate() for _ in range(6)]
    print(json.dumps(out))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc exists on Linux only")
def test_large_tensors_come_from_the_heap_which_grows_when_one_size_repeats():
    """Run in a fresh interpreter (the setting is process-wide): before, a 64 MiB tensor is its own mmap; after,
    it and six more of its size, one at a time, live in the heap, and the heap ends larger than after the first:
    a freed hole is a little too small for the next aligned block of its size (the trade that makes
    ``KeepFreedHostMemory`` opt-in; docs/benchmarks.md, "Host memory on CPU"). torch's huge-page switch is pinned
    off: importing ``r1lit.cli`` turns it on in this process, and with it torch aligns blocks to pages, where the
    heap's growth over the seven blocks varied from none to six blocks between runs (measured 2026-12-04)."""
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "0"}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["before"]["mapped"] >= 64 << 20  # glibc's default: an mmap per large block
    assert out["took_effect"] is True
    assert out["first"]["mapped"] < 64 << 20 and out["first"]["heap"] >= 64 << 20
    assert all(later["mapped"] < 64 << 20 for later in out["later"])
    assert out["later"][-1]["heap"] > out["first"]["heap"] + (64 << 20)


HUGE_PROBE = textwrap.dedent("""
    import json, os
    import r1lit.cli  # what the r1lit console script imports first
    import torch

    x = torch.ones(64 << 20, dtype=torch.uint8)  # written: every page is touched
    with open("/proc/self/smaps") as smaps:
        huge = sum(int(line.split()[1]) for line in smaps if line.startswith("AnonHugePages:")) << 10
    print(json.dumps({"switch": os.environ.get("THP_MEM_ALLOC_ENABLE"), "huge": huge}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="transparent huge pages are Linux's")
@pytest.mark.parametrize("user_value", [None, "0"])
def test_the_r1lit_command_backs_large_tensors_with_huge_pages(user_value):
    """Importing ``r1lit.cli`` (the console script's first import) turns torch's switch on before torch allocates,
    so a 64 MiB tensor is backed by 2 MiB pages wherever the kernel's THP mode is ``madvise`` or ``always`` (this
    machine: ``madvise``); a user's ``THP_MEM_ALLOC_ENABLE=0`` is kept, and under ``madvise`` then no huge page
    backs it."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if user_value is not None:
        env["THP_MEM_ALLOC_ENABLE"] = user_value
    done = subprocess.run([sys.executable, "-c", HUGE_PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    mode = thp_mode()
    if user_value is None:
        assert out["switch"] == "1"
        if mode in ("madvise", "always"):
            assert out["huge"] >= 32 << 20
    else:
        assert out["switch"] == "0"
        if mode == "madvise":
            assert out["huge"] < 2 << 20
