"""Watching for the aha moment: phrase matching, AhaMonitor's rates and first sightings, and tools/find_aha.py."""

import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from r1lit.callbacks import AhaMonitor
from r1lit.errors import ConfigError
from r1lit.eval.phrases import AHA_PHRASES, REFLECTION_PHRASES, PhraseMatcher, excerpt
from r1lit.grpo.groups import ScoredCompletion, ScoredGroup

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("text, phrase", [
    ("Wait, 3 + 4 is 7.", "wait"),
    ("so 12. But wait! This is incorrect", "but wait"),  # the seed's example: the longer phrase wins
    ("BUT\n  WAIT", "but wait"),  # any case, any whitespace between words
    ("Let me   check this", "let me check"),
    ("I need to re-evaluate", "re-evaluate"),
    ("I need to reevaluate", "re-evaluate"),
    ("That\u2019s wrong, so", "that's wrong"),  # typographic apostrophe
    ("(wait)", "wait"),
    ("i made a mistake", "I made a mistake"),
])
def test_reflection_phrases_found(text, phrase):
    match = PhraseMatcher(REFLECTION_PHRASES).first(text)
    assert match is not None and match.phrase == phrase


@pytest.mark.parametrize("text", [
    "awaiting the result", "the waiter", "lightweight", "await x", "waits", "let me checkout", "rechecked",
    "this is incorrectly", "Wai t",
])
def test_reflection_false_positives_rejected(text):
    """Guards the word boundaries: substrings of other words are not reflection."""
    assert text not in PhraseMatcher(REFLECTION_PHRASES)


def test_aha_phrases_whole_words_only():
    matcher = PhraseMatcher(AHA_PHRASES)
    assert [m.phrase for m in matcher.find("Aha! That is an aha moment.")] == ["aha", "aha moment"]
    for text in ("Ahab sailed", "sahara", "ahaha", "Yokohama"):
        assert text not in matcher
    assert "Eureka!" in PhraseMatcher(["EUREKA"])


def test_custom_phrases_and_bad_sets():
    matcher = PhraseMatcher(["hmm", "aha!"])  # a phrase ending in punctuation has no right word boundary
    assert [m.phrase for m in matcher.find("Hmm. aha! aha")] == ["hmm", "aha!"]
    with pytest.raises(ConfigError, match="non-empty phrase"):
        PhraseMatcher([])
    with pytest.raises(ConfigError, match="non-empty phrase"):
        PhraseMatcher(["  "])


def test_match_span_is_the_text_found():
    text = "so 12. But wait! This is incorrect"
    spans = [text[m.start:m.end] for m in PhraseMatcher(REFLECTION_PHRASES).find(text)]
    assert spans == ["But wait", "This is incorrect"]


def test_excerpt_marks_the_phrase_with_context():
    text = "a" * 50 + " but wait " + "b" * 50
    match = PhraseMatcher(REFLECTION_PHRASES).first(text)
    assert excerpt(text, match, 5) == "…aaaa [[but wait]] bbbb…"
    assert excerpt("Wait.", PhraseMatcher(["wait"]).first("Wait."), 5) == "[[Wait]]."


# ---- AhaMonitor on hand-made steps -------------------------------------------------------------------------

def _completion(text, accuracy, reward=None):
    return ScoredCompletion(text=text, reward=accuracy if reward is None else reward,
                            scores={"accuracy": accuracy, "format": 1.0}, advantage=0.0, length=5, truncated=False)


def _group(*completions, problem="What is 3 + 4?", answer="7"):
    return ScoredGroup(problem=problem, answer=answer, prompt="p", completions=list(completions))


class _Module(SimpleNamespace):
    def log(self, name, value, **kwargs):
        self.logged.setdefault(name, []).append(value)


def _stubs(tmp_path):
    trainer = SimpleNamespace(
        world_size=1, is_global_zero=True, global_step=0, log_dir=str(tmp_path), default_root_dir=str(tmp_path),
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=0)),
    )
    module = _Module(rewards=[SimpleNamespace(name="accuracy"), SimpleNamespace(name="format")], device="cpu",
                     samples_seen=0, logged={})
    return trainer, module


def _step(monitor, trainer, module, groups, step):
    trainer.fit_loop.epoch_loop._batches_that_stepped = step
    trainer.global_step = step + 1
    module.samples_seen = (step + 1) * sum(len(g.completions) for g in groups)
    module.logged = {}
    monitor.on_train_batch_end(trainer, module, {"groups": groups}, None, step)
    return {k: v[-1] for k, v in module.logged.items()}


