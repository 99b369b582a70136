"""Faults on purpose, named by ``class_path`` in test configs the way a user's own components are: a loss that
turns NaN, engines that die or return degenerate completions, a checkpoint writer that blocks mid-file."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Literal

import lightning as L
import torch

from r1lit.grpo.losses import GRPOLoss
from r1lit.rollout import HFEngine
from r1lit.rollout.engine import RolloutEngine
from r1lit.rollout.types import Rollout, SamplingConfig, assemble_rollout
from r1lit.rollout.vllm.in_process import VLLMEngine


class StepFile(L.Callback):
    """Writes the global step to ``path`` after every batch, so a test can wait until training is under way."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.is_global_zero:  # one writer: ranks sharing the temporary file would race on the rename
            self.path.with_suffix(".tmp").write_text(str(trainer.global_step))
            os.replace(self.path.with_suffix(".tmp"), self.path)


class NaNLoss(GRPOLoss):
    """GRPOLoss whose value is NaN on the chosen calls (0-based; one call per update when a micro-batch is the
    whole rollout), so its gradients are NaN too."""

    def __init__(self, nan_at: list[int], beta: float = 0.0):
        super().__init__(beta=beta)
        self.nan_at, self.calls = set(nan_at), 0

    def __call__(self, *args, **kwargs):
        loss, stats = super().__call__(*args, **kwargs)
        if self.calls in self.nan_at:
            loss = loss * float("nan")
        self.calls += 1
        return loss, stats


class DyingEngine(HFEngine):
    """HFEngine that fails like a crashed engine process on its ``die_at``-th generate call (1-based)."""

    def __init__(self, die_at: int = 3):
        super().__init__()
        self.die_at, self.calls = die_at, 0

    def generate(self, prompt_ids, n, sampling, seed=None):
        self.calls += 1
        if self.calls == self.die_at:
            raise RuntimeError("EngineCore encountered an issue: worker process died unexpectedly")
        return super().generate(prompt_ids, n, sampling, seed)


class DegenerateEngine(RolloutEngine):
    """Returns the completions a broken or collapsed policy gives: ``empty`` (no tokens at all), ``eos`` (only
    the EOS token) or ``same`` (one identical completion everywhere, with sampler log-probs)."""

    def __init__(self, mode: Literal["empty", "eos", "same"] = "empty"):
        self.mode = mode

    def bind(self, policy, tokenizer) -> None:
        self.tokenizer, self.eos = tokenizer, tokenizer.eos_token_id

    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, seed: int | None = None) -> Rollout:
        rows = len(prompt_ids) * n
        tokens = {"empty": [], "eos": [self.eos], "same": [5, 6, 7, self.eos]}[self.mode]
        ids = torch.tensor([tokens] * rows, dtype=torch.long).view(rows, len(tokens))  # [N, C], C may be 0
        logprobs = torch.full(ids.shape, -1.0) if self.mode == "same" else None
        pad = self.tokenizer.pad_token_id
        return assemble_rollout(prompt_ids, n, ids, logprobs, [self.eos], pad, self.tokenizer)


class BlockCheckpointWrite(L.Callback):
    """Makes the ``nth`` write of a file named ``name`` stop half-way and hang (a process killed mid-write), after
    creating ``marker`` so the test knows when to kill."""

    def __init__(self, marker: str, name: str = "last.ckpt", nth: int = 2):
        self.marker, self.name, self.nth, self.seen = Path(marker), name, nth, 0

    def setup(self, trainer, pl_module, stage: str) -> None:
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            target = str(getattr(f, "name", f))
            if self.name in os.path.basename(target):  # last.ckpt itself or its temporary .last.ckpt.partial-<pid>
                self.seen += 1
                if self.seen == self.nth:
                    buffer = io.BytesIO()
                    real_save(obj, buffer, *args, **kwargs)
                    data = buffer.getvalue()
                    f.write(data[: len(data) // 2])
                    f.flush()
                    self.marker.write_text(target)
                    time.sleep(3600)  # killed here
            return real_save(obj, f, *args, **kwargs)

        torch.save = save


class DyingVLLMEngine(VLLMEngine):
    """The real in-process vLLM engine, whose engine core is shut down just before its ``die_at``-th generate
    call: what the trainer then gets is whatever vLLM raises with its core gone."""

    def __init__(self, die_at: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.die_at, self.calls = die_at, 0

    def generate(self, prompt_ids, n, sampling, seed=None):
        self.calls += 1
        if self.calls == self.die_at:
            self.llm.llm_engine.engine_core.shutdown()
        return super().generate(prompt_ids, n, sampling, seed)
