"""The interface every rollout engine implements; the module knows engines only through it."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator

from torch import Tensor, nn

from r1lit.errors import EngineError, R1LitError
from r1lit.rollout.types import Rollout, SamplingConfig


class RolloutEngine(ABC):
    """Generates G completions per prompt with the current policy weights."""

    weights_step: int | None = None
    """Global step of the weights the engine holds, set at each push (None: it samples the policy's own
    parameters, always current). The module logs the difference as ``rollout/staleness``."""

    engine_index: int = 0
    """Which of the job's engines serves this rank (an engine per node: its node's); 0 when one engine serves all.
    Keys the per-engine generation times and names the engine in messages to the other ranks."""

    def describe(self, index: int) -> str:
        """Engine ``index`` in words, for a message on a rank it does not serve (where it runs, where it logs)."""
        return f"engine {index} ({type(self).__name__})"

    def bind(self, policy: nn.Module, tokenizer) -> None:
        """Called once by the module with the policy and tokenizer it trains (engines that keep their own model
        use the tokenizer for EOS ids and decoding)."""

    @abstractmethod
    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, seed: int | None = None) -> Rollout:
        """Sample ``n`` completions for each prompt; the result is ordered group by group. The same ``seed`` with the
        same weights and prompts draws the same samples (None = the engine's own random state)."""

    def load_weights(self, named_tensors: Iterable[tuple[str, Tensor]]) -> None:
        """Take the policy's new weights (engines that share the policy's parameters need nothing)."""

    def close(self) -> None:
        """Free the engine's resources."""

    def failure_hint(self) -> str:
        """Where to look when the engine fails (an engine process's log); empty when there is nothing more."""
        return ""


@contextlib.contextmanager
def engine_failure(engine: RolloutEngine, doing: str) -> Iterator[None]:
    """Turns whatever an engine raises (a dead vLLM worker, out of memory) into an ``EngineError`` saying what to
    check; the engine's own exception stays attached as the cause."""
    try:
        yield
    except R1LitError:
        raise
    except Exception as error:
        raise EngineError(
            f"the rollout engine {type(engine).__name__} failed while {doing}: {type(error).__name__}: {error}\n"
            "  If it died or ran out of memory: lower its memory (VLLMEngine: gpu_memory_utilization, "
            "kv_cache_memory_bytes, max_model_len; HFEngine: max_batch_size) or the rollout (data.batch_size, "
            "model.num_generations, model.sampling.max_tokens), and read the engine's own log above (vLLM's "
            "EngineCore / worker lines; `dmesg` shows out-of-memory kills)." + engine.failure_hint()
        ) from error
