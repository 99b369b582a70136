"""Test-only callbacks that record what a run did, for comparing an interrupted run with an uninterrupted one."""

from __future__ import annotations

import json
import os

import lightning as L


class BatchRecorder(L.Callback):
    """Appends each training batch's problems and the global step to a jsonl file, synced to disk at once so a
    SIGKILL right after cannot lose the line."""

    def __init__(self, path: str):
        """
        Args:
            path: jsonl file to append to.
        """
        self.path = path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": trainer.global_step, "rank": trainer.global_rank, "problems": batch.problems}) + "\n")
            f.flush()
            os.fsync(f.fileno())


class ParamHashRecorder(L.Callback):
    """After each training step, writes a hash of the policy's parameter bytes to ``<path>.rank<r>``: ranks of a
    data-parallel run must hold bit-identical weights."""

    def __init__(self, path: str):
        """
        Args:
            path: file prefix; each rank appends to its own file.
        """
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import hashlib

        digest = hashlib.sha1()
        for name, param in pl_module.policy.named_parameters():
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
        with open(f"{self.path}.rank{trainer.global_rank}", "a") as f:
            f.write(json.dumps({"step": trainer.global_step, "hash": digest.hexdigest()}) + "\n")


class StopAtStep(L.Callback):
    """Ends the run cleanly after ``step`` optimizer steps, leaving ``max_steps`` (and so the LR schedule) as it is."""

    def __init__(self, step: int):
        """
        Args:
            step: global step after which training stops.
        """
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


class GroupRecorder(L.Callback):
    """After each training step, appends the groups the step trained on to ``<path>.rank<r>``: problem, whether
    its advantages are all zero, the completions' texts, and how many extra problems the rank has drawn."""

    def __init__(self, path: str):
        """
        Args:
            path: file prefix; each rank appends to its own file.
        """
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        groups = [{"problem": g.problem, "flat": all(c.advantage == 0.0 for c in g.completions),
                   "texts": [c.text for c in g.completions]} for g in outputs["groups"]]
        with open(f"{self.path}.rank{trainer.global_rank}", "a") as f:
            extra = trainer.datamodule.state_dict().get("extra_drawn") if trainer.datamodule is not None else None
            f.write(json.dumps({"step": trainer.global_step, "groups": groups, "extra_drawn": extra}) + "\n")
            f.flush()
            os.fsync(f.fileno())


class SamplerWeightsRecorder(L.Callback):
    """For each step, how far the engine's sampler log-probs of the trained rollout are from the policy's log-probs
    under the weights before this step and under those before the previous step (max |Δ| over tokens), as a jsonl
    line in ``<path>.rank<r>``: which weights sampled the rollout."""

    def __init__(self, path: str):
        """
        Args:
            path: file prefix; each rank appends to its own file.
        """
        self.path = path
        self.snapshots: list[dict] = []  # policy state before the previous step and before this one

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        import copy

        self.snapshots = (self.snapshots + [copy.deepcopy(pl_module.policy.state_dict())])[-2:]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        import copy

        import torch

        rollout = outputs["rollout"]
        mask = rollout.completion_mask.bool()
        model = copy.deepcopy(pl_module.policy)
        diffs = {}
        for name, state in zip(["previous", "current"][-len(self.snapshots):], self.snapshots):
            model.load_state_dict(state)
            input_ids, attention = rollout.sequences()
            width = rollout.completion_ids.shape[1]
            with torch.no_grad():
                logps, _ = pl_module.completion_logprobs(model, input_ids, attention, width, width)
            diffs[name] = float((logps - rollout.sampler_logprobs)[mask].abs().max())
        with open(f"{self.path}.rank{trainer.global_rank}", "a") as f:
            f.write(json.dumps({"step": trainer.global_step, **diffs}) + "\n")
