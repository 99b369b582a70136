"""A tiny `r1lit fit` with the completion log, the aha monitor and validation, read back the way a user would:
TensorBoard event files, the jsonl log, and PNGs from tools/plot_metrics.py. Also the counters across a resume."""

import json
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
from PIL import Image

from custom_rewards import LengthReward
from r1lit.callbacks import AhaMonitor, CompletionLog
from r1lit.callbacks.completion_log import RECORD_KEYS
from r1lit.cli.command import main
from r1lit.data import ArithmeticSource, MathDataModule
from r1lit.module import GRPOModule
from r1lit.rewards import AccuracyReward
from r1lit.rollout import SamplingConfig
from helpers import load_tool, scalars, tiny_config, write_config

STEPS, B, G = 4, 2, 4


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    tmp_path = tmp_path_factory.mktemp("watch")
    config = tiny_config(tmp_path, tiny_model_dir, **{
        "trainer.max_steps": STEPS, "trainer.limit_val_batches": 1.0, "trainer.val_check_interval": 2,
        "trainer.check_val_every_n_epoch": None, "trainer.num_sanity_val_steps": 0, "data.val_size": 4,
        "data.batch_size": B, "model.num_generations": G,
    })
    config["trainer"]["callbacks"] = [
        {"class_path": "CompletionLog", "init_args": {"max_groups": 1, "seed": 3}},
        {"class_path": "AhaMonitor"},
    ]
    main(["fit", "--config", str(write_config(tmp_path, config))])
    return tmp_path / "runs" / "tiny" / "version_0"


@pytest.mark.slow
def test_new_metrics_and_validation_accuracy_are_logged(run_dir):
    logged = scalars(run_dir)
    assert len(logged["val/accuracy"]) == STEPS // 2  # every 2 training steps
    assert all(0.0 <= v <= 1.0 for v in logged["val/accuracy"])
    assert all(0.0 < v <= math.log(400) + 1e-3 for v in logged["entropy"])  # nats, at most ln(vocab)
    assert len(logged["num_tokens"]) == STEPS
    assert all(b > a for a, b in zip(logged["num_tokens"], logged["num_tokens"][1:]))  # cumulative
    for lo, mean, hi in zip(logged["completions/min_length"], logged["completions/mean_length"], logged["completions/max_length"]):
        assert 1 <= lo <= mean <= hi <= 16
    assert all(0 <= v <= 16 for v in logged["completions/mean_terminated_length"])
    for kind in ("reflection", "aha"):
        assert len(logged[f"aha/{kind}_rate"]) == STEPS and all(0.0 <= v <= 1.0 for v in logged[f"aha/{kind}_rate"])
        # the base rate is the first step's rate (its rollout is sampled before any update), logged every step
        assert logged[f"aha/baseline_{kind}_rate"] == [logged[f"aha/{kind}_rate"][0]] * STEPS
    assert json.loads((run_dir / "aha_rates.json").read_text())["baseline"]["n"] == B * G
    assert len(logged["health/truncated"]) == STEPS  # the CLI adds TrainingHealth to every fit


