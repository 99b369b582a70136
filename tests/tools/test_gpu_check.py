"""The GPU check cannot run here (no GPU); what can: its shell script parses, and its Python part runs every
section CPU can carry (--dry-run) and reports them all as passed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def gpu_check(*args: str, port: int, timeout: int = 300) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """``dev/gpu_check.py --dry-run *args`` with its own rendezvous port; (the process, its JSON lines)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MASTER_PORT=str(port))
    done = subprocess.run([sys.executable, str(ROOT / "dev" / "gpu_check.py"), "--dry-run", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)
    return done, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "dev" / "gpu_check.sh")], check=True, timeout=30)


@pytest.mark.slow
@pytest.mark.deepspeed
def test_gpu_check_dry_run_passes_every_section():
    done, lines = gpu_check(port=29533, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = {line["section"]: line["result"] for line in lines if "result" in line}
    assert {"environment", "recipe", "train:cpu", "train:cpu+compile_layers", "nan_skip:zero2.json",
            "nan_skip:zero2_offload.json", "nan_skip:zero3.json", "colocate"} <= set(results)
    assert results["recipe"]["scalars"]["reward_std"] and results["recipe"]["checkpoints"]
    assert all(results[f"nan_skip:{name}"]["ok"] for name in ("zero2.json", "zero2_offload.json", "zero3.json"))
    assert "so gpu_memory_utilization must lie in [0.06, 0.50]" in results["colocate"]["qwen2.5-1.5b@80GiB"]
    assert lines[-1] == {"failed_sections": []}


def test_gpu_check_runs_only_the_sections_asked_for():
    for only, ran in ((" colocate , mpi", ["colocate", "mpi"]), ("nan_skip", ["nan_skip:zero2.json",
                      "nan_skip:zero2_offload.json", "nan_skip:zero3.json"]), ("train:cpu", ["train:cpu"])):
        done, lines = gpu_check("--only", only, port=29534)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        # an exact name picks that section alone (train:cpu, not train:cpu+compile_layers); a prefix every match
        assert [line["section"] for line in lines if "result" in line] == ran


@pytest.mark.parametrize("only, message", [
    ("bogus", "--only 'bogus' picks no section on this machine"),
    ("Recipe", "--only 'Recipe' picks no section"),
    ("recipe,", "--only '' picks no section"),
    ("placement", "--only 'placement' picks no section"),  # a GPU-only section, asked for on CPU
])
def test_gpu_check_refuses_a_section_it_does_not_have(only, message):
    done, _ = gpu_check("--only", only, port=29535)
    assert done.returncode == 1 and message in done.stderr
    assert "train:cpu+compile_layers" in done.stderr  # the sections it has are listed
    assert '"section"' not in done.stdout  # refused before anything ran
