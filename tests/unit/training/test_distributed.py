"""The collectives' single-process identities, and what the ``r1lit`` command does with the process group a fit
leaves: destroyed at interpreter exit after a clean fit that made it, never when the caller made it or the fit failed.
Each case runs in its own interpreter, where an at-exit observer registered first (so it runs last) prints whether
the group is still alive once r1lit's at-exit work is done."""

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist

from helpers import SUBPROCESS_ENV
from r1lit.training.distributed import end_process_group, gather_uneven, max_over_ranks


def test_collectives_are_identities_on_one_process():
    assert not dist.is_initialized()
    assert max_over_ranks(7) == 7
    assert torch.equal(gather_uneven(torch.tensor([1.0, 2.0])), torch.tensor([1.0, 2.0]))


def run_main(case: str, port: int) -> str:
    """``r1lit.cli.command.main(["fit"])`` with the CLI replaced by ``case``'s fit; returns what the script printed."""
    script = textwrap.dedent(f"""
        import atexit, os
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="{port}", R1LIT_TRACEBACK="1")
        import torch.distributed as dist
        atexit.register(lambda: print("alive at exit:", dist.is_initialized(), flush=True))
        import r1lit.cli.command as command

        def start():
            if not dist.is_initialized():
                dist.init_process_group("gloo", rank=0, world_size=1)

        def clean_fit(*args, **kwargs):
            start()  # what Lightning's DDP / DeepSpeed strategies do at setup, and leave at the end

        def failed_fit(*args, **kwargs):
            if case == "typo_after_clean":  # refused while parsing: the group is the earlier fit's
                raise ValueError("unrecognized arguments: --trainer.max_stepz 1")
            start()
            raise RuntimeError("CUDA out of memory")

        case = "{case}"
        if case == "caller_group":
            start()
        command.R1LitCLI = failed_fit if case == "failed" else clean_fit
        try:
            command.main(["fit"])
        except SystemExit as ended:
            print("exit code:", ended.code)
        print("alive after main:", dist.is_initialized())
        if case in ("twice", "failed_after_clean", "typo_after_clean"):
            command.R1LitCLI = clean_fit if case == "twice" else failed_fit
            try:
                command.main(["fit"])
            except SystemExit as ended:
                print("second exit code:", ended.code)
            print("alive after the second:", dist.is_initialized())
    """)
    done = subprocess.run([sys.executable, "-c", script], env=SUBPROCESS_ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_end_process_group_destroys_the_group_and_is_a_no_op_without_one(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29541")
    end_process_group()  # none: nothing to do
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        end_process_group()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.parametrize("case, printed", [
    # a clean fit's group stays for the next fit in this process, and is destroyed at exit
    ("clean", ["alive after main: True", "alive at exit: False"]),
    ("twice", ["alive after main: True", "alive after the second: True", "alive at exit: False"]),
    # the caller's group is the caller's: alive after main and at exit
    ("caller_group", ["alive after main: True", "alive at exit: True"]),
    # a failed fit that made the group leaves it to the process's end (a peer may wait in a collective)
    ("failed", ["exit code: 1", "alive after main: True", "alive at exit: True"]),
    # a failure on an earlier clean fit's group (a typo in a notebook's next call): one process, no peers, so that
    # fit's destroy at exit stays
    ("failed_after_clean", ["alive after main: True", "second exit code: 1", "alive after the second: True",
                            "alive at exit: False"]),
    ("typo_after_clean", ["alive after main: True", "second exit code: 1", "alive after the second: True",
                          "alive at exit: False"]),
])
def test_the_command_ends_only_the_group_its_clean_fit_made_at_exit(case, printed):
    lines = [line for line in run_main(case, 29542).splitlines() if line.startswith(("alive", "exit", "second"))]
    assert lines == printed
