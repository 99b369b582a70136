"""What a user sees of the command: its help names r1lit and every subcommand; the bar counts steps."""

import subprocess

import pytest

from helpers import SCRIPT, SUBPROCESS_ENV, tiny_config, write_config

from r1lit.cli.command import main


def test_help_says_what_r1lit_is_and_lists_export():
    """Guards the help that said "Lightning Trainer command line tool" and left out ``export``."""
    out = subprocess.run([str(SCRIPT), "--help"], env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=120).stdout
    assert out.count("GRPO") >= 1 and "r1lit export CKPT OUT" in out
    assert "Lightning Trainer command line tool" not in out


def test_fit_help_explains_the_fields_of_settings_objects():
    """Guards the help that listed ``--model.policy.*`` and ``--model.sampling.*`` with their types only: their
    docstrings sit under each field of PolicyConfig and SamplingConfig, not in an Args section."""
    out = subprocess.run([str(SCRIPT), "fit", "--help"], env=SUBPROCESS_ENV, capture_output=True, text=True,
                         timeout=120).stdout
    flat = " ".join(out.split())
    assert "--model.policy.compile_logprobs {true,false} Compile the LM head's per-chunk log-prob math" in flat
    assert "--model.policy.gradient_checkpointing {true,false} Recompute activations in backward" in flat


def test_a_components_own_help_explains_its_arguments():
    """What the README points to for a chosen component's arguments (``fit --help`` lists only its class)."""
    out = subprocess.run([str(SCRIPT), "fit", "--model.engine.help", "VLLMServerEngine"], env=SUBPROCESS_ENV,
                         capture_output=True, text=True, timeout=120).stdout
    flat = " ".join(out.split())
    assert "--model.engine.block_size BLOCK_SIZE tokens per KV-cache block." in flat
    assert "32 on CPU" in flat and "base_url" in flat


def test_progress_bar_counts_steps_of_max_steps(tmp_path, tiny_model_dir, capsys):
    """Guards the bar of a max_steps run, which counted batches of a 16-batch epoch and stopped at 3/16."""
    config = tiny_config(tmp_path, tiny_model_dir, **{"trainer.enable_progress_bar": True, "trainer.max_steps": 3})
    main(["fit", "--config", str(write_config(tmp_path, config))])
    captured = capsys.readouterr()
    shown = captured.out + captured.err  # Lightning's bars write to stdout
    assert "Step: 100%" in shown and "3/3" in shown, shown[-2000:]
    assert "Epoch 0" not in shown


def test_every_n_steps_means_the_same_steps_in_every_callback(tmp_path, tiny_model_dir, capsys):
    """Guards three counters for one setting: PrintGroups used batch_idx + 1, CompletionLog TensorBoard's 0-based
    step, HFExport optimizer steps; with n = 2 the printed and logged groups were never the same step."""
    import json

    config = tiny_config(tmp_path, tiny_model_dir, **{"trainer.max_steps": 5})
    config["trainer"]["callbacks"] = [
        {"class_path": "PrintGroups", "init_args": {"every_n_steps": 2, "max_groups": 1}},
        {"class_path": "CompletionLog", "init_args": {"every_n_steps": 2}},
        {"class_path": "HFExport", "init_args": {"every_n_steps": 2, "at_end": False}},
    ]
    main(["fit", "--config", str(write_config(tmp_path, config))])
    printed = sorted({int(line.split()[2]) for line in capsys.readouterr().out.splitlines() if line.startswith("=" * 30 + " step")})
    run_dir = tmp_path / "runs" / "tiny" / "version_0"
    records = [json.loads(line) for line in (run_dir / "completions.jsonl").read_text().splitlines()]
    exported = sorted(int(p.name.split("_")[1]) for p in (run_dir / "hf").glob("step_*"))
    assert printed == sorted({r["global_step"] for r in records}) == exported == [2, 4]
    assert sorted({r["step"] for r in records}) == [1, 3]  # TensorBoard's x axis for those steps (0-based batches)


def test_scheduler_from_yaml_is_fitted_to_the_run(tmp_path, tiny_model_dir):
    """Guards the cosine built from YAML (a callable that cannot be asked for its arguments): it was sized for one
    step and dropped the learning rate to 0 after step 1. By hand, 4 steps, warmup 0, cosine to 0 from 1e-3:
    1e-3 · ½(1 + cos(π·s/4)) for s = 0..3 = 1e-3, 8.536e-4, 5e-4, 1.464e-4."""
    import math

    from helpers import scalars

    config = tiny_config(tmp_path, tiny_model_dir, **{"trainer.max_steps": 4})
    config["model"]["scheduler"] = {"class_path": "CosineWithWarmup", "init_args": {"warmup_ratio": 0.0}}
    main(["fit", "--config", str(write_config(tmp_path, config))])
    lrs = scalars(tmp_path / "runs" / "tiny" / "version_0")["lr"]
    expected = [1e-3 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)]
    assert lrs == pytest.approx(expected, rel=1e-5)
