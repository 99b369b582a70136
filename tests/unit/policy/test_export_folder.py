"""``save_pretrained`` (used by ``r1lit export`` and HFExport) writes beside and renames: a failure mid-write leaves
the previous export as it was and no temporary folder; folders it did not write are refused."""

import pytest

from r1lit.errors import ConfigError
from r1lit.policy.export import MARKER, check_out_dir, is_export, save_pretrained
from r1lit.policy.loading import load_policy, load_tokenizer


class FailingTokenizer:
    def save_pretrained(self, folder):
        raise OSError("No space left on device")


def test_a_failed_export_leaves_the_previous_one_and_no_temporary_folder(tmp_path, tiny_model_dir):
    policy, tokenizer = load_policy(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    out = save_pretrained(policy, tokenizer, tmp_path / "hf")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert is_export(out) and MARKER in before and "model.safetensors" in before
    with pytest.raises(OSError, match="No space left"):
        save_pretrained(policy, FailingTokenizer(), tmp_path / "hf")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_folders_an_export_did_not_write_are_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty and was not written by r1lit export.*--overwrite"):
        check_out_dir(tmp_path / "mine", None, overwrite=False)
    check_out_dir(tmp_path / "mine", None, overwrite=True)
    check_out_dir(tmp_path / "empty", None, overwrite=False)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds the checkpoint being exported"):
        check_out_dir(tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt", overwrite=True)


def test_a_model_folder_without_a_marker_counts_as_a_previous_export_only_when_it_holds_nothing_else(tmp_path):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        (tmp_path / name).write_text("{}")
    assert is_export(tmp_path)
    (tmp_path / "metrics.csv").write_text("step\n0\n")
    assert not is_export(tmp_path)
