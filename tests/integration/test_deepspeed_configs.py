"""Every shipped DeepSpeed JSON through a real ``deepspeed.initialize`` (the CPU strategy's own setup, gloo, world 1)
and GRPO's step path: fp32 gradient accumulation under bf16, and an update with a NaN gradient (finite loss) or a
NaN loss discarded without leaking into the next update — the weights after clean, NaN, clean equal those after
clean, clean."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.deepspeed]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "support" / "ds_step_check.py"
CONFIGS = sorted((ROOT / "configs" / "deepspeed").glob("*.json"))


def run(config: Path, fault: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, str(SCRIPT), str(config), fault], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_initialises_accumulates_in_fp32_and_discards_a_nan_update(config):
    clean = run(config, "none")
    assert clean["model_dtype"] == "torch.bfloat16" and clean["grad_accum_dtype"] == "torch.float32"
    assert clean["stepped"] == [True, True] and clean["skipped"] == 0
    if "zero2" in config.name:  # ZeRO-1/2 honour it in the optimizer itself
        assert clean["optimizer_accum_dtype"] == "torch.float32"
    for fault in ("nan_grad", "nan_loss"):
        faulty = run(config, fault)
        assert faulty["stepped"] == [True, False, True] and faulty["skipped"] == 1, (fault, faulty["stepped"])
        assert faulty["weights"] == clean["weights"], f"{fault}: the discarded update changed the next one"
