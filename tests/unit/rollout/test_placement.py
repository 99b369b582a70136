"""Where the engine goes and how a call is sized: pure functions, no engine started."""

import os

import pytest

from r1lit.errors import ConfigError
from r1lit.rollout.vllm.engine_process import RENDEZVOUS_VARS, child_environment
from r1lit.rollout.vllm.launch import prefill_budget, split_calls
from r1lit.rollout.vllm.placement import (
    GIB, check_colocated_memory, colocated_budget, colocated_memory_utilization, physical_gpu, physical_gpus,
    reserved_gpus, training_bytes_per_parameter,
)


def test_reserved_gpus_are_the_first_k_that_do_not_train():
    """devices n trains GPUs 0…n−1: K = 1 on 8 GPUs with 7 training is GPU 7; K = 2 with 6 training is 6, 7."""
    assert reserved_gpus(visible_gpus=8, training_devices=7, count=1) == [7]
    assert reserved_gpus(visible_gpus=8, training_devices=6, count=2) == [6, 7]
    assert reserved_gpus(visible_gpus=8, training_devices=4, count=4) == [4, 5, 6, 7]
    assert reserved_gpus(visible_gpus=8, training_devices=3, count=2) == [3, 4]  # the first K of the 5 free
    assert reserved_gpus(visible_gpus=4, training_devices=3, count=1) == [3]


def test_too_few_free_gpus_say_how_many_and_the_fix():
    """8 visible, 7 train, K = 2: 7 + 2 = 9 > 8; the fix is devices 8 − 2 = 6."""
    with pytest.raises(ConfigError, match=r"8 visible GPU\(s\) on this node, trainer.devices=7 train, so 7 \+ 2 = 9 are "
                       r"needed\. To fix: set trainer.devices=6 \(visible − K = 8 − 2\), lower .*data_parallel_size × "
                       r"tensor_parallel_size \(K = 2\), .*base_url, or .*VLLMEngine"):
        reserved_gpus(visible_gpus=8, training_devices=7, count=2)
    with pytest.raises(ConfigError, match=r"2 \+ 1 = 3 are needed\. To fix: set trainer.devices=1 ") as one:
        reserved_gpus(visible_gpus=2, training_devices=2, count=1)
    assert "data_parallel_size" not in str(one.value)  # K = 1 cannot be lowered
    with pytest.raises(ConfigError) as refused:  # 2 visible, K = 2: no GPU would be left to train
        reserved_gpus(visible_gpus=2, training_devices=1, count=2)
    assert "1 + 2 = 3 are needed" in str(refused.value) and "set trainer.devices" not in str(refused.value)
    with pytest.raises(ConfigError, match="at least one GPU, not 0"):
        reserved_gpus(visible_gpus=8, training_devices=4, count=0)


def test_physical_gpu_follows_the_trainers_own_visible_devices():
    """Guards the misplacement the in-process engine had: a child's CUDA_VISIBLE_DEVICES must name the physical
    GPU, which is not the visible index when the trainer itself was given a subset."""
    assert physical_gpu(1, "") == "1"
    assert physical_gpu(1, "4,6") == "6"
    assert physical_gpu(0, " 2 , 3") == "2"
    with pytest.raises(ConfigError, match="lists 2 GPU"):
        physical_gpu(2, "4,6")


def test_child_environment_drops_the_trainers_rendezvous(monkeypatch):
    """Guards the hang: a child that sees RANK/WORLD_SIZE/MASTER_* joins the trainer's process group."""
    for name in RENDEZVOUS_VARS:
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("KEEP_ME", "yes")
    env = child_environment({"EXTRA": "2"}, "3")
    assert not set(RENDEZVOUS_VARS) & set(env) and "TORCHELASTIC_RUN_ID" not in env
    assert env["KEEP_ME"] == "yes" and env["EXTRA"] == "2" and env["CUDA_VISIBLE_DEVICES"] == "3"
    assert env["VLLM_SERVER_DEV_MODE"] == "1"
    assert os.environ["RANK"] == "1"  # the trainer's own environment is untouched


def test_prefill_budget_holds_every_prompt_of_a_call():
    """16 prompts × 8 samples of 60 tokens: 128 × 61 = 7,808 tokens, above vLLM's default 4,096 (the crash)."""
    assert prefill_budget(128, 60) == (7808, 256)
    assert prefill_budget(8, 20) == (4096, 256)  # small calls keep vLLM's defaults
    assert prefill_budget(512, 10) == (5632, 512)


def test_split_calls_cuts_a_call_into_runs_that_fit():
    # each prompt costs n × (len + 1): 2 × 10 = 20, 2 × 5 = 10, 2 × 30 = 60, 2 × 2 = 6
    assert split_calls([9, 4, 29, 1], n=2, budget_tokens=63, max_seqs=100) == [slice(0, 2), slice(2, 3), slice(3, 4)]
    assert split_calls([9, 4, 29, 1], n=2, budget_tokens=66, max_seqs=100) == [slice(0, 2), slice(2, 4)]  # 60 + 6 = 66 fits
    assert split_calls([9, 4, 29, 1], n=2, budget_tokens=1000, max_seqs=4) == [slice(0, 2), slice(2, 4)]
    assert split_calls([9, 4], n=2, budget_tokens=1000, max_seqs=100) == [slice(0, 2)]
    with pytest.raises(ConfigError, match="needs 62 prefill tokens, more than the engine's budget of 60"):
        split_calls([30], n=2, budget_tokens=60, max_seqs=100)


