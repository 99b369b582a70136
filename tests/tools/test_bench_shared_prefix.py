"""benchmarks/bench_shared_prefix.py on tiny models: both paths agree and are timed, a config JSON builds a random
model of its shape, and what cannot run is refused up front with the fix."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--prompts", "2", "--generations", "3", "--prompt-tokens", "6", "--completion-tokens", "4", "--repeats", "1",
         "--threads", "1"]


def bench(*args: str, results: Path | None = None) -> subprocess.CompletedProcess:
    extra = ["--results", str(results)] if results else []
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_shared_prefix.py"), *args, *extra],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})


def tiny_config_json(folder: Path, **fields) -> Path:
    config = {"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "tie_word_embeddings": True,
              **fields}
    path = folder / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("extra", [[], ["--gradient-checkpointing", "--bf16"]])
def test_a_config_json_model_is_benchmarked_on_both_paths(tmp_path, extra):
    done = bench("--model", str(tiny_config_json(tmp_path)), *SMALL, *extra, results=tmp_path / "out.json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())["result"]
    assert result["rows"] == 6 and set(result["seconds"]) == {"unshared", "shared"}
    assert all(t["policy_fwd_bwd"] > 0 and t["reference_fwd"] > 0 for t in result["seconds"].values())
    # fp32: the packed path gives the unshared log-probs; bf16 autocast rounds differently on each path
    assert result["max_logprob_gap"] < (5e-2 if extra else 1e-4)
    assert result["arguments"]["gradient_checkpointing"] is bool(extra)
    assert ("gradient checkpointing on" if extra else "gradient checkpointing off") in done.stdout


def test_a_model_folder_is_benchmarked(tmp_path, tiny_model_dir):
    done = bench("--model", str(tiny_model_dir), *SMALL, results=tmp_path / "out.json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "out.json").read_text())["result"]["max_logprob_gap"] < 1e-4


def test_what_cannot_run_is_refused_with_the_fix(tmp_path):
    no_type = tmp_path / "bare"
    no_type.mkdir()
    config = tiny_config_json(no_type)
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items() if k != "model_type"}))
    done = bench("--model", str(config), *SMALL)
    assert done.returncode == 1 and "needs its model_type" in done.stderr and "Traceback" not in done.stderr
    done = bench("--model", str(tmp_path / "missing.json"), *SMALL)
    assert done.returncode == 1 and "missing.json: no such file" in done.stderr and "Traceback" not in done.stderr
    done = bench("--model", str(config), "--device", "gpu", *SMALL)
    assert done.returncode == 1 and "--device gpu: not a torch device; use cpu or cuda" in done.stderr
    import torch

    if not torch.cuda.is_available():
        done = bench("--model", str(tiny_config_json(tmp_path)), "--device", "cuda", *SMALL)
        assert done.returncode == 1 and "sees no CUDA GPU; use --device cpu" in done.stderr
