"""One-step-off generation: the engine samples step k + 1's rollout while step k trains.

Synchronous GRPO leaves the reserved GPU idle while the others train and the trainers idle while it generates. Here
step k takes the rollout that was asked for during step k − 1 (so it comes from the weights pushed after step
k − 2: one update stale), immediately asks the engine for step k + 1's rollout with the weights it holds now, and
trains. The engine's weight push after step k waits for that request (``BackgroundGeneration``), so every rollout
comes from one set of weights; the trainer's log-probs against the sampler's are corrected by the module's
importance sampling, and ``rollout/staleness`` logs how many updates old each rollout's weights are.

Exact resume: the rollout in flight when a checkpoint is written cannot be generated again (its weights, those of
step k − 1, are not in the checkpoint), so the checkpoint keeps the finished rollout itself, with the problems it
is for; the resumed run trains on it as the uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future
from dataclasses import dataclass

from lightning.pytorch.utilities import rank_zero_warn

from r1lit.data.batch import ProblemBatch
from r1lit.rollout.background import finished
from r1lit.rollout.types import Rollout


@dataclass
class Pending:
    """A rollout asked for: the step that will train on it, the problems it is for, the engine's weights then."""

    problems: list[str]  # the data batch's problems, before any filter: what the step's batch must hold
    batch: ProblemBatch  # the problems actually generated for (after the difficulty filter)
    weights_step: int  # global step of the weights the engine held when it was asked
    future: Future  # → Rollout
    skipped: int = 0  # problems the difficulty filter left out


def rollout_state(rollout: Rollout) -> dict:
    """A Rollout as plain tensors and lists, for a checkpoint (loads with ``weights_only``)."""
    return {field.name: getattr(rollout, field.name) for field in dataclasses.fields(rollout)}


class OneStepOff:
    """Holds the rollout in flight between two training steps, and puts it in checkpoints."""

    def __init__(self) -> None:
        self.pending: Pending | None = None
        self.restored: dict | None = None  # this rank's in-flight rollout read from a checkpoint

    def take(self, problems: list[str]) -> Pending | None:
        """The rollout asked for this step's problems, if there is one (None: generate now, in the foreground)."""
        pending, self.pending = self.pending, None
        if pending is None and self.restored is not None:
            state, self.restored = self.restored, None
            pending = Pending(state["problems"], ProblemBatch(**state["batch"]), state["weights_step"],
                              finished(Rollout(**state["rollout"])), state["skipped"])
        if pending is None:
            return None
        if pending.problems != problems:
            rank_zero_warn("[r1lit] the rollout in flight was for other problems than this step's batch (a resume "
                           "with another data order or world size?); generating this step's rollout now instead: "
                           "this step is not the uninterrupted run's")
            return None
        return pending

    def state_dict(self) -> dict | None:
        """The in-flight rollout, waited for (None if there is none)."""
        if self.pending is None:
            return None
        p = self.pending
        batch = {f.name: getattr(p.batch, f.name) for f in dataclasses.fields(p.batch) if f.name != "next"}
        return {"problems": p.problems, "batch": batch, "weights_step": p.weights_step,
                "skipped": p.skipped, "rollout": rollout_state(p.future.result().to("cpu"))}

    def load_state_dict(self, saved: dict, rank: int, world_size: int) -> None:
        """This rank's rollout from a checkpoint's ``{"world_size", "ranks"}``; a checkpoint written on another number
        of ranks holds other ranks' batches, so its rollouts are dropped (generated again, with a warning)."""
        self.pending, self.restored = None, None
        if saved["world_size"] == world_size:
            self.restored = saved["ranks"][rank]
        elif any(state is not None for state in saved["ranks"]):
            rank_zero_warn(f"[r1lit] the checkpoint's rollouts in flight were generated on {saved['world_size']} ranks, "
                           f"this run has {world_size}: the first step generates its rollout now instead, so it is not "
                           "the uninterrupted run's")
