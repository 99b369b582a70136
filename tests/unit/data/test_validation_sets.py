"""Named validation sets: presets for the benchmarks users compare against, one loader per set, names checked."""

import json

import pytest

from r1lit.data import ArithmeticSource, DatasetSource, MathDataModule
from r1lit.data.sources import HUB_PRESETS
from r1lit.errors import ConfigError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_benchmark_presets_read_the_answer_column(tmp_path):
    math500 = write_jsonl(tmp_path / "m.jsonl", [{"problem": "1+1?", "solution": "so \\boxed{2}", "answer": "2"}])
    amc = write_jsonl(tmp_path / "amc.jsonl", [{"problem": "Find x.", "answer": 142.0}])
    assert DatasetSource(math500, preset="math500").load() == [{"problem": "1+1?", "answer": "2"}]
    assert DatasetSource(amc, preset="amc").load() == [{"problem": "Find x.", "answer": "142"}]  # float written exactly
    assert DatasetSource(amc, preset="aime").load() == [{"problem": "Find x.", "answer": "142"}]


def test_known_hub_ids_need_no_preset():
    assert DatasetSource("HuggingFaceH4/MATH-500", split="test").fields.answer_field == "answer"
    assert DatasetSource("openai/gsm8k", name="main", split="test").fields.problem_field == "question"
    assert set(HUB_PRESETS.values()) <= {"math", "gsm8k", "math500", "aime", "amc"}
    # explicit fields still win over the known id's preset
    assert DatasetSource("openai/gsm8k", problem_field="q", answer_field="a").fields.problem_field == "q"


def test_one_loader_per_named_set_and_the_held_out_slice(tmp_path, tiny_model_dir):
    gsm = write_jsonl(tmp_path / "gsm.jsonl", [{"question": f"What is {a} + 2?", "answer": f"so #### {a + 2}"}
                                               for a in range(5)])
    data = MathDataModule(ArithmeticSource(num_problems=20), tokenizer=str(tiny_model_dir), batch_size=2, val_size=3,
                          check_gold=False, val_sources={"gsm": DatasetSource(gsm, preset="gsm8k"),
                                                         "arith": ArithmeticSource(num_problems=4, seed=9)})
    data.setup("fit")
    assert data.val_names == ["heldout", "gsm", "arith"]
    loaders = data.val_dataloader()
    assert [len(loader.dataset) for loader in loaders] == [3, 5, 4]
    assert next(iter(loaders[1])).answers == ["2", "3"]


def test_bad_names_are_refused(tiny_model_dir):
    with pytest.raises(ConfigError, match="val/a b/"):
        MathDataModule(ArithmeticSource(), tokenizer=str(tiny_model_dir), val_sources={"a b": ArithmeticSource()})
    with pytest.raises(ConfigError, match="'heldout'"):
        MathDataModule(ArithmeticSource(), tokenizer=str(tiny_model_dir), val_size=2,
                       val_sources={"heldout": ArithmeticSource()})
