"""benchmarks/record.py names the commit a benchmark started from, even when HEAD moves while it runs."""

from __future__ import annotations

import json

from helpers import load_tool


def test_a_result_names_the_commit_the_benchmark_started_from(tmp_path, monkeypatch):
    monkeypatch.setenv("R1LIT_BENCH_COMMIT", "")
    record = load_tool("record", "benchmarks")  # importing it is the benchmark's start: the commit is read then
    started = record.started_commit()
    assert started and started == record.commit()
    monkeypatch.setattr(record, "commit", lambda: "later00")  # HEAD moved while the benchmark ran
    path = record.write_result("bench_x", {"seconds": 1.0}, tmp_path / "r.json")
    assert json.loads(path.read_text())["commit"] == started
    assert record.default_path("bench_x").name.split("-")[3] == started.split("-")[0]


def test_child_processes_inherit_the_started_commit(monkeypatch):
    monkeypatch.setenv("R1LIT_BENCH_COMMIT", "abc1234")
    record = load_tool("record", "benchmarks")
    assert record.started_commit() == "abc1234"


def test_the_command_carries_the_variables_that_change_what_it_measures(tmp_path, monkeypatch):
    """An overlay of packages on PYTHONPATH (vLLM picks its Zen platform when zentorch imports), torch's huge pages
    and glibc's allocator settings change a measurement: the recorded command, run again, must set them again."""
    monkeypatch.setenv("R1LIT_BENCH_COMMIT", "abc1234")
    monkeypatch.setenv("PYTHONPATH", "/opt/overlay dir")
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "1")
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "0")  # glibc's allocator, set for a whole process
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "17179869184")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
    monkeypatch.chdir(tmp_path)
    record = load_tool("record", "benchmarks")
    saved = json.loads(record.write_result("bench_x", {}, tmp_path / "r.json").read_text())
    command = saved["command"]
    assert "PYTHONPATH='/opt/overlay dir'" in command and "THP_MEM_ALLOC_ENABLE=1" in command
    assert "MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184" in command
    assert "GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in command
    assert saved["cwd"] == str(tmp_path)  # where the command's relative paths start
