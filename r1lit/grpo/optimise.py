"""Stage 4 of a GRPO step: μ optimizer steps over one scored rollout, each accumulating micro-batch gradients
into one update. Per micro-batch it is log-probs → ``loss(LossInputs)`` → backward; the loss owns every formula.

Shapes: N completions on this rank, C completion tokens, n and W one micro-batch's rows and longest trained
completion. Per-micro-batch statistics stay on the device and are read to the host once per rollout.
"""

from __future__ import annotations

import contextlib
import dataclasses

import lightning as L
import torch
from torch import Tensor, nn

from r1lit.errors import ConfigError
from r1lit.grpo.losses import GRPOLoss
from r1lit.grpo.metrics import sampling_mismatch
from r1lit.grpo.types import LossInputs, LossStats
from r1lit.policy.logprobs import CompletionLogprobs
from r1lit.rollout.types import Rollout
from r1lit.training.deepspeed import deepspeed_engine, mark_accumulation_boundary
from r1lit.training.nonfinite import NonFiniteGuard, guarded_step


def check_batch_layout(batch_size: int, num_generations: int, micro_batch_size: int) -> None:
    """The rollout (batch_size × num_generations completions) must split into whole micro-batches."""
    if num_generations < 2:
        raise ConfigError(f"model.num_generations={num_generations}: GRPO compares completions within a group; use 2 or more")
    completions = batch_size * num_generations
    if micro_batch_size < 1 or completions % micro_batch_size:
        divisors = [d for d in range(1, completions + 1) if completions % d == 0]
        raise ConfigError(
            f"model.micro_batch_size={micro_batch_size} does not divide the rollout: data.batch_size × "
            f"model.num_generations = {batch_size} × {num_generations} = {completions} completions. "
            f"Pick a micro_batch_size from {divisors}."
        )


