"""Where a benchmark's numbers go, and what travels with them: a number is only worth keeping with the date, the
commit, the machine, the library versions and the command that measured it.

Each script in ``benchmarks/`` writes one JSON file, by default
``benchmarks/results/<date>-<commit>-<machine>-<benchmark>.json`` (``--results PATH`` writes elsewhere), shaped

    {"benchmark": ..., "date": "2026-12-03T15:20:00Z", "commit": "1a57e5f" (+ "-dirty" with uncommitted changes),
     "machine": {"tag": "2c-16g", "cores": 2, "memory_gib": 15.6, "cpu": ..., "gpus": [...]},
     "versions": {"torch": ..., ...}, "command": "OMP_NUM_THREADS=2 python benchmarks/...", "cwd": ...,
     "result": {...}}
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# variables that change what a command measures: threads, vLLM's CPU settings, devices, which packages and
# libraries load (an overlay such as zentorch on PYTHONPATH, a preloaded allocator), torch's huge pages and glibc's
# allocator (its tunables, and every MALLOC_* variable: MALLOC_PREFIX)
ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_KVCACHE_SPACE",
               "CUDA_VISIBLE_DEVICES", "PYTHONPATH", "LD_PRELOAD", "THP_MEM_ALLOC_ENABLE", "GLIBC_TUNABLES")
MALLOC_PREFIX = "MALLOC_"
PACKAGES = ("torch", "transformers", "lightning", "deepspeed", "vllm", "vllm-cpu", "math-verify", "trl", "zentorch")


def commit() -> str:
    """Short commit of the repository, ``-dirty`` when tracked files differ from it; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def started_commit() -> str:
    """The commit the benchmark started from: read once per benchmark (its child processes inherit it through
    ``R1LIT_BENCH_COMMIT``), so a result written after a long run names the code that ran, not a later HEAD."""
    if not os.environ.get("R1LIT_BENCH_COMMIT"):
        os.environ["R1LIT_BENCH_COMMIT"] = commit()
    return os.environ["R1LIT_BENCH_COMMIT"]


def machine() -> dict:
    """Cores, memory and CPU model; GPU names when torch is already imported and sees CUDA."""
    memory = 0.0
    cpu = platform.processor()
    try:
        meminfo = Path("/proc/meminfo").read_text()
        memory = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)) / 1024**2
        cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()).group(1).strip()
    except (OSError, AttributeError):
        pass
    gpus: list[str] = []
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    tag = f"{cores}c-{round(memory)}g"
    if gpus:
        tag += f"-{len(gpus)}x" + re.sub(r"[^a-z0-9]+", "", gpus[0].lower().replace("nvidia", ""))
    return {"tag": tag, "cores": cores, "memory_gib": round(memory, 1), "cpu": cpu, "gpus": gpus}


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def recorded_variables() -> list[str]:
    """The environment variables set now that the recorded command must set again (``ENVIRONMENT``, ``MALLOC_*``)."""
    return [k for k in ENVIRONMENT if k in os.environ] + sorted(k for k in os.environ if k.startswith(MALLOC_PREFIX))


def default_path(benchmark: str) -> Path:
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    return RESULTS / f"{date}-{started_commit()}-{machine()['tag']}-{benchmark}.json"


def write_result(benchmark: str, result: dict, path: Path | None = None) -> Path:
    """Write ``result`` under its header to ``path`` (default: :func:`default_path`) and say where."""
    path = Path(path) if path is not None else default_path(benchmark)
    header = {
        "benchmark": benchmark,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": started_commit(),
        "machine": machine(),
        "versions": versions(),
        "command": " ".join([*(f"{k}={shlex.quote(os.environ[k])}" for k in recorded_variables()),
                             shlex.join([sys.executable, *sys.argv])]),
        "cwd": os.getcwd(),  # the command's relative paths start here
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**header, "result": result}, indent=1, default=str) + "\n")
    print(f"results: {path}")
    return path


started_commit()  # on import, i.e. when the benchmark starts
