"""benchmarks/step_probe.py: its /proc arithmetic by hand, and the callback on a real three-step fit."""

from __future__ import annotations

import json

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from helpers import load_tool

sp = load_tool("step_probe", "benchmarks")

MAPS = """\
55d0c0000000-55d0c0021000 r--p 00000000 08:01 123 /usr/bin/python3.11
55d0c1000000-55d0c3000000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000400000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
"""


def test_heap_bytes_reads_the_heap_mapping_only():
    """0x55d0c3000000 − 0x55d0c1000000 = 0x2000000 = 32 MiB; the anonymous 4 MiB mapping and the stack do not count."""
    assert sp.heap_bytes(MAPS) == 32 * 2**20
    assert sp.heap_bytes(MAPS.replace("[heap]", "")) == 0


def test_cpu_shares_by_hand():
    """Deltas user 60, nice 0, system 10, idle 20, iowait 0, irq 0, softirq 5, steal 5: 100 ticks in all."""
    before = (100, 0, 50, 1000, 0, 0, 10, 7, 0, 0)
    after = (160, 0, 60, 1020, 0, 0, 15, 12, 0, 0)
    assert sp.cpu_shares(before, after) == {"system": 0.10, "idle": 0.20, "steal": 0.05}
    assert sp.cpu_shares(before, before) == {"system": 0.0, "idle": 0.0, "steal": 0.0}


def test_step_row_subtracts_snapshots():
    before = sp.Snapshot(10.0, 3.0, 100, 64 * 2**20, (0,) * 8)
    after = sp.Snapshot(12.5, 7.0, 350, 96 * 2**20, (50, 0, 10, 40, 0, 0, 0, 0))
    row = sp.step_row(4, before, after)
    assert (row.step, row.wall_s, row.cpu_s, row.minor_faults) == (4, 2.5, 4.0, 250)
    assert (row.heap_mib, row.heap_growth_mib) == (96.0, 32.0)
    assert (row.system, row.idle, row.steal) == (0.10, 0.40, 0.0)


@pytest.mark.timeout(120)
def test_a_fit_gets_one_row_per_step_and_a_result_file(tmp_path, capsys):
    probe = sp.StepProbe(results=str(tmp_path / "probe.json"), profile_step=2, profile_rows=5)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[probe])
    trainer.fit(BoringModel())
    assert [row.step for row in probe.rows] == [1, 2, 3]
    for row in probe.rows:
        assert row.wall_s > 0 and row.cpu_s >= 0 and row.minor_faults >= 0
        assert 0 <= row.system <= 1 and 0 <= row.idle <= 1 and 0 <= row.steal <= 1
        assert row.heap_mib - row.heap_growth_mib > 0  # CPython under glibc has a [heap] when the step starts
    saved = json.loads((tmp_path / "probe.json").read_text())
    assert saved["benchmark"] == "step_probe"
    assert [row["step"] for row in saved["result"]["steps"]] == [1, 2, 3]
    assert capsys.readouterr().out.count("[step_probe] step=") == 3
    # the second step ran under the profiler: its operators are torch's, with their input shapes
    operators = saved["result"]["operators"]
    assert saved["result"]["profile_step"] == 2 and 0 < len(operators) <= 5
    assert all(op["self_cpu_ms"] >= 0 and op["calls"] > 0 for op in operators)
    assert any(op["name"].startswith("aten::") and op["shapes"].startswith("[[") for op in operators), operators
    assert [op["self_cpu_ms"] for op in operators] == sorted((op["self_cpu_ms"] for op in operators), reverse=True)


class FailsAtStep(BoringModel):
    def __init__(self, step: int):
        super().__init__()
        self.fail_at = step

    def training_step(self, batch, batch_idx):
        if self.global_step + 1 == self.fail_at:
            raise RuntimeError("boom at step 2")
        return super().training_step(batch, batch_idx)


@pytest.mark.timeout(120)
def test_a_step_that_raises_under_the_profiler_keeps_the_finished_rows(tmp_path):
    """The fit's own error comes out, the profiler is closed, and step 1's row is saved."""
    probe = sp.StepProbe(results=str(tmp_path / "probe.json"), profile_step=2)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[probe])
    with pytest.raises(RuntimeError, match="boom at step 2"):
        trainer.fit(FailsAtStep(2))
    assert probe._profiler is None
    saved = json.loads((tmp_path / "probe.json").read_text())
    assert [row["step"] for row in saved["result"]["steps"]] == [1]


@pytest.mark.parametrize("kwargs", [{"profile_step": 0}, {"profile_step": -1}, {"profile_rows": 0}])
def test_settings_below_one_are_refused(kwargs):
    with pytest.raises(ValueError, match="must be 1 or more"):
        sp.StepProbe(**kwargs)


@pytest.mark.timeout(120)
def test_a_profile_step_beyond_the_fit_says_so(tmp_path, capsys):
    probe = sp.StepProbe(results=str(tmp_path / "probe.json"), profile_step=10)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[probe])
    trainer.fit(BoringModel())
    assert "step 10 was never reached" in capsys.readouterr().out
    assert json.loads((tmp_path / "probe.json").read_text())["result"]["operators"] == []
