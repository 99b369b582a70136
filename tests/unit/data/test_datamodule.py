"""Problem sources, field presets, prompt templates and the DataModule's filtering and errors."""

import json

import pytest

from r1lit.data import ArithmeticSource, ChatPrompt, DatasetSource, MathDataModule, PlainPrompt
from r1lit.data.tasks.arithmetic import eval_left_to_right_with_precedence
from r1lit.data.prompts import R1_ZERO_SYSTEM_PROMPT
from r1lit.errors import DataError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


MATH_ROWS = [
    {"problem": "What is $1+1$?", "solution": "Clearly $1+1=\\boxed{2}$."},
    {"problem": "Area of a unit circle?", "solution": "It is $\\boxed{\\pi}$."},
    {"problem": "No boxed answer here", "solution": "We conclude 3."},
    {"problem": "Broken gold", "solution": "$\\boxed{???}$"},
]


def test_math_preset_reads_the_last_boxed(tmp_path):
    records = DatasetSource(write_jsonl(tmp_path / "math.jsonl", MATH_ROWS), preset="math").load()
    assert [r["answer"] for r in records] == ["2", "\\pi", None, "???"]
    assert records[0]["problem"] == "What is $1+1$?"


def test_gsm8k_preset_from_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "gsm8k.parquet"
    pq.write_table(pa.table({"question": ["How many?"], "answer": ["2 + 2 = 4 <<2+2=4>>\n#### 4,000"]}), path)
    assert DatasetSource(str(path), preset="gsm8k").load() == [{"problem": "How many?", "answer": "4000"}]


def test_numina_preset_and_explicit_fields_from_csv(tmp_path):
    path = tmp_path / "numina.csv"
    path.write_text('problem,solution,final\n"Add 2 and 3","so \\boxed{5}",5\n')
    assert DatasetSource(str(path), preset="numina").load() == [{"problem": "Add 2 and 3", "answer": "5"}]
    # explicit fields without a preset: the answer column is used as it is
    explicit = DatasetSource(str(path), problem_field="problem", answer_field="final").load()
    assert explicit == [{"problem": "Add 2 and 3", "answer": "5"}]


def test_missing_field_names_the_columns_and_the_fix(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "1+1?", "final": "2"}])
    with pytest.raises(ValueError, match=r"no column 'problem'.*\['question', 'final'\].*problem_field"):
        DatasetSource(path, preset="math").load()
    with pytest.raises(ValueError, match="needs a preset"):
        DatasetSource(path)


def test_empty_and_missing_files_fail_clearly(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        DatasetSource(str(empty), preset="math").load()
    with pytest.raises(DataError, match="no such file"):
        DatasetSource(str(tmp_path / "absent.jsonl"), preset="math").load()


def test_arithmetic_source_is_deterministic_and_correct():
    a = ArithmeticSource(num_problems=50, max_operand=9, operations="+-*", num_operands=3, seed=3).load()
    assert a == ArithmeticSource(num_problems=50, max_operand=9, operations="+-*", num_operands=3, seed=3).load()
    assert a != ArithmeticSource(num_problems=50, max_operand=9, operations="+-*", num_operands=3, seed=4).load()
    assert eval_left_to_right_with_precedence([2, 3, 4], ["+", "*"]) == 14
    assert eval_left_to_right_with_precedence([2, 3, 4], ["-", "-"]) == -5
    with pytest.raises(ValueError, match="operations"):
        ArithmeticSource(operations="/")


def test_prompt_templates(tiny_tokenizer):
    chat = ChatPrompt(prefill="<think>").render("What is 2+2?", tiny_tokenizer)
    assert chat.startswith("<|im_start|>system\n" + R1_ZERO_SYSTEM_PROMPT)
    assert chat.endswith("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>")
    plain = PlainPrompt().render("What is 2+2?", tiny_tokenizer)
    assert plain.startswith("A conversation between User and Assistant.")
    assert plain.endswith("User: What is 2+2?. Assistant: <think>")


def _datamodule(source, tokenizer_dir, **kwargs):
    return MathDataModule(source=source, tokenizer=str(tokenizer_dir), **kwargs)


def test_datamodule_rejects_unparsable_gold_and_counts_what_it_drops(tmp_path, tiny_model_dir):
    rows = MATH_ROWS + [{"problem": "x " * 400, "solution": "\\boxed{1}"}]  # the last prompt is too long
    dm = _datamodule(DatasetSource(write_jsonl(tmp_path / "m.jsonl", rows), preset="math"), tiny_model_dir,
                     prompt=PlainPrompt(), batch_size=1, max_prompt_length=256)
    dm.setup("fit")
    assert dm.stats == {"loaded": 5, "no_answer": 1, "prose_gold": 0, "unparsable_gold": 1, "too_long": 1, "kept": 2}
    assert sorted(e["answer"] for e in dm.train_set) == ["2", "\\pi"]
    batch = next(iter(dm.train_dataloader()))
    assert len(batch.problems) == len(batch.answers) == len(batch.prompts) == len(batch.prompt_ids) == len(batch)
    assert isinstance(batch.prompt_ids[0], list) and len(batch.prompt_ids[0]) <= 256 and batch.next is None


def test_datamodule_split_and_shuffle_are_deterministic(tiny_model_dir):
    def order(seed):
        dm = _datamodule(ArithmeticSource(num_problems=40), tiny_model_dir, batch_size=4, val_size=8, seed=seed, check_gold=False)
        dm.setup("fit")
        return [e["problem"] for e in dm.val_set], [p for b in dm.train_dataloader() for p in b.problems]

    val, train = order(1)
    assert len(val) == 8 and len(train) == 32  # 40 problems: 8 held out, 32 in 8 full batches
    assert order(1) == (val, train)
    assert order(2) != (val, train)


def test_datamodule_errors_name_the_fix(tmp_path, tiny_model_dir):
    only_bad = write_jsonl(tmp_path / "bad.jsonl", [{"problem": "p", "solution": "\\boxed{???}"}])
    with pytest.raises(ValueError, match="no usable problems.*check_gold"):
        _datamodule(DatasetSource(only_bad, preset="math"), tiny_model_dir, batch_size=1).setup("fit")
    with pytest.raises(ValueError, match="lower the batch size"):
        _datamodule(ArithmeticSource(num_problems=3), tiny_model_dir, batch_size=4, check_gold=False).setup("fit")
    with pytest.raises(ValueError, match="batch_size"):
        _datamodule(ArithmeticSource(), tiny_model_dir, batch_size=0)
