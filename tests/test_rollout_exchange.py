"""The reserved-GPU topology's pieces that run without a GPU: device arithmetic and the rank-0 exchange."""

import os
import socket

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from r1lit.callbacks.vllm_rollout import RankZeroEngine, reserved_gpu, slice_rollout
from r1lit.errors import ConfigError
from r1lit.rollout.engine import RolloutEngine
from r1lit.rollout.types import Rollout, SamplingConfig, completion_mask_from_eos, left_pad

EOS = 2


class EchoEngine(RolloutEngine):
    """Completion j of a prompt = the prompt reversed, then j, then EOS: easy to check where it came from."""

    def generate(self, prompt_ids, n, sampling, seed=None):
        rows = [list(reversed(p)) + [100 + j, EOS] for p in prompt_ids for j in range(n)]
        ids, _ = left_pad([list(reversed(r)) for r in rows], 0)
        ids = ids.flip(1)  # right-padded
        mask, truncated = completion_mask_from_eos(ids, [EOS])
        p_ids, p_mask = left_pad([p for p in prompt_ids for _ in range(n)], 0)
        return Rollout(p_ids, p_mask, ids, mask, [str(r) for r in rows], truncated, n,
                       sampler_logprobs=-mask.float())


def test_reserved_gpu_arithmetic():
    assert reserved_gpu(visible_gpus=4, training_devices=3) == 3
    assert reserved_gpu(visible_gpus=8, training_devices=3) == 3
    with pytest.raises(ConfigError, match=r"2 visible GPU\(s\), trainer.devices=2, so 2 \+ 1 = 3 are needed.*devices=1"):
        reserved_gpu(visible_gpus=2, training_devices=2)


def test_slice_rollout_trims_to_its_rows():
    rollout = EchoEngine().generate([[5, 6, 7, 8], [9]], n=2, sampling=SamplingConfig())
    part = slice_rollout(rollout, 2, 4)  # the second prompt's group
    assert part.prompt_ids.tolist() == [[9], [9]]
    assert part.completion_ids.tolist() == [[9, 100, EOS], [9, 101, EOS]]
    assert part.texts == rollout.texts[2:4] and part.sampler_logprobs.shape == (2, 3)


def _exchange(rank: int, world: int, port: int, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        engine = RankZeroEngine(EchoEngine() if rank == 0 else None)
        prompts = [[11, 12]] if rank == 0 else [[31], [41, 42, 43]]
        rollout = engine.generate(prompts, n=2, sampling=SamplingConfig())
        results[rank] = (rollout.completion_ids.tolist(), rollout.prompt_ids.tolist())
    finally:
        dist.destroy_process_group()


def test_rank_zero_serves_every_rank_over_gloo():
    """Rank 1 has no engine; its prompts go to rank 0 and its own completions come back, in order."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_exchange, args=(2, port, results), nprocs=2, join=True)
    assert results[0][0] == [[12, 11, 100, EOS], [12, 11, 101, EOS]]
    assert results[1][0] == [[31, 100, EOS, 0, 0], [31, 101, EOS, 0, 0], [43, 42, 41, 100, EOS], [43, 42, 41, 101, EOS]]
    assert results[1][1] == [[0, 0, 31], [0, 0, 31], [41, 42, 43], [41, 42, 43]]
