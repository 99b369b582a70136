"""benchmarks/bench_page_faults.py on small blocks: the first fill of each new block faults its pages in, the second
faults nothing, and sizes below one are refused."""

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import thp_mode

ROOT = Path(__file__).resolve().parents[2]


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_page_faults.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})


def test_each_new_block_is_faulted_in_once(tmp_path):
    done = bench("--block-mib", "16", "--blocks", "2", "--threads", "1", "--results", str(tmp_path / "out.json"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())["result"]
    assert result["block_mib"] == 16 and len(result["blocks"]) == 2
    pages = 16 * 2**20 // 4096
    for row in result["blocks"]:
        # every page once (4 KiB pages; fewer with transparent huge pages, never none)
        assert 0 < row["faults"] <= pages * 1.1, row
        assert row["second_fill_faults"] < row["faults"] / 10, row
        assert row["first_fill_s"] > 0 and row["second_fill_s"] > 0
    assert "µs/fault" in done.stdout


def test_huge_pages_are_asked_of_torch_and_recorded(tmp_path):
    """Where the kernel backs madvised memory with 2 MiB pages (THP ``madvise`` or ``always``), a huge-page block
    faults in far fewer times than a 4 KiB-page one."""
    faults = {}
    for extra in ([], ["--huge-pages"]):
        out = tmp_path / f"out{len(extra)}.json"
        done = bench("--block-mib", "16", "--blocks", "1", "--threads", "1", *extra, "--results", str(out))
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(out.read_text())["result"]
        assert result["huge_pages"] is bool(extra)
        faults[bool(extra)] = result["blocks"][0]["faults"]
    assert faults[True] > 0
    if thp_mode() != "never":
        assert faults[True] < faults[False] / 2, faults


def test_sizes_below_one_are_refused():
    for bad in (["--blocks", "0"], ["--threads", "0"]):
        done = bench(*bad)
        assert done.returncode != 0 and "must be at least 1" in done.stderr
