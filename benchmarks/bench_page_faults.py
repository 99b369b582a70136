"""First touch of host memory: the time per page fault of blocks this process has never touched, one after another.

    .venv/bin/python benchmarks/bench_page_faults.py [--block-mib 1024] [--blocks 6] [--threads 2] [--huge-pages]

Each block is a new tensor, filled once (the fill faults every page in) and kept, so the next block needs pages the
process has never had; then the block is filled again, which faults nothing and gives the fill's own time. A fault's
cost is (first fill − second fill) / minor faults (getrusage). On a VM whose host backs guest memory lazily, pages the
guest has not used for a while cost far more than pages another process freed a moment ago: what a fit pays the step
its heap grows past every earlier step's (docs/benchmarks.md, "The second step's page faults"). ``--huge-pages`` sets
torch's ``THP_MEM_ALLOC_ENABLE=1``, as the ``r1lit`` command does for a fit: large tensors then fault 2 MiB pages.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def fill_block(mib: int) -> tuple["torch.Tensor", dict[str, float]]:
    """A new block of ``mib`` MiB filled twice: each fill's faults and seconds, and the cost of one fault."""
    import torch

    faults, start = minor_faults(), time.perf_counter()
    block = torch.empty(mib * 2**20 // 4, dtype=torch.float32)
    block.fill_(1.0)
    first, faults = time.perf_counter() - start, minor_faults() - faults
    refaults, start = minor_faults(), time.perf_counter()
    block.fill_(2.0)
    second, refaults = time.perf_counter() - start, minor_faults() - refaults
    return block, {"faults": faults, "second_fill_faults": refaults, "first_fill_s": first, "second_fill_s": second,
                   "us_per_fault": (first - second) / max(faults, 1) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-mib", type=int, default=1024, help="size of each block")
    parser.add_argument("--blocks", type=int, default=6, help="blocks, all kept until the end")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=None,
                        help="result file (default: benchmarks/results/<date>-<commit>-<machine>-bench_page_faults.json)")
    parser.add_argument("--huge-pages", action="store_true",
                        help="THP_MEM_ALLOC_ENABLE=1 (what the r1lit command sets): large tensors in 2 MiB pages")
    args = parser.parse_args()
    if args.block_mib < 1 or args.blocks < 1 or args.threads < 1:
        parser.error("--block-mib, --blocks and --threads must be at least 1")
    # read by torch's allocator, imported below; set either way, so an inherited value cannot change what is measured
    os.environ["THP_MEM_ALLOC_ENABLE"] = "1" if args.huge_pages else "0"
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling record.py
    from record import write_result

    torch.set_num_threads(args.threads)

    kept, rows = [], []
    print(f"{'block':>5} {'MiB':>6} {'faults':>8} {'1st fill s':>10} {'2nd fill s':>10} {'µs/fault':>9}")
    for i in range(args.blocks):
        block, row = fill_block(args.block_mib)
        kept.append(block)
        rows.append(row)
        print(f"{i:5d} {args.block_mib:6d} {row['faults']:8d} {row['first_fill_s']:10.3f} {row['second_fill_s']:10.3f} "
              f"{row['us_per_fault']:9.1f}", flush=True)
    write_result("bench_page_faults", {"block_mib": args.block_mib, "threads": torch.get_num_threads(),
                                       "huge_pages": args.huge_pages, "blocks": rows}, args.results)


if __name__ == "__main__":
    main()
