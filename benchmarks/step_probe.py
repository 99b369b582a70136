"""A callback that says, batch by batch, where a CPU fit's time went outside its own arithmetic: wall and CPU seconds,
minor page faults, how much the process's heap grew, and the machine's system, idle and steal shares. On a VM where
new host memory is slow to fault in (bench_page_faults.py), a step whose heap grows past every earlier step's pays
for it in system time; this shows which steps did.

    PYTHONPATH=benchmarks .venv/bin/r1lit fit --config … --trainer.callbacks+=step_probe.StepProbe \
        [--trainer.callbacks.results PATH] [--trainer.callbacks.profile_step N]

One line per training batch (``[step_probe] step=…``: one per optimizer step in r1lit's fits) and, when the fit ends
or stops on an error, a result file (benchmarks/README.md) with every finished row and the fit's command; with ``profile_step``, that step runs under ``torch.profiler`` and the file also
holds its operators by self CPU time, with their input shapes (the GEMMs' shapes tell which pass they belong to).
Linux only (it reads /proc); the heap is glibc's main arena (``[heap]``). CPU time, faults and heap are the trainer
process's: an engine in its own process (``VLLMServerEngine``) shows only in the machine's shares.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/record.py, on PYTHONPATH or loaded by path
from record import write_result  # noqa: E402

MIB = 2**20


@dataclass(frozen=True)
class Snapshot:
    wall: float
    cpu: float  # this process's user + system seconds
    minor_faults: int
    heap: int  # bytes of the [heap] mapping
    stat: tuple[int, ...]  # /proc/stat's first line: user nice system idle iowait irq softirq steal …


def heap_bytes(maps: str) -> int:
    """Size of the ``[heap]`` mapping in /proc/self/maps text (0 when there is none)."""
    total = 0
    for line in maps.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[5] == "[heap]":
            start, end = (int(x, 16) for x in fields[0].split("-"))
            total += end - start
    return total


def cpu_shares(before: tuple[int, ...], after: tuple[int, ...]) -> dict[str, float]:
    """The machine's shares of system, idle and steal time between two /proc/stat ``cpu`` lines (all cores)."""
    delta = [b - a for a, b in zip(before, after)]
    total = sum(delta) or 1
    return {"system": delta[2] / total, "idle": delta[3] / total, "steal": delta[7] / total if len(delta) > 7 else 0.0}


def snapshot() -> Snapshot:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stat = tuple(int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:])
    return Snapshot(time.perf_counter(), usage.ru_utime + usage.ru_stime, usage.ru_minflt,
                    heap_bytes(Path("/proc/self/maps").read_text()), stat)


@dataclass(frozen=True)
class StepRow:
    step: int
    wall_s: float
    cpu_s: float
    minor_faults: int
    heap_mib: float
    heap_growth_mib: float
    system: float
    idle: float
    steal: float


def step_row(step: int, before: Snapshot, after: Snapshot) -> StepRow:
    shares = cpu_shares(before.stat, after.stat)
    return StepRow(step, after.wall - before.wall, after.cpu - before.cpu, after.minor_faults - before.minor_faults,
                   after.heap / MIB, (after.heap - before.heap) / MIB, shares["system"], shares["idle"], shares["steal"])


def top_operators(profiler, rows: int) -> list[dict]:
    """The profiled step's operators by self CPU time, one entry per name and input shapes."""
    events = sorted(profiler.key_averages(group_by_input_shape=True), key=lambda e: -e.self_cpu_time_total)
    return [{"name": e.key, "shapes": str(e.input_shapes), "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1e3}
            for e in events[:rows]]


class StepProbe(L.Callback):
    """Prints and records each training step's wall and CPU time, page faults, heap growth and machine shares."""

    def __init__(self, results: str | None = None, profile_step: int | None = None, profile_rows: int = 40):
        """
        Args:
            results: where the result file goes (default: benchmarks/results/<date>-<commit>-<machine>-step_probe.json).
            profile_step: run this step (1 = the first) under torch.profiler; its row's times include the
                profiler's own overhead.
            profile_rows: how many operators (by self CPU time, per input shape) the result keeps.
        """
        if profile_step is not None and profile_step < 1:
            raise ValueError(f"profile_step must be 1 or more (the first step is 1), got {profile_step}")
        if profile_rows < 1:
            raise ValueError(f"profile_rows must be 1 or more, got {profile_rows}")
        self.results = results
        self.profile_step = profile_step
        self.profile_rows = profile_rows
        self.rows: list[StepRow] = []
        self.operators: list[dict] = []
        self._before: Snapshot | None = None
        self._profiler = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.profile_step is not None and trainer.global_step + 1 == self.profile_step:
            from torch.profiler import ProfilerActivity, profile

            self._profiler = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
            self._profiler.__enter__()
        self._before = snapshot()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._before is None:
            return
        after = snapshot()
        if self._profiler is not None:
            self._profiler.__exit__(None, None, None)
            self.operators = top_operators(self._profiler, self.profile_rows)
            self._profiler = None
        row = step_row(trainer.global_step, self._before, after)
        self.rows.append(row)
        print(f"[step_probe] step={row.step} wall={row.wall_s:.2f}s cpu={row.cpu_s:.2f}s faults={row.minor_faults} "
              f"heap={row.heap_mib:.0f}MiB (+{row.heap_growth_mib:.0f}) system={row.system:.3f} idle={row.idle:.3f} "
              f"steal={row.steal:.3f}", flush=True)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """A step that raised: close the profiler (left running, it crashes the interpreter at exit) and keep the
        rows of the steps that finished."""
        if self._profiler is not None:
            self._profiler.__exit__(None, None, None)
            self._profiler = None
        self._save(trainer)

    def _save(self, trainer) -> None:
        if not trainer.is_global_zero:
            return
        if self.profile_step is not None and not self.operators:
            print(f"[step_probe] step {self.profile_step} was never reached: nothing profiled", flush=True)
        if self.rows:
            write_result("step_probe", {"steps": [asdict(r) for r in self.rows], "profile_step": self.profile_step,
                                        "operators": self.operators}, Path(self.results) if self.results else None)
