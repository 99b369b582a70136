"""A vLLM engine whose weight push silently does nothing: what a broken transport looks like from the trainer
(the push "succeeds", the engine keeps sampling from the weights it started with)."""

from r1lit.rollout.vllm.in_process import VLLMEngine


class FrozenVLLMEngine(VLLMEngine):
    """The real in-process engine, with ``load_weights`` reduced to counting the pushes it ignores."""

    ignored = 0

    def load_weights(self, named_tensors):
        for _ in named_tensors:
            pass
        self.ignored += 1

    def log_excerpt(self) -> str:
        return f"frozen test engine: {self.ignored} pushes ignored"
