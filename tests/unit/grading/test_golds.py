"""Kind 4 of issue 15: gold answers from typed columns are written exactly, prose golds are not gradable (dropped
and counted at load, scored 0 by the reward), and a gold a reader understands at once matches itself."""

import json
import logging
from decimal import Decimal

import pytest

from grading import grade, tagged
from r1lit.data import DatasetSource, MathDataModule, PlainPrompt
from r1lit.data.sources import answer_text
from r1lit.grading.golds import gradable_gold, is_prose_gold, well_formed


@pytest.mark.parametrize(
    "value, expected",
    [
        (1e-05, "0.00001"),  # issue input: str() gives '1e-05', read as Euler's e minus 5
        (1.5e-07, "0.00000015"),
        (2.0, "2"),
        (1e20, "100000000000000000000"),
        (0.1, "0.1"),
        (-3.25, "-3.25"),
        (12, "12"),
        (123456789012345678901234567890, "123456789012345678901234567890"),
        (Decimal("1.50"), "1.5"),
        ([1, 3], "1, 3"),
        ("\\frac{1}{2}", "\\frac{1}{2}"),
        (float("nan"), None),
        (float("inf"), None),
        (None, None),
    ],
)
def test_typed_values_are_written_exactly(value, expected):
    """Guards str(float): numbers from JSONL/parquet columns must reach the checker as the number the file holds."""
    assert answer_text(value) == expected


@pytest.mark.parametrize(
    "gold, prose",
    [
        ("Proof", True),  # issue input
        ("yes", True),
        ("No", True),
        ("none", True),
        ("The answer is 5", True),
        ("it is odd", True),
        ("\\text{The midpoints form a regular hexagon}", True),
        ("We show that no such $n$ exists.", True),
        ("abc", False),  # a product of symbols
        ("xy + yz", False),
        ("\\text{Evelyn}", False),  # one word in a text group: math-verify compares it whole
        ("\\text{(C)}", False),
        ("\\frac{NO}{BO}", False),  # capitals are points and segments
        ("NO", True),  # ... unless the short word is the whole answer
        ("12 \\text{ cm}", False),
        ("\\sin x + \\cos x", False),
        ("3 or 4", False),
        ("Thus $\\boxed{7}$.", False),  # a solution's answer is its box
    ],
)
def test_prose_golds_are_recognised(gold, prose):
    """Guards the load-time check that let 'Proof' through as the product p·r·o·o·f."""
    assert is_prose_gold(gold) is prose


@pytest.mark.parametrize(
    "answer, gold, expected",
    [
        ("roofP", "Proof", 0.0),  # issue input: an anagram verified
        ("Proof", "Proof", 0.0),  # not gradable at all
        ("yes", "yes", 0.0),
        ("seY", "Yes", 0.0),
        ("ON", "NO", 0.0),  # a whole answer that is a short word is a word, even in capitals
        ("SEY", "YES", 0.0),
        ("0.00001", "0.00001", 1.0),  # the typed 1e-05, written exactly
        ("10^{-5}", "0.00001", 1.0),
        ("0.00001", "1e-05", 1.0),  # a text column holding scientific notation reads the same
        ("1 - \\frac{1}{\\mathrm{e}}", "1 - \\frac{1}{\\mathrm{e}}", 1.0),  # issue input: matches itself
        ("1 - \\frac{1}{e}", "1 - \\frac{1}{\\mathrm{e}}", 1.0),
        ("1 + \\frac{1}{\\mathrm{e}}", "1 - \\frac{1}{\\mathrm{e}}", 0.0),
        ("12:00", "12:00", 1.0),  # readable but not maths to math-verify: the same text matches
        ("1:00", "12:00", 0.0),
        ("\\text{Evelyn}", "\\text{Evelyn}", 1.0),
        ("???", "???", 0.0),  # not well formed: never rewarded
    ],
)
def test_gold_answers_grade_as_a_reader_would(answer, gold, expected):
    """Guards kind 4 at the reward: prose golds score 0, exact typed numbers and readable golds match themselves."""
    assert grade(tagged(answer), gold) == expected


def test_well_formed_and_gradable_by_hand():
    """Guards the two gold gates: prose is never gradable; text needs a letter or digit and balanced brackets."""
    assert gradable_gold("Proof") is None
    assert gradable_gold("$\\frac{1}{2}$.") == "\\frac{1}{2}"
    assert well_formed("12:00") and well_formed("[0, 1)") and well_formed("\\{1\\}")
    assert not well_formed("???") and not well_formed("\\frac{1}{") and not well_formed("}{")


def test_jsonl_number_column_reaches_the_gold_exactly(tmp_path):
    """Guards DatasetSource on a typed answer column: the issue's 1e-05 became the text '1e-05'."""

    def load(name, values):
        path = tmp_path / name
        path.write_text("".join(json.dumps({"q": "?", "a": v}) + "\n" for v in values))
        return [r["answer"] for r in DatasetSource(str(path), problem_field="q", answer_field="a").load()]

    assert load("floats.jsonl", [1e-05, 2.0, 1e20, 0.125]) == ["0.00001", "2", "100000000000000000000", "0.125"]
    assert load("ints.jsonl", [12, -7]) == ["12", "-7"]
    assert load("lists.jsonl", [[1, 3], [2]]) == ["1, 3", "2"]


def test_parquet_float_column_reaches_the_gold_exactly(tmp_path):
    """Guards the same on parquet (float64 column) and CSV (inferred float)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"q": ["a", "b"], "a": [1e-05, 0.25]}), tmp_path / "t.parquet")
    assert [r["answer"] for r in DatasetSource(str(tmp_path / "t.parquet"), problem_field="q", answer_field="a").load()] == [
        "0.00001", "0.25",
    ]
    (tmp_path / "t.csv").write_text("q,a\nsmall,0.00002\n")
    assert DatasetSource(str(tmp_path / "t.csv"), problem_field="q", answer_field="a").load()[0]["answer"] == "0.00002"


def test_load_report_counts_and_quotes_prose_golds(tmp_path, tiny_model_dir, caplog):
    """Guards the load-time gold check: prose golds are dropped, counted apart from unparsable ones, and quoted."""
    rows = [
        {"problem": "Show it.", "solution": "Proof"},
        {"problem": "Is it?", "solution": "yes"},
        {"problem": "Why?", "solution": "Because the sum is even."},
        {"problem": "Which?", "solution": "none"},
        {"problem": "Broken", "solution": "\\frac{1}{"},
        {"problem": "Small", "solution": 1e-05},
        {"problem": "Sum", "solution": "\\boxed{3}"},
    ]
    path = tmp_path / "golds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dm = MathDataModule(DatasetSource(str(path), problem_field="problem", answer_field="solution"), tokenizer=str(tiny_model_dir),
                        prompt=PlainPrompt(), batch_size=1)
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
    assert dm.stats == {"loaded": 7, "no_answer": 0, "prose_gold": 4, "unparsable_gold": 1, "too_long": 0, "kept": 2}
    assert sorted(e["answer"] for e in dm.train_set) == ["0.00001", "\\boxed{3}"]
    report = caplog.text
    assert "4 with prose gold" in report and "1 with unparsable gold" in report
    assert "dropped prose gold: 'Proof', 'yes', 'Because the sum is even.' and 1 more" in report
    assert "dropped unparsable gold: '\\\\frac{1}{'" in report