class PolicyUpdate:
    """Runs the optimisation of one rollout for a LightningModule under manual optimisation."""

    def __init__(self, loss: GRPOLoss, logprobs: CompletionLogprobs, micro_batch_size: int, num_iterations: int,
                 max_tokens: int, max_grad_norm: float | None, nonfinite: NonFiniteGuard):
        self.loss, self.logprobs, self.nonfinite = loss, logprobs, nonfinite
        self.micro_batch_size, self.num_iterations = micro_batch_size, num_iterations
        self.max_tokens, self.max_grad_norm = max_tokens, max_grad_norm

    def __call__(self, module: L.LightningModule, policy: nn.Module, reference: nn.Module | None, rollout: Rollout,
                 advantages: Tensor, mask: Tensor) -> dict[str, float]:
        """advantages: [N]; mask: [N, C] the completion tokens that get loss (the completion mask minus rows left
        out of training). Returns the optimisation's statistics (loss, grad_norm, lr, kl, clip, entropy, mismatch)."""
        trainer, optimizer, scheduler = module.trainer, module.optimizers(), module.lr_schedulers()
        input_ids, attention = rollout.sequences()  # [N, P + C] each
        global_tokens = float(module.all_gather(mask.sum()).sum()) if trainer.world_size > 1 else float(mask.sum())
        token_weights = self.loss.token_weights(mask, self.max_tokens, global_tokens, trainer.world_size)  # [N, C]
        starts = range(0, mask.shape[0], self.micro_batch_size)
        widths = mask.sum(dim=1).split(self.micro_batch_size)  # each micro-batch's longest trained completion
        slices = [(slice(i, i + self.micro_batch_size), int(w))
                  for i, w in zip(starts, torch.stack([w.max() for w in widths]).tolist())]

        ds_engine = deepspeed_engine(trainer)
        sampler = rollout.sampler_logprobs  # [N, C] or None
        # the trainer's pre-update log-probs of the sampled tokens, [N, C], for the mismatch metrics (no host sync here)
        pre_update = torch.zeros(mask.shape, device=mask.device) if sampler is not None else None
        old_logps = ref_logps = old_entropy = None
        with torch.no_grad():
            if self.num_iterations > 1 or self.loss.masks_by_entropy:
                old_logps, old_entropy = self._batched(policy, input_ids, attention, mask, slices, entropy=True)
                if self.num_iterations == 1:
                    old_logps = None  # only the entropies were wanted; μ = 1 uses the live log-probs detached
            if reference is not None:
                ref_logps, _ = self._batched(reference, input_ids, attention, mask, slices)
        entropy_mask = self.loss.entropy_mask(old_entropy, mask)  # [N, C]
        zero = torch.zeros((), device=mask.device)
        sums = {"entropy": zero, "tokens": zero, "trained_entropy": zero, "trained_tokens": zero}

        for iteration in range(self.num_iterations):
            total_loss, total = zero, LossStats()
            for k, (mb, width) in enumerate(slices):
                last = k == len(slices) - 1
                mark_accumulation_boundary(ds_engine, last)
                with _no_sync(trainer, last):
                    # the entropy of the policy that sampled the rollout is measured at iteration 0, from the same pass
                    mode = "grad" if self.loss.entropy.coef > 0 else ("metric" if iteration == 0 else "none")
                    logps, entropy = self.logprobs(policy, input_ids[mb], attention[mb], mask.shape[1], width, mode)
                    inputs = LossInputs(
                        logps=logps,  # [n, W]
                        old_logps=old_logps[mb, :width] if old_logps is not None else logps.detach(),
                        ref_logps=ref_logps[mb, :width] if ref_logps is not None else None,
                        sampler_logps=sampler[mb, :width] if sampler is not None else None,
                        advantages=advantages[mb], token_weights=token_weights[mb, :width], mask=mask[mb, :width],
                        entropy_mask=entropy_mask[mb, :width], entropy=entropy,
                    )
                    if iteration == 0:
                        _add_entropy(sums, entropy.detach(), inputs.mask, inputs.entropy_mask)
                        if pre_update is not None:
                            pre_update[mb, :width] = inputs.old_logps.detach()
                    loss, stats = self.loss(inputs)
                    module.manual_backward(loss)
                total_loss = total_loss + loss.detach()
                total = total + stats
            grad_norm = self._clip(policy) if ds_engine is None else None  # DeepSpeed clips inside its step
            lr = optimizer.param_groups[0]["lr"]  # the rate this update uses (logged before the scheduler moves it)
            stepped, grad_norm = guarded_step(self.nonfinite, optimizer, float(total_loss), grad_norm, trainer.strategy,
                                              ds_engine)
            if not stepped:  # NaN/inf: no step (DeepSpeed discards it inside its own), no LR step
                continue
            scheduler.step()
        return self._summary(sums, total_loss, total, grad_norm, lr, pre_update, sampler, mask)

    def _summary(self, sums, total_loss, total: LossStats, grad_norm, lr, pre_update, sampler, mask) -> dict[str, float]:
        """The statistics read to the host in one transfer, under the names ``optimise_metrics`` logs."""
        scalars = {**sums, "loss": total_loss, **{f.name: getattr(total, f.name) for f in dataclasses.fields(total)}}
        host = dict(zip(scalars, torch.stack([torch.as_tensor(v, dtype=torch.float32, device=mask.device).reshape(())
                                              for v in scalars.values()]).tolist()))
        total = LossStats(**{field.name: host[field.name] for field in dataclasses.fields(LossStats)})
        out = {
            "loss": host["loss"], "grad_norm": grad_norm, "lr": lr, "kl": total.mean("kl"),
            "clip_low": total.mean("clip_low"), "clip_high": total.mean("clip_high"),
            "entropy": host["entropy"] / max(host["tokens"], 1.0),
            "entropy_trained": host["trained_entropy"] / max(host["trained_tokens"], 1.0),
        }
        if pre_update is not None:
            out.update(sampling_mismatch(pre_update, sampler, mask))
            if self.loss.importance_sampling is not None:
                out["is_masked_ratio"] = host["is_masked"] / max(host["tokens"], 1.0)
        return out

    def _batched(self, model: nn.Module, input_ids: Tensor, attention: Tensor, mask: Tensor,
                 slices: list[tuple[slice, int]], entropy: bool = False) -> tuple[Tensor, Tensor | None]:
        """Log-probs of every completion token, micro-batch by micro-batch ((rows, width) pairs), and with
        ``entropy`` the entropies at the same positions. Returns ([N, C], [N, C] or None), 0 beyond each width."""
        out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        ent = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device) if entropy else None
        for mb, width in slices:
            logps, h = self.logprobs(model, input_ids[mb], attention[mb], mask.shape[1], width,
                                     "metric" if entropy else "none")
            out[mb, :width] = logps
            if entropy:
                ent[mb, :width] = h
        return out, ent

    def _clip(self, policy: nn.Module) -> float:
        params = [p for p in policy.parameters() if p.grad is not None]
        if not params:
            return 0.0
        max_norm = self.max_grad_norm if self.max_grad_norm is not None else float("inf")
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


def _add_entropy(sums: dict[str, Tensor], entropy: Tensor, mask: Tensor, entropy_mask: Tensor) -> None:
    """Adds one micro-batch's entropy sums over its trained tokens and its entropy-masked tokens ([n, W] each)."""
    sums["entropy"] = sums["entropy"] + (entropy * mask).sum()
    sums["tokens"] = sums["tokens"] + mask.sum()
    sums["trained_entropy"] = sums["trained_entropy"] + (entropy * entropy_mask).sum()
    sums["trained_tokens"] = sums["trained_tokens"] + entropy_mask.sum()


def _no_sync(trainer: L.Trainer, last: bool):
    """Skip DDP's gradient all-reduce on all but the last micro-batch of an update."""
    wrapped = getattr(trainer.strategy, "model", None)
    if not last and hasattr(wrapped, "no_sync") and isinstance(wrapped, torch.nn.parallel.DistributedDataParallel):
        return wrapped.no_sync()
    return contextlib.nullcontext()