@pytest.mark.slow
def test_completion_log_schema(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    lines = (run_dir / "completions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == STEPS * G  # max_groups 1 of B groups, G completions each, every step
    for r in records:
        assert tuple(r) == RECORD_KEYS
        assert isinstance(r["completion"], str) and isinstance(r["prompt"], str) and r["prompt"].endswith("assistant\n")
        assert set(r["scores"]) == {"accuracy", "format", "length"} and isinstance(r["truncated"], bool)
        assert 1 <= r["length"] <= 16 and r["group"] in range(B) and r["sample"] in range(G)
        assert r["samples_seen"] == (r["step"] + 1) * B * G
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    reward_steps = [e.step for e in acc.Scalars("reward")]
    assert sorted({r["step"] for r in records}) == reward_steps  # the log's steps are TensorBoard's
    texts = [t for t in acc.Tags()["tensors"] if t.startswith("completions")]
    assert texts and len(acc.Tensors(texts[0])) == STEPS
    assert "Gold answer" in acc.Tensors(texts[0])[0].tensor_proto.string_val[0].decode()


@pytest.mark.slow
def test_plot_tool_draws_curves_of_the_requested_size(run_dir, tmp_path):
    written = load_tool("plot_metrics").main([str(run_dir), "--tags", "reward", "reward_std", "aha/*", "--size", "640x480",
                                          "--out", str(tmp_path)])
    names = {p.name for p in written}
    assert {"reward.png", "reward_std.png", "aha_reflection_rate.png", "aha_aha_rate.png"} <= names
    image = np.asarray(Image.open(tmp_path / "reward.png").convert("RGB")).astype(int)
    assert image.shape == (480, 640, 3)
    background = np.array([255, 255, 255])
    assert (np.abs(image - background).sum(-1) > 0).mean() > 0.01  # not blank
    curve = np.array([0x1F, 0x77, 0xB4])  # the first run's colour (matplotlib's C0), solid line
    assert (np.abs(image - curve).sum(-1) < 30).sum() > 200  # a curve, not only axes and a legend swatch


def test_plot_tool_smoothing_and_bad_input(tmp_path, capsys):
    tool = load_tool("plot_metrics")
    # weight 0.5: step 1: 0.5·0 + 0.5·1 = 0.5, debiased by 1 − 0.5 = 1.0; step 2: 0.25 / 0.75 = 1/3
    assert tool.ema([1.0, 0.0], 0.5) == pytest.approx([1.0, 1 / 3])
    assert tool.ema([2.0, float("nan"), 2.0], 0.9) == pytest.approx([2.0, float("nan"), 2.0], nan_ok=True)
    assert tool.ema([1.0, 3.0], 0.0) == [1.0, 3.0]
    # logged steps 0, 1, 9 of a run with 32 completions per step: 32, 64 and 320 samples seen
    assert tool.x_values([0, 1, 9], 32) == [32, 64, 320] and tool.x_values([0, 1], None) == [0, 1]
    with pytest.raises(SystemExit):
        tool.main([str(tmp_path)])
    assert "no TensorBoard event files" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main([str(tmp_path), "--size", "12"])
    assert "--size must look like 1200x800" in capsys.readouterr().err


@pytest.mark.slow
def test_plot_tool_names_available_tags_for_an_unknown_one(run_dir, capsys):
    with pytest.raises(SystemExit):
        load_tool("plot_metrics").main([str(run_dir), "--tags", "rewrad"])
    err = capsys.readouterr().err
    assert "['rewrad'] not found" in err and "reward_std" in err


def _fit(model_dir, tmp_path, steps, ckpt_path=None):
    L.seed_everything(0)
    module = GRPOModule(str(model_dir), rewards=[AccuracyReward(), LengthReward()], sampling=SamplingConfig(max_tokens=8),
                        num_generations=G, micro_batch_size=4)
    data = MathDataModule(ArithmeticSource(num_problems=16), tokenizer=str(model_dir), batch_size=B, check_gold=False)
    monitor, log = AhaMonitor(), CompletionLog()
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, default_root_dir=tmp_path, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[monitor, log, L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    if ckpt_path is None:  # as if an earlier stretch of the run had already seen an aha
        monitor.sightings["aha"] = {"kind": "aha", "step": 0, "samples_seen": 8}
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module, monitor


@pytest.mark.slow
def test_counters_and_first_sightings_survive_a_resume(tiny_model_dir, tmp_path):
    """Guards num_tokens (TRL: cumulative over the run), samples seen and the sightings against restarting at 0."""
    first, _ = _fit(tiny_model_dir, tmp_path, steps=2)
    assert first.samples_seen == 2 * B * G and first.num_tokens > 0
    resumed, monitor = _fit(tiny_model_dir, tmp_path, steps=3, ckpt_path=str(tmp_path / "last.ckpt"))
    assert resumed.samples_seen == 3 * B * G
    assert first.num_tokens < resumed.num_tokens < 2 * first.num_tokens  # one more step of about the same size
    assert monitor.sightings["aha"]["samples_seen"] == 8
    records = [json.loads(line) for line in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert [r["samples_seen"] for r in records] == [8] * 8 + [16] * 8 + [24] * 8  # the resumed run appended
    assert [r["step"] for r in records] == [0] * 8 + [1] * 8 + [2] * 8


@pytest.mark.slow
def test_two_ranks_count_samples_and_tokens_over_both(tiny_model_dir, tmp_path):
    """Guards the cross-rank sums (samples seen, num_tokens, aha rates) under DDP on CPU over gloo."""
    config = tiny_config(tmp_path, tiny_model_dir, **{
        "trainer.max_steps": 2, "trainer.devices": 2, "trainer.strategy": "ddp_spawn", "data.batch_size": B,
        "model.num_generations": G, "model.loss": {"class_path": "GRPOLoss"},
    })
    config["trainer"]["callbacks"] = [{"class_path": "CompletionLog"}, {"class_path": "AhaMonitor"}]
    main(["fit", "--config", str(write_config(tmp_path, config))])
    run = tmp_path / "runs" / "tiny" / "version_0"
    records = [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]
    assert len(records) == 2 * B * G  # rank 0's groups only
    assert [r["samples_seen"] for r in records] == [2 * B * G] * (B * G) + [4 * B * G] * (B * G)  # both ranks counted
    logged = scalars(run)
    assert len(logged["num_tokens"]) == 2 and logged["num_tokens"][1] > logged["num_tokens"][0]
    assert len(logged["aha/reflection_rate"]) == 2
    assert json.loads((run / "aha_rates.json").read_text())["baseline"]["n"] == 2 * B * G  # both ranks' first rollout
    assert len(logged["health/constant_rewards"]) == 2  # the health rules ran on both ranks (their counts gathered)