def test_rates_split_by_correctness_and_first_sightings(tmp_path, caplog):
    trainer, module = _stubs(tmp_path)
    monitor = AhaMonitor()
    monitor.setup(trainer, module, "fit")
    plain = [_group(_completion("<answer>7</answer>", 1.0), _completion("<answer>8</answer>", 0.0))]
    rates = _step(monitor, trainer, module, plain, 0)
    assert rates["aha/reflection_rate"] == 0.0 and rates["aha/aha_rate_correct"] == 0.0
    assert monitor.sightings == {} and not (tmp_path / "aha_sightings.json").exists()

    # 5 completions: 2 correct (one reflects), 3 incorrect (one reflects, one only "awaits", one has an aha)
    groups = [
        _group(_completion("3 + 4 = 8. Wait, that is 7. <answer>7</answer>", 1.0, reward=1.5),
               _completion("<answer>7</answer>", 1.0),
               _completion("awaiting <answer>9</answer>", 0.0)),
        _group(_completion("but wait, 5 <answer>5</answer>", 0.0, reward=0.5),
               _completion("Aha! <answer>10</answer>", 0.0), problem="What is 5 + 5?", answer="10"),
    ]
    with caplog.at_level(logging.INFO):
        rates = _step(monitor, trainer, module, groups, 3)
    assert rates["aha/reflection_rate"] == pytest.approx(2 / 5)
    assert rates["aha/reflection_rate_correct"] == pytest.approx(1 / 2)
    assert rates["aha/reflection_rate_incorrect"] == pytest.approx(1 / 3)
    assert rates["aha/aha_rate"] == pytest.approx(1 / 5)
    assert rates["aha/aha_rate_correct"] == 0.0 and rates["aha/aha_rate_incorrect"] == pytest.approx(1 / 3)

    first = monitor.sightings["reflection"]
    assert first["phrase"] == "wait" and first["step"] == 3 and first["samples_seen"] == 20
    assert first["reward"] == pytest.approx((1.5 + 1.0 + 0.0 + 0.5 + 0.0) / 5)  # the step's mean reward
    assert first["correct"] is True and "[[Wait]]" in first["excerpt"] and first["problem"] == "What is 3 + 4?"
    assert monitor.sightings["reflection_correct"]["excerpt"] == first["excerpt"]
    assert monitor.sightings["aha"]["phrase"] == "aha" and monitor.sightings["aha"]["correct"] is False
    assert "aha_correct" not in monitor.sightings
    assert json.loads((tmp_path / "aha_sightings.json").read_text()) == monitor.sightings
    assert sum("first reflection (" in r.getMessage() for r in caplog.records) == 1

    # later steps keep the first sightings; a resumed monitor starts from the saved ones
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _step(monitor, trainer, module, groups, 4)
    assert monitor.sightings["reflection"]["step"] == 3 and not caplog.records
    resumed = AhaMonitor()
    resumed.load_state_dict(json.loads(json.dumps(monitor.state_dict())))
    resumed.setup(trainer, module, "fit")
    _step(resumed, trainer, module, groups, 5)
    assert resumed.sightings["reflection"]["step"] == 3 and resumed.sightings["aha"]["step"] == 3
    correct_aha = [_group(_completion("aha, <answer>7</answer>", 1.0), _completion("<answer>1</answer>", 0.0))]
    _step(resumed, trainer, module, correct_aha, 6)
    assert resumed.sightings["aha_correct"]["step"] == 6


def test_rates_among_correct_left_out_when_nothing_is_correct(tmp_path):
    trainer, module = _stubs(tmp_path)
    monitor = AhaMonitor(reflection_phrases=["hmm"], correct_threshold=0.5)
    monitor.setup(trainer, module, "fit")
    rates = _step(monitor, trainer, module, [_group(_completion("hmm", 0.4), _completion("no", 0.0))], 0)
    assert rates["aha/reflection_rate"] == 0.5 and rates["aha/reflection_rate_incorrect"] == 0.5
    assert "aha/reflection_rate_correct" not in rates  # 0/0 is not logged as 0
    rates = _step(monitor, trainer, module, [_group(_completion("hmm", 0.5), _completion("no", 0.0))], 1)
    assert rates["aha/reflection_rate_correct"] == 1.0  # the threshold is inclusive


