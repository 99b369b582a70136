"""Reward-independent validation: unbiased pass@k and maj@k on a sample table worked by hand, and a validation run
on a held-out set from another source than the training one."""

import json

import lightning as L
import pytest

from r1lit.data import ArithmeticSource, DatasetSource, MathDataModule
from r1lit.errors import ConfigError
from r1lit.module import GRPOModule
from r1lit.rewards import AccuracyReward, FormatReward
from r1lit.rollout import SamplingConfig
from r1lit.eval.pass_at_k import PassAtK, majority_correct, pass_at_k


def test_pass_at_k_by_hand():
    """Guards the unbiased estimator 1 − C(n−c, k)/C(n, k) (not (c/n)^k or 1 − (1 − c/n)^k)."""
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # C(3,2)/C(4,2) = 3/6
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)  # C(3,3)/C(5,3) = 1/10
    assert pass_at_k(4, 3, 1) == pytest.approx(3 / 4)  # k = 1 is the plain accuracy
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 4, 1) == 1.0 and pass_at_k(4, 2, 3) == 1.0  # n − c < k
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


# Two problems × n = 4 samples: (extracted answer, correct)
TABLE = [
    ("4", 1.0), ("5", 0.0), (" 4 ", 1.0), (None, 0.0),  # problem A (gold 4)
    ("7", 0.0), ("$8$", 1.0), ("8", 1.0), ("9", 0.0),  # problem B (gold 8)
]


def test_pass_and_majority_on_a_sample_table():
    """Guards the per-problem averaging, the vote normalisation (" 4 " = "4", "$8$" = "8"), ties to the first
    answer seen, and samples without an answer not voting."""
    answers, correct = zip(*TABLE)
    got = PassAtK(n=4, k=[1, 2, 4]).metrics(list(answers), list(correct))
    # A: c = 2 -> pass@1 = 2/4, pass@2 = 1 − C(2,2)/C(4,2) = 5/6, pass@4 = 1; the same for B (c = 2)
    # maj@1: A's first answer 4 (right), B's 7 (wrong) -> 1/2; maj@2: A 4 vs 5 tie -> 4 (right), B 7 vs 8 tie -> 7
    # (wrong) -> 1/2; maj@4: A 4 twice (right), B 8 twice (right) -> 1
    expected = {"pass@1": 0.5, "pass@2": 5 / 6, "pass@4": 1.0, "maj@1": 0.5, "maj@2": 0.5, "maj@4": 1.0}
    assert got == pytest.approx(expected)
    assert majority_correct([None, None], [0.0, 0.0], 2) == 0.0  # no votes: wrong
    with pytest.raises(ConfigError):
        PassAtK(n=2, k=[4])


def test_validation_on_a_held_out_file_logs_pass_and_maj(tmp_path, tiny_model_dir):
    """Guards the held-out set from another source (a local file, not the training generator) and the new tags
    next to val/accuracy."""
    held_out = tmp_path / "heldout.jsonl"
    held_out.write_text("".join(json.dumps({"q": f"What is {a} + 1?", "a": str(a + 1)}) + "\n" for a in range(3)))
    source = DatasetSource(str(held_out), problem_field="q", answer_field="a")
    data = MathDataModule(ArithmeticSource(num_problems=8), tokenizer=str(tiny_model_dir), batch_size=2,
                          check_gold=False, val_source=source)
    data.setup("validate")
    assert [e["problem"] for e in data.val_set] == [f"What is {a} + 1?" for a in range(3)]
    assert len(data.train_set) == 8  # nothing held out of the training source

    L.seed_everything(0)
    module = GRPOModule(str(tiny_model_dir), rewards=[AccuracyReward(), FormatReward()], num_generations=2,
                        micro_batch_size=2, sampling=SamplingConfig(max_tokens=6), val_pass_at_k=PassAtK(n=4, k=[1, 4]))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(module, data)
    for tag in ("val/accuracy", "val/pass@1", "val/pass@4", "val/maj@1", "val/maj@4"):
        assert 0.0 <= metrics[tag] <= 1.0, tag
    assert metrics["val/pass@4"] >= metrics["val/pass@1"]
    module.teardown("validate")


def test_held_out_settings_fail_at_construction(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="val_size"):
        MathDataModule(ArithmeticSource(), tokenizer=str(tiny_model_dir), val_size=4, val_source=ArithmeticSource())
    with pytest.raises(ConfigError, match="AccuracyReward"):
        GRPOModule(str(tiny_model_dir), rewards=[FormatReward()], num_generations=2, val_pass_at_k=PassAtK(n=2, k=[1]))
