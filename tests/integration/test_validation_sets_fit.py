"""A fit with two named validation sets from local files logs each apart, and their mean."""

import json

import pytest

from r1lit.cli import main
from helpers import scalars, tiny_config, write_config

pytestmark = pytest.mark.slow


def test_two_named_validation_sets_log_separately(tmp_path, tiny_model_dir):
    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text("".join(json.dumps({"question": f"What is {a} + 2?", "answer": f"#### {a + 2}"}) + "\n"
                           for a in range(6)))
    math500 = tmp_path / "math500.jsonl"
    math500.write_text("".join(json.dumps({"problem": f"What is {a} + 1?", "solution": "", "answer": str(a + 1)}) + "\n"
                               for a in range(4)))
    config = tiny_config(tmp_path, tiny_model_dir, **{
        "trainer.max_steps": 2, "trainer.limit_val_batches": 1.0, "trainer.val_check_interval": 2,
        "trainer.check_val_every_n_epoch": None, "trainer.num_sanity_val_steps": 0,
    })
    config["trainer"]["callbacks"] = []
    config["trainer"]["logger"]["init_args"]["version"] = "run"
    config["data"]["val_sources"] = {
        "gsm8k": {"class_path": "DatasetSource", "init_args": {"path": str(gsm), "preset": "gsm8k"}},
        "math500": {"class_path": "DatasetSource", "init_args": {"path": str(math500), "preset": "math500"}},
    }
    main(["fit", "--config", str(write_config(tmp_path, config))])
    logged = scalars(tmp_path / "runs" / "tiny" / "run")
    for name in ("gsm8k", "math500"):
        assert len(logged[f"val/{name}/accuracy"]) == 1 and 0.0 <= logged[f"val/{name}/accuracy"][0] <= 1.0
        assert len(logged[f"val/{name}/rewards/length/mean"]) == 1
        # the tiny model earns a LengthReward > 0 on every completion; a value shows the set was generated for
        assert logged[f"val/{name}/rewards/length/mean"][0] > 0
    mean = (logged["val/gsm8k/accuracy"][0] + logged["val/math500/accuracy"][0]) / 2
    assert logged["val/accuracy"] == [pytest.approx(mean, abs=1e-6)]
    assert not any("dataloader_idx" in tag for tag in logged)
