"""The collectives' single-process identities and the end of a run's process group."""

import os

import pytest
import torch
import torch.distributed as dist

import r1lit.cli.command as command
from r1lit.training.distributed import end_process_group, gather_uneven, max_over_ranks


@pytest.fixture
def gloo_group(monkeypatch):
    """A one-process gloo group, as Lightning's strategies make one; destroyed afterwards if still alive."""
    monkeypatch.setitem(os.environ, "MASTER_ADDR", "127.0.0.1")
    monkeypatch.setitem(os.environ, "MASTER_PORT", "29541")

    def start():
        dist.init_process_group("gloo", rank=0, world_size=1)

    yield start
    if dist.is_initialized():
        dist.destroy_process_group()


def test_collectives_are_identities_on_one_process():
    assert not dist.is_initialized()
    assert max_over_ranks(7) == 7
    assert torch.equal(gather_uneven(torch.tensor([1.0, 2.0])), torch.tensor([1.0, 2.0]))


def test_end_process_group_destroys_the_group_and_is_a_no_op_without_one(gloo_group):
    end_process_group()  # none yet: nothing to do, no error
    gloo_group()
    assert dist.is_initialized()
    end_process_group()
    assert not dist.is_initialized()


def test_the_command_ends_the_group_a_clean_fit_left(gloo_group, monkeypatch):
    def fit_that_leaves_its_group(*args, **kwargs):
        gloo_group()  # what Lightning's DDP / DeepSpeed strategies do at setup, and leave at the end

    monkeypatch.setattr(command, "R1LitCLI", fit_that_leaves_its_group)
    command.main(["fit"])
    assert not dist.is_initialized()


def test_the_command_leaves_the_group_of_a_failed_run(gloo_group, monkeypatch):
    """A rank that failed may have peers waiting in a collective: destroying the group could block; the process
    exits anyway."""
    def failing_fit(*args, **kwargs):
        gloo_group()
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(command, "R1LitCLI", failing_fit)
    monkeypatch.setenv("R1LIT_TRACEBACK", "1")  # the traceback on stderr, not in a file under /tmp
    with pytest.raises(SystemExit) as ended:
        command.main(["fit"])
    assert ended.value.code == 1
    assert dist.is_initialized()
