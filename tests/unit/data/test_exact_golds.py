"""Integer golds never pass through a float (huggingface/datasets#8365): a CSV cell is read as written, a local
JSON file's numbers exactly, and a float that cannot be exact is refused with the fix."""

import json

import pytest

from grading import grade, tagged
from r1lit.data.sources import DatasetSource
from r1lit.errors import DataError


def _golds(path, **fields):
    return [r["answer"] for r in DatasetSource(str(path), problem_field="q", answer_field="a", **fields).load()]


@pytest.mark.parametrize("cells, expected", [
    (["9007199254740993", "", "5"], ["9007199254740993", None, "5"]),  # the column
    (["12345678901234567890", "1.5"], ["12345678901234567890", "1.5"]),
    (["-9007199254740995", "7"], ["-9007199254740995", "7"]),
    (["0.10", "1e-05", "3"], ["0.10", "1e-05", "3"]),
    (["18014398509481985", "", ""], ["18014398509481985", None, None]),
    (["\\frac{1}{3}", "42"], ["\\frac{1}{3}", "42"]),
])
def test_csv_answer_cells_are_read_as_written(tmp_path, cells, expected):
    """Guards pandas' float64 inference on a CSV answer column (an empty cell made the whole column float)."""
    path = tmp_path / "t.csv"
    path.write_text("q,a\n" + "".join(f"p{i},{c}\n" for i, c in enumerate(cells)))
    assert _golds(path) == expected


@pytest.mark.parametrize("values, expected", [
    ([9007199254740993, None, 5.5], ["9007199254740993", None, "5.5"]),
    ([2 ** 60 + 1, 0.5], [str(2 ** 60 + 1), "0.5"]),
    ([[9007199254740993, 0.5], [1]], ["9007199254740993, 0.5", "1"]),
    ([1e-05, 9007199254740995, 2.0], ["0.00001", "9007199254740995", "2"]),
    ([-9007199254740993, 0.125], ["-9007199254740993", "0.125"]),
])
@pytest.mark.parametrize("layout", ["jsonl", "json"])
def test_json_numbers_reach_the_gold_exactly(tmp_path, values, expected, layout):
    """Guards Arrow's float64 for a JSON column that mixes whole numbers and decimals: read again exactly."""
    records = [{"q": f"p{i}", "a": v} for i, v in enumerate(values)]
    path = tmp_path / f"t.{layout}"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) if layout == "jsonl" else json.dumps(records))
    assert _golds(path) == expected
    assert _golds(path, limit=1) == expected[:1]


def test_a_float_that_cannot_be_exact_is_refused(tmp_path):
    """Guards the rounded gold of a typed float column: 2^53 or more as a float64 names the fix; below, exact."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"q": ["a", "b"], "a": [9007199254740992.0, 5.0]}), tmp_path / "big.parquet")
    with pytest.raises(DataError, match="store the answers as text"):
        _golds(tmp_path / "big.parquet")
    pq.write_table(pa.table({"q": ["a", "b"], "a": [9007199254740991.0, 0.5]}), tmp_path / "ok.parquet")
    assert _golds(tmp_path / "ok.parquet") == ["9007199254740991", "0.5"]
    pq.write_table(pa.table({"q": ["a"], "a": pa.array([9007199254740993], pa.int64())}), tmp_path / "int.parquet")
    assert _golds(tmp_path / "int.parquet") == ["9007199254740993"]


def test_the_right_answer_scores_against_the_exact_gold(tmp_path):
    """Guards the end of the chain: the gold read from the CSV pays the right answer, not the float-rounded one."""
    path = tmp_path / "t.csv"
    path.write_text("q,a\nbig,9007199254740993\nempty,\nsmall,5\n")
    gold = _golds(path)[0]
    assert grade(tagged("9007199254740993"), gold) == 1.0
    assert grade(tagged("9007199254740992"), gold) == 0.0
