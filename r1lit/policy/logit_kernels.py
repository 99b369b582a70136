"""The per-token math between one chunk of logits and its log-probs, both ways, eager or compiled.

``logit_stats`` reduces logits [..., V] to each token's log-prob, logsumexp and (when asked) entropy;
``logits_grad`` turns the same logits back into the gradient of the log-probs with respect to them. Both work in
place on a float32 copy (two with the entropy), so eager they walk the [..., V] tensor a few times. Compiled
(``LogitKernels(compiled=True)``, inductor with dynamic shapes) each becomes one or two fused passes over the logits
(measured in docs/shared-prefix.md, "The LM head's log-probs").
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


def logit_stats(logits: Tensor, targets: Tensor, inv_temperature: float,
                with_entropy: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """logits [..., V] (any float dtype, the raw head output), targets [...] → (log p(target) [...], logsumexp
    [...], entropy [...] or None), float32, all of softmax(logits · ``inv_temperature``). The logits are left as
    they were."""
    x = logits.to(torch.float32, copy=True)  # [..., V]
    if inv_temperature != 1.0:
        x.mul_(inv_temperature)
    top = x.amax(dim=-1, keepdim=True)  # [..., 1]
    picked = x.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [...]
    x.sub_(top)  # z − max: exp cannot overflow
    if with_entropy:
        e = x.exp()  # [..., V]
        total = e.sum(dim=-1)  # [...]
        log_total = total.log()
        lse = top.squeeze(-1) + log_total
        # H = log Σe − Σ e·(z − max) / Σe; elementwise, so that autocast cannot run it in bf16 (it does vecdot)
        return picked - lse, lse, log_total - e.mul_(x).sum(dim=-1) / total
    lse = top.squeeze(-1) + x.exp_().sum(dim=-1).log()
    return picked - lse, lse, None


def logits_grad(logits: Tensor, targets: Tensor, lse: Tensor, grad: Tensor, inv_temperature: float) -> Tensor:
    """d(Σ grad · log p(target)) / d logits = grad · (onehot(target) − softmax) · ``inv_temperature``, in the
    logits' dtype. logits [..., V], targets [...], lse [...] (``logit_stats``'), grad [...] float32."""
    x = logits.to(torch.float32, copy=True)  # [..., V]
    if inv_temperature != 1.0:
        x.mul_(inv_temperature)
    scale = (grad * inv_temperature).unsqueeze(-1)  # [..., 1]
    x.sub_(lse.unsqueeze(-1)).exp_().mul_(-scale)  # −g · softmax / T
    x.scatter_add_(-1, targets.unsqueeze(-1), scale)  # + g / T at the target
    return x.to(logits.dtype)


class LogitKernels:
    """``logit_stats`` and ``logits_grad``, run eager or compiled by inductor with dynamic shapes (chunks of any
    length share a graph; dynamo compiles again for a chunk of one row, for each dtype, for temperature 1 against
    others, and for entropy or none: a handful of graphs in a run, each at its first call)."""

    def __init__(self, compiled: bool = False):
        self.stats = _compiled(logit_stats) if compiled else logit_stats
        self.grad = _compiled(logits_grad) if compiled else logits_grad


@functools.cache
def _compiled(fn):
    return torch.compile(fn, dynamic=True)