def test_unknown_accuracy_reward_names_the_fix(tmp_path):
    trainer, module = _stubs(tmp_path)
    with pytest.raises(ConfigError, match=r"accuracy_reward='acc' is not one of the model's rewards \['accuracy', 'format'\]"):
        AhaMonitor(accuracy_reward="acc").setup(trainer, module, "fit")


# ---- tools/find_aha.py -------------------------------------------------------------------------------------

def _write_log(path: Path) -> Path:
    rows = [
        (0, "<answer>7</answer>", 1.0),
        (1, "3 + 4 = 8. But wait, that is 7. <answer>7</answer>", 1.0),
        (1, "awaiting <answer>9</answer>", 0.0),
        (2, "Aha! it is 10 <answer>10</answer>", 0.0),
        (3, "Let me check: aha, 7. <answer>7</answer>", 1.0),
    ]
    lines = [json.dumps({"step": s, "samples_seen": 8 * (s + 1), "problem": "What is 3 + 4?", "answer": "7", "completion": text,
                         "reward": acc, "scores": {"accuracy": acc}}) for s, text, acc in rows]
    path.write_text("\n".join(lines) + "\n{\"step\": 4, \"comple")  # a last line cut by a crash
    return path


def _find_aha(*args):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "find_aha.py"), *map(str, args)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_find_aha_lists_examples_with_the_phrase_highlighted(tmp_path):
    _write_log(tmp_path / "completions.jsonl")
    out = _find_aha(tmp_path)  # a run folder stands for its completions.jsonl
    assert "4 match(es) in 5 logged completions (2 reflection, 2 aha)" in out
    assert "[reflection · 'but wait'] step 1" in out and ">>>But wait<<<" in out and "awaiting" not in out
    assert out.index("step 1") < out.index("step 2") < out.index("step 3")  # log order: earliest first

    aha = _find_aha(tmp_path / "completions.jsonl", "--kind", "aha", "--correct-only")
    assert "[aha · 'aha'] step 3" in aha and "step 2" not in aha and "reflection ·" not in aha
    assert "1 match(es)" in aha

    limited = _find_aha(tmp_path, "--limit", "1")
    assert limited.count("Q: ") == 1 and "1 shown" in limited


def test_find_aha_shows_the_base_rate_and_the_test(tmp_path):
    """Without the monitor's file the base rate is the log's first step (1 completion, no phrase); after it,
    reflection in 2 of 4: N = 5, K = 2: P(X >= 2) = C(2,2) C(3,2) / C(5,4) = 3/5."""
    _write_log(tmp_path / "completions.jsonl")
    out = _find_aha(tmp_path)
    assert "base rate 0/1 = 0.0% (the log's step 0); chance of one by then 0%" in out
    assert "after step 0: reflection 50.0% against a base rate of 0.0%: no rise detectable (p = 0.6;" in out
    # the monitor's base rate wins: 1 of 4 completions reflected before any update
    (tmp_path / "aha_rates.json").write_text(json.dumps(
        {"baseline": {"step": 0, "n": 4, "correct": 1, "reflection": {"hits": 1, "hits_correct": 0},
                      "aha": {"hits": 0, "hits_correct": 0}}, "windows": []}))
    out = _find_aha(tmp_path)
    # a sighting at 16 samples seen, base rate 1/4: 1 - 0.75^16 = 0.99
    assert "base rate 1/4 = 25.0% (AhaMonitor, step 0); chance of one by then 99%" in out


def test_find_aha_without_a_log_names_the_callback(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "find_aha.py"), str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "CompletionLog" in result.stderr


# ---- the base rate: the first step's rollout, before any update ---------------------------------------------

