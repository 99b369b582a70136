"""What a user sees of the command: its help names r1lit and every subcommand; the bar counts steps."""

import subprocess

from test_cli import SCRIPT, SUBPROCESS_ENV, tiny_config, write_config

from r1lit.cli import main


def test_help_says_what_r1lit_is_and_lists_export():
    """Guards the help that said "Lightning Trainer command line tool" and left out ``export``."""
    out = subprocess.run([str(SCRIPT), "--help"], env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=120).stdout
    assert out.count("GRPO") >= 1 and "r1lit export CKPT OUT" in out
    assert "Lightning Trainer command line tool" not in out


def test_progress_bar_counts_steps_of_max_steps(tmp_path, tiny_model_dir, capsys):
    """Guards the bar of a max_steps run, which counted batches of a 16-batch epoch and stopped at 3/16."""
    config = tiny_config(tmp_path, tiny_model_dir, **{"trainer.enable_progress_bar": True, "trainer.max_steps": 3})
    main(["fit", "--config", str(write_config(tmp_path, config))])
    captured = capsys.readouterr()
    shown = captured.out + captured.err  # Lightning's bars write to stdout
    assert "Step: 100%" in shown and "3/3" in shown, shown[-2000:]
    assert "Epoch 0" not in shown
