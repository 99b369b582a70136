"""KeepFreedHostMemory turns the glibc setting on for CPU fits only, and not at all when disabled."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch

import r1lit.callbacks.host_memory as host_memory
from r1lit.callbacks import KeepFreedHostMemory


@pytest.fixture
def calls(monkeypatch):
    """Records calls of keep_freed_host_memory instead of changing this test process's allocator."""
    made = []
    monkeypatch.setattr(host_memory, "keep_freed_host_memory", lambda: made.append(1) or True)
    return made


def test_a_cpu_trainer_keeps_freed_host_memory(calls):
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    keep = KeepFreedHostMemory()
    keep.setup(trainer, None, "fit")
    assert calls == [1] and keep.applied


def test_gpu_runs_and_a_disabled_callback_leave_glibc_alone(calls):
    on_gpu = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)))
    on_cpu = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")))
    gpu, disabled = KeepFreedHostMemory(), KeepFreedHostMemory(enabled=False)
    gpu.setup(on_gpu, None, "fit")
    disabled.setup(on_cpu, None, "fit")
    assert calls == [] and not gpu.applied and not disabled.applied
