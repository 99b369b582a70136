"""The collectives' single-process identities, and what the ``r1lit`` command does with the process group a fit
leaves: destroyed at interpreter exit after a clean fit that made it, never when the caller made it or the fit failed.
Each case runs in its own interpreter, where an at-exit observer registered first (so it runs last) prints whether
the group is still alive once r1lit's at-exit work is done."""

import socket
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_main(fits: list[str], caller_group: bool = False) -> list[str]:
    """``r1lit.cli.command.main(["fit"])`` once per entry of ``fits``, the CLI replaced by that kind of fit: ``clean``
    (makes the group, as Lightning's DDP / DeepSpeed strategies do at setup, and leaves it), ``failed`` (makes it,
    then fails), ``refused`` (fails while parsing, before any group). Returns the lines the script printed."""
    script = textwrap.dedent(f"""
        import atexit, os
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="{free_port()}", R1LIT_TRACEBACK="1")
        import torch.distributed as dist
        atexit.register(lambda: print("alive at exit:", dist.is_initialized(), flush=True))
        import r1lit.cli.command as command

        def start():
            if not dist.is_initialized():
                dist.init_process_group("gloo", rank=0, world_size=1)

        def fit(kind):
            def run(*args, **kwargs):
                if kind == "refused":
                    raise ValueError("unrecognized arguments: --trainer.max_stepz 1")
                start()
                if kind == "failed":
                    raise RuntimeError("CUDA out of memory")
            return run

        if {caller_group}:
            start()
        for kind in {fits!r}:
            command.R1LitCLI = fit(kind)
            try:
                command.main(["fit"])
            except SystemExit as ended:
                print(kind, "exit code:", ended.code)
            print("alive after", kind + ":", dist.is_initialized())
    """)
    done = subprocess.run([sys.executable, "-c", script], env=SUBPROCESS_ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return [line for line in done.stdout.splitlines() if "exit" in line or "alive" in line]


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


@pytest.mark.parametrize("fits, caller_group, printed", [
    # a clean fit's group stays for the next fit in this process, and is destroyed at exit
    (["clean"], False, ["alive after clean: True", "alive at exit: False"]),
    (["clean", "clean"], False, ["alive after clean: True", "alive after clean: True", "alive at exit: False"]),
    # the caller's group is the caller's: alive after main and at exit
    (["clean"], True, ["alive after clean: True", "alive at exit: True"]),
    # a failed fit that made the group leaves it to the process's end (a peer may wait in a collective)
    (["failed"], False, ["failed exit code: 1", "alive after failed: True", "alive at exit: True"]),
    # a failure on an earlier clean fit's group (a notebook's next call): one process, no peers, the destroy stays
    (["clean", "failed"], False, ["alive after clean: True", "failed exit code: 1", "alive after failed: True",
                                  "alive at exit: False"]),
    (["clean", "refused"], False, ["alive after clean: True", "refused exit code: 1", "alive after refused: True",
                                   "alive at exit: False"]),
])
def test_the_command_ends_only_the_group_its_clean_fit_made_at_exit(fits, caller_group, printed):
    assert run_main(fits, caller_group) == printed
