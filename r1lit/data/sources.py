"""Where problems come from: a hub dataset or a local file with a field map, or a generator."""

from __future__ import annotations

import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from r1lit.errors import ConfigError, DataError
from r1lit.grading.answers import final_boxed, gsm8k_answer

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


class ProblemSource(ABC):
    """Yields problems as ``{"problem": str, "answer": str}`` records (answer = the gold final answer)."""

    @abstractmethod
    def load(self) -> list[dict[str, str]]:
        """All records. Records whose answer could not be extracted have ``answer`` None."""

    def describe(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class FieldMap:
    """Which columns hold the problem and the answer, and how the gold answer is read from the answer column."""

    problem_field: str
    answer_field: str
    extract: Callable[[str], str | None]


def _as_is(text: str) -> str | None:
    return text.strip() or None


PRESETS: dict[str, FieldMap] = {
    "math": FieldMap("problem", "solution", final_boxed),  # MATH / MATH-lighteval (MATH-500 too, from its solutions)
    "gsm8k": FieldMap("question", "answer", gsm8k_answer),
    "numina": FieldMap("problem", "solution", final_boxed),  # AI-MO/NuminaMath-CoT and -TIR
    "math500": FieldMap("problem", "answer", _as_is),  # HuggingFaceH4/MATH-500: its answer column
    "aime": FieldMap("problem", "answer", _as_is),  # AI-MO/aimo-validation-aime
    "amc": FieldMap("problem", "answer", _as_is),  # AI-MO/aimo-validation-amc (answers stored as floats: 142.0)
}
# Hub ids whose preset is known: DatasetSource(path=...) needs no preset for them.
HUB_PRESETS = {
    "HuggingFaceH4/MATH-500": "math500", "openai/gsm8k": "gsm8k", "AI-MO/aimo-validation-aime": "aime",
    "AI-MO/aimo-validation-amc": "amc", "DigitalLearningGmbH/MATH-lighteval": "math",
}


def answer_text(value: Any) -> str | None:
    """A typed column's value as gold text, numbers written exactly: ``1e-05`` -> ``0.00001``, ``2.0`` -> ``2``,
    ``1e+20`` -> ``100000000000000000000``, ints as they are; a list -> ``1, 3``; NaN, inf and None -> None.

    ``str()`` of a float writes an exponent that math-verify reads as Euler's e (``1e-05`` = e - 5).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = Decimal(repr(value))  # the shortest decimal that round-trips: what the file says
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, (list, tuple)):
        parts = [answer_text(v) for v in value]
        return None if not parts or None in parts else ", ".join(parts)
    return str(value)


class DatasetSource(ProblemSource):
    """A hub dataset (by id) or a local ``.jsonl``/``.json``/``.parquet``/``.csv`` file."""

    def __init__(
        self,
        path: str,
        preset: Literal["math", "gsm8k", "numina", "math500", "aime", "amc"] | None = None,
        problem_field: str | None = None,
        answer_field: str | None = None,
        split: str = "train",
        name: str | None = None,
        limit: int | None = None,
    ):
        """
        Args:
            path: hub dataset id (``openai/gsm8k``) or a local file path.
            preset: field map of a known dataset: ``math`` (problem, last run of \\boxed{} of solution: several
                boxes in a row are one list answer), ``gsm8k`` (question, answer after ####), ``numina`` (as math).
            problem_field: column with the problem text (overrides the preset's).
            answer_field: column with the gold answer (overrides the preset's). Without a preset its text is used as
                is; numbers in a typed column are written exactly (``1e-05`` becomes ``0.00001``).
            split: dataset split to load (local files have only ``train``).
            name: dataset configuration name on the hub (``main`` for openai/gsm8k).
            limit: keep only the first ``limit`` rows.
        """
        preset = preset or (HUB_PRESETS.get(path) if not (problem_field or answer_field) else None)
        base = PRESETS[preset] if preset else None
        problem_field = problem_field or (base.problem_field if base else None)
        answer_field = answer_field or (base.answer_field if base else None)
        if not problem_field or not answer_field:
            raise ConfigError(
                f"DatasetSource({path!r}) needs a preset ({', '.join(PRESETS)}) or both problem_field and answer_field"
            )
        extract = base.extract if base and answer_field == base.answer_field else _as_is
        self.fields = FieldMap(problem_field, answer_field, extract)
        self.path, self.split, self.name, self.limit = path, split, name, limit

    def load(self) -> list[dict[str, str]]:
        table = self._load_table()
        missing = [f for f in (self.fields.problem_field, self.fields.answer_field) if f not in table.column_names]
        if missing:
            raise DataError(
                f"{self.path}: no column {', '.join(repr(m) for m in missing)}; its columns are {table.column_names}. "
                "Set data.source.init_args.problem_field / answer_field, or pick the matching preset."
            )
        if self.limit is not None:
            table = table.select(range(min(self.limit, len(table))))
        problems, answers = table[self.fields.problem_field], self._exact_answers(table)
        records = []
        for problem, value in zip(problems, answers):
            text = answer_text(value)
            records.append({"problem": str(problem), "answer": self.fields.extract(text) if text is not None else None})
        return records

    def _load_table(self):
        import datasets

        ext = os.path.splitext(self.path)[1].lower()
        if os.path.exists(self.path):
            if ext not in LOCAL_FORMATS:
                raise DataError(f"{self.path}: unknown file type {ext!r}; use one of {sorted(LOCAL_FORMATS)}")
            if _blank(self.path):
                raise DataError(f"{self.path} is empty (nothing but blank space): it holds no problems")
            # CSV cells as written: pandas would infer float64 for a column like 9007199254740993, (empty), 5
            as_text = {"converters": {self.fields.answer_field: str}} if ext == ".csv" else {}
            try:
                return datasets.load_dataset(LOCAL_FORMATS[ext], data_files=self.path, split="train", **as_text)
            except Exception as error:  # noqa: BLE001 - datasets/pyarrow raise many types; say which line is wrong
                raise unreadable(self.path, LOCAL_FORMATS[ext], error) from error
        if ext in LOCAL_FORMATS:
            raise DataError(f"{self.path}: no such file (a path ending in {ext} is read as a local file)")
        return datasets.load_dataset(self.path, self.name, split=self.split)

    def _exact_answers(self, table) -> list:
        """The answer column's values as the file wrote them. A local JSON file's numbers are read again as exact
        decimals when Arrow made the column float (one float in it turns 9007199254740993 into ...992); a float
        that is a whole number of 2^53 or more (which float64 cannot hold exactly) from any other source is
        refused, naming the fix."""
        import pyarrow as pa

        field = self.fields.answer_field
        answers = table[field]
        if os.path.splitext(self.path)[1].lower() in (".json", ".jsonl") and os.path.exists(self.path):
            arrow_type = table.data.schema.field(field).type
            while pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
                arrow_type = arrow_type.value_type
            if pa.types.is_floating(arrow_type):
                answers = _json_field(self.path, field)[: len(answers)]
        for row, value in enumerate(answers):
            for v in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) >= 2 ** 53:
                    raise DataError(
                        f"{self.path}: answer {field!r} of row {row} is the float {v!r}, and float64 cannot hold every "
                        "whole number from 2^53 up exactly; store the answers as text (a string column, or quoted)"
                    )
        return answers

    def describe(self) -> str:
        return f"{self.path} [{self.split}] ({self.fields.problem_field} -> {self.fields.answer_field})"


def _blank(path: str) -> bool:
    """Whether the file holds nothing but whitespace (read until the first other byte)."""
    with open(path, "rb") as file:
        while chunk := file.read(1 << 16):
            if chunk.strip():
                return False
    return True


def unreadable(path: str, kind: str, error: Exception) -> DataError:
    """The first thing wrong in a local file that ``datasets`` could not read: file, line and what, when it can be
    found; else the reader's own first line."""
    if kind == "json":
        found = _first_bad_json_line(path)
        if found:
            shape = "one JSON array of objects" if path.endswith(".json") else "one JSON object per line"
            return DataError(f"{path}: {found}; the file must hold {shape}, each with the same fields")
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return DataError(f"{path} cannot be read as {kind}: {type(error).__name__}: {reason}")


def _first_bad_json_line(path: str) -> str | None:
    with open(path, "rb") as file:
        head = file.read(1 << 16).lstrip()
    if head.startswith(b"["):  # a .json file holding one array
        try:
            with open(path, encoding="utf-8") as file:
                rows = json.load(file)
        except UnicodeDecodeError as error:
            return f"not UTF-8 text (byte {error.start})"
        except json.JSONDecodeError as error:
            return f"bad JSON on line {error.lineno}, column {error.colno}: {error.msg}"
        bad = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
        return None if bad is None else f"item {bad} of the array is a {type(rows[bad]).__name__}, not an object"
    with open(path, "rb") as file:
        for number, raw in enumerate(file, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as error:
                return f"line {number} is not UTF-8 text (byte {error.start})"
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                return f"bad JSON on line {number}, column {error.colno}: {error.msg}"
            if not isinstance(row, dict):
                return f"line {number} is a JSON {type(row).__name__}, not an object"
    return None


def _json_field(path: str, field: str) -> list:
    """``field`` of every record of a JSON Lines file or a JSON list of records, numbers as exact ``Decimal``/int."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        records = json.loads(text, parse_float=Decimal)
    else:
        records = [json.loads(line, parse_float=Decimal) for line in text.splitlines() if line.strip()]
    return [record.get(field) if isinstance(record, dict) else None for record in records]
