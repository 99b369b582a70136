"""Training health in real fits: a config whose max_tokens is far too short gets the fix printed, and a vLLM
engine whose weight push does nothing stops the run as a frozen engine."""

import json
import re
import subprocess

import pytest

from helpers import SUBPROCESS_ENV, fit, fit_command, scalars, tiny_config, vllm_config, write_config

pytestmark = pytest.mark.slow


def test_max_tokens_far_too_short_prints_the_fix(tmp_path, tiny_model_dir):
    """TrainingHealth is not in the config: the CLI adds it. Ten steps of 2-token completions fill its window."""
    config = tiny_config(tmp_path, tiny_model_dir, **{"trainer.max_steps": 10, "model.sampling.max_tokens": 2})
    config["trainer"]["callbacks"] = []
    config["trainer"]["logger"]["init_args"]["version"] = "run"
    done = fit(write_config(tmp_path, config))
    output = done.stdout + done.stderr
    assert "[r1lit] health: truncated at step 9" in output and "raise model.sampling.max_tokens" in output, output[-3000:]
    run_dir = tmp_path / "runs" / "tiny" / "run"
    findings = json.loads((run_dir / "health.json").read_text())
    assert {"truncated", "no_eos"} <= {f["rule"] for f in findings}
    assert not any(f["stopped"] for f in findings)
    logged = scalars(run_dir)
    assert logged["health/truncated"] == [0.0] * 9 + [1.0]
    assert logged["health/frozen_engine"] == [0.0] * 10


@pytest.mark.vllm
def test_an_engine_that_ignores_pushes_stops_the_run(tmp_path, vllm_model_dir):
    """The real in-process vLLM engine with a push that silently does nothing: the engine keeps sampling from the
    starting weights while the trainer moves (lr 1e-3). Stops within frozen_steps steps of the first update."""
    config = vllm_config(tmp_path, vllm_model_dir, steps=12)
    config["model"]["engine"]["class_path"] = "frozen_engine.FrozenVLLMEngine"
    config["trainer"]["callbacks"].append(
        {"class_path": "TrainingHealth", "init_args": {"thresholds": {"frozen_steps": 3}}})
    path = write_config(tmp_path, config)
    done = subprocess.run(fit_command(path), cwd=tmp_path, env=SUBPROCESS_ENV, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "the engine is not serving the pushed weights" in done.stderr, done.stderr[-3000:]
    assert re.search(r"frozen test engine: \d+ pushes ignored", done.stderr)  # the engine's log excerpt follows the message
    findings = json.loads((tmp_path / "runs" / "tiny" / "run" / "health.json").read_text())
    (frozen,) = [f for f in findings if f["rule"] == "frozen_engine"]
    assert frozen["stopped"] and frozen["step"] == 3, findings  # floor at step 0, then steps 1, 2, 3 above it
