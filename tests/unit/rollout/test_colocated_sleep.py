"""The colocated engine's sleep cycle, with vLLM's LLM replaced by a recorder (vLLM's CPU build has no sleep mode,
so the order is what CPU can test): generate → sleep → (the optimizer step) → wake → push → generate → sleep."""

from r1lit.rollout.vllm.in_process import VLLMEngine


class RecordingLLM:
    def __init__(self, calls):
        self.calls = calls

    def sleep(self, level):
        self.calls.append(f"sleep{level}")

    def wake_up(self):
        self.calls.append("wake")

    def collective_rpc(self, method, kwargs=None):
        self.calls.append(method if isinstance(method, str) else method.__name__)

    def reset_prefix_cache(self):
        self.calls.append("reset_prefix_cache")


def engine_with(sleeps: bool, calls: list) -> VLLMEngine:
    engine = VLLMEngine(sleep_mode=True)
    engine.llm, engine.sleeps = RecordingLLM(calls), sleeps  # as start() leaves it on a GPU with sleep mode
    engine._generate = lambda *args: calls.append("generate")
    return engine


def test_weights_are_pushed_into_an_awake_engine_and_it_sleeps_through_the_step():
    calls = []
    engine = engine_with(True, calls)
    engine.generate([[1, 2]], 2, None)
    calls.append("optimizer_step")
    engine.load_weights([])
    engine.generate([[1, 2]], 2, None)
    assert calls == ["generate", "sleep1", "optimizer_step", "wake", "reload_weights", "refresh_tied_lm_head",
                     "reset_prefix_cache", "generate", "sleep1"]


def test_an_engine_without_sleep_mode_never_sleeps():
    calls = []
    engine = engine_with(False, calls)
    engine.generate([[1]], 1, None)
    engine.load_weights([])
    assert "sleep1" not in calls and "wake" not in calls