def test_base_rate_windows_and_sightings_against_it(tmp_path, caplog):
    """Step 0 (the untrained policy): 1 of 4 says "wait" (incorrect). Steps 1-2: 3 of 4 "let me check" (2 of them
    correct), the fourth plain and incorrect. Window of 2 steps, tested at step 2 against the base rate."""
    trainer, module = _stubs(tmp_path)
    monitor = AhaMonitor(window_steps=2)
    monitor.setup(trainer, module, "fit")
    base = [_group(_completion("Wait, no. <answer>8</answer>", 0.0), _completion("<answer>7</answer>", 1.0),
                   _completion("<answer>6</answer>", 0.0), _completion("<answer>5</answer>", 0.0))]
    rates = _step(monitor, trainer, module, base, 0)
    assert rates["aha/baseline_reflection_rate"] == 0.25 and rates["aha/baseline_reflection_strict_rate"] == 0.0
    first = monitor.sightings["reflection"]
    assert first["before_any_update"] and first["base_rate"] == 0.25 and first["p_value"] is None
    assert first["chance_by_then"] == pytest.approx(1 - 0.75 ** 4)  # 4 samples seen at a 1/4 base rate

    later = [_group(_completion("let me check: 7 <answer>7</answer>", 1.0), _completion("let me check <answer>9</answer>", 0.0),
                    _completion("Let me check. <answer>7</answer>", 1.0), _completion("<answer>3</answer>", 0.0))]
    _step(monitor, trainer, module, later, 1)
    strict = monitor.sightings["reflection_strict"]
    assert strict["base_rate"] == 0.0 and strict["chance_by_then"] == 0.0
    assert strict["p_value"] == pytest.approx(5 / 70)  # 3/4 vs 0/4: C(3,3) C(5,1) / C(8,4)
    assert monitor.windows == []  # the window is not full yet
    with caplog.at_level(logging.INFO):
        rates = _step(monitor, trainer, module, later, 2)
    # reflection 6/8 vs 1/4: N = 12, K = 7: (C(7,6) C(5,2) + C(7,7) C(5,1)) / C(12,8) = 75/495
    assert rates["aha/reflection_p_value"] == pytest.approx(75 / 495)
    # strict 6/8 vs 0/4: C(6,6) C(6,2) / C(12,8) = 15/495
    assert rates["aha/reflection_strict_p_value"] == pytest.approx(15 / 495)
    assert rates["aha/reflection_window_rate"] == 0.75
    assert rates["aha/reflection_accuracy_with"] == pytest.approx(4 / 6) and rates["aha/reflection_accuracy_without"] == 0.0
    lines = [r.getMessage() for r in caplog.records]
    assert any("steps 1-2: reflection 75.0% against a base rate of 25.0%: no rise detectable (p = 0.15" in m
               for m in lines), lines
    saved = json.loads((tmp_path / "aha_rates.json").read_text())
    assert saved["baseline"]["n"] == 4 and saved["windows"][0]["kinds"]["reflection_strict"]["p_value"] == pytest.approx(15 / 495)

    resumed = AhaMonitor(window_steps=2)
    resumed.load_state_dict(json.loads(json.dumps(monitor.state_dict())))
    resumed.setup(trainer, module, "fit")
    rates = _step(resumed, trainer, module, later, 3)
    assert rates["aha/baseline_reflection_rate"] == 0.25  # the base rate survives a resume; step 3 is no new base


def test_weak_phrases_setting_and_no_strict_rate():
    assert "reflection_strict" not in AhaMonitor(weak_phrases=[]).matchers
    strict = AhaMonitor(weak_phrases=["let me check"]).matchers["reflection_strict"]
    assert "let me check" not in strict.phrases and "wait" in strict.phrases


def test_a_run_ending_inside_a_window_still_reports_it(tmp_path):
    """Window of 2 steps; the run ends after step 3, one step into the second window: that step is tested against
    the base rate at train end and written, not dropped."""
    trainer, module = _stubs(tmp_path)
    monitor = AhaMonitor(window_steps=2)
    monitor.setup(trainer, module, "fit")
    plain = [_group(_completion("<answer>7</answer>", 1.0), _completion("<answer>6</answer>", 0.0))]
    checks = [_group(_completion("let me check <answer>7</answer>", 1.0), _completion("<answer>6</answer>", 0.0))]
    for step, groups in enumerate([plain, plain, plain, checks]):
        _step(monitor, trainer, module, groups, step)
    assert [(w["first_step"], w["last_step"]) for w in monitor.windows] == [(1, 2)]
    monitor.on_train_end(trainer, module)
    saved = json.loads((tmp_path / "aha_rates.json").read_text())
    last = saved["windows"][-1]
    assert (last["first_step"], last["last_step"], last["samples"]) == (3, 3, 2)
    # strict reflection 1/2 vs 0/2 before training: C(1,1) C(3,1) / C(4,2) = 3/6
    assert last["kinds"]["reflection_strict"]["hits"] == 1
    assert last["kinds"]["reflection_strict"]["p_value"] == pytest.approx(3 / 6)
    monitor.on_train_end(trainer, module)  # nothing left to close: no second copy
    assert len(json.loads((tmp_path / "aha_rates.json").read_text())["windows"]) == 2