def test_colocated_engine_must_leave_the_trainer_memory():
    check_colocated_memory(0.5, on_gpu=True)
    check_colocated_memory(0.95, on_gpu=False)  # CPU: the setting does not apply
    with pytest.raises(ConfigError, match="VLLMServerEngine"):
        check_colocated_memory(0.9, on_gpu=True)


def test_reserved_gpus_skip_every_listed_training_gpu():
    """``devices: [1, 2]`` under DDP trains on GPUs 1 and 2: the engine goes to GPU 0, not len(devices) = 2."""
    assert reserved_gpus(visible_gpus=4, training_devices=[1, 2], count=1) == [0]
    assert reserved_gpus(visible_gpus=4, training_devices=[0, 1, 3], count=1) == [2]
    assert reserved_gpus(visible_gpus=8, training_devices=[2, 3, 4, 5, 6, 7], count=2) == [0, 1]
    assert reserved_gpus(visible_gpus=8, training_devices=[1, 3, 5, 7], count=3) == [0, 2, 4]
    with pytest.raises(ConfigError, match=r"trainer.devices=\[0, 1\] trains 2 of the 2 visible GPU\(s\) on this node "
                       r"and leaves 0 free, 1 needed\. To fix: list fewer GPUs in trainer.devices"):
        reserved_gpus(visible_gpus=2, training_devices=[1, 0], count=1)
    with pytest.raises(ConfigError, match=r"trains 3 of the 4 .* leaves 1 free, 2 needed"):
        reserved_gpus(visible_gpus=4, training_devices=[0, 1, 3], count=2)


def test_the_k_reserved_ids_map_to_the_trainers_physical_gpus():
    """The trainer sees physical GPUs 4–7 (CUDA_VISIBLE_DEVICES=4,5,6,7) and trains on visible 0, 1: K = 2 are
    visible 2, 3, which the engine's child must be given as physical 6, 7; without a variable, as 2, 3."""
    indices = reserved_gpus(visible_gpus=4, training_devices=2, count=2)
    assert indices == [2, 3]
    assert physical_gpus(indices, "4,5,6,7") == "6,7"
    assert physical_gpus(indices, "") == "2,3"
    assert physical_gpus(reserved_gpus(visible_gpus=4, training_devices=[1, 2], count=2), "4,5,6,7") == "4,7"
    with pytest.raises(ConfigError, match="lists 3 GPU"):
        physical_gpus([2, 3], "4,5,6")


def test_training_state_per_parameter_follows_the_zero_stage():
    # hand-worked: bf16 weights 2 + grads 2 + fp32 accumulation 4 + master 4 + Adam 8
    assert training_bytes_per_parameter(0, 1) == 16.0
    assert training_bytes_per_parameter(2, 1) == 20.0
    assert training_bytes_per_parameter(2, 4) == 2 + 18 / 4
    assert training_bytes_per_parameter(3, 4) == 20 / 4
    assert training_bytes_per_parameter(1, 2) == 8 + 6


def test_colocated_budget_for_qwen_on_one_80_gb_gpu():
    """1.5B, ZeRO-2, one rank, 80 GiB: training 1.5e9 × 20 B = 27.9 GiB × 1.25 + 4 = 38.9 GiB → at most
    1 − 38.9/80 = 0.51; the engine needs 1.5e9 × 2 B = 2.8 + 2 = 4.8 GiB → at least 0.06. 0.7 is refused."""
    gpu = 80 * GIB
    lowest, highest, text = colocated_budget(1_500_000_000, 2, 1, gpu)
    assert abs(highest - (1 - (1.5e9 * 20 / GIB * 1.25 + 4) / 80)) < 1e-9 and 0.51 < highest < 0.52
    assert abs(lowest - (1.5e9 * 2 / GIB + 2) / 80) < 1e-9
    assert "[0.06, 0.51]" in text and "20.0 B/parameter" in text
    assert colocated_memory_utilization(None, 1_500_000_000, 2, 1, gpu) == 0.51
    with pytest.raises(ConfigError, match=r"gpu_memory_utilization=0.7 leaves training too little: 1.50B parameters on a 80 GiB GPU"):
        colocated_memory_utilization(0.7, 1_500_000_000, 2, 1, gpu)
    assert colocated_memory_utilization(0.4, 1_500_000_000, 2, 1, gpu) == 0.4


def test_colocated_engine_that_cannot_fit_is_refused_with_the_arithmetic():
    with pytest.raises(ConfigError, match=r"does not fit beside training: 7.00B parameters on a 24 GiB GPU"):
        colocated_memory_utilization(None, 7_000_000_000, 2, 1, 24 * GIB)
