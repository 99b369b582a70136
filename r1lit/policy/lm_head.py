"""Log-probs through a plain linear LM head as one autograd node: the head's weight cast once per pass, each chunk's
logits reduced once in forward and recomputed once in backward.

The general route (``head_logprobs`` calling the head module per chunk inside an activation checkpoint) pays, per
chunk under bf16 autocast: a cast of the float32 weight [V, H] in forward and again in the recompute, the
reductions (logsumexp, entropy) twice, and a bf16 weight gradient that autograd casts to float32 and adds.
``HeadLogprobs`` casts the weight once per pass, keeps each token's logsumexp from forward, and in backward turns a
chunk's recomputed logits into their gradient in one pass (``logits_grad``), accumulating the weight's gradient in
float32. A pass that fits in one chunk keeps its logits [M, V] from forward to backward instead of recomputing
them (the chunk budget allows that much). Otherwise memory is the general route's: one chunk's logits [c, V] (and
their float32 copies in the kernels) at a time, plus the weight's cast and gradient. No double backward.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from r1lit.policy.logit_kernels import LogitKernels


def plain_head_weight(head: nn.Module) -> Tensor | None:
    """The head's weight [V, H] when the head is ``x @ weight.T`` with the whole weight in this process, else None.

    A DeepSpeed ZeRO-3 parameter (it carries ``ds_id``, DeepSpeed 0.19) holds only its partition outside the
    module's own forward, which gathers it: such heads are called as modules."""
    if type(head) is not nn.Linear or head.bias is not None or hasattr(head.weight, "ds_id"):
        return None
    return head.weight


def compute_dtype(weight: Tensor) -> torch.dtype:
    """The dtype the head's matmul runs in: autocast's where it is on (as ``nn.Linear`` would), else the weight's."""
    device = weight.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype


class HeadLogprobs(torch.autograd.Function):
    """hidden [M, H], weight [V, H], targets [M] → (log p(target) [M] float32 with gradient to hidden and weight,
    entropy [M] float32 or None, without gradient), of softmax(hidden @ weight.T / temperature), at most
    ``chunk_tokens`` tokens at a time (``chunks``)."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, targets: Tensor, temperature: float, chunk_tokens: int,
                with_entropy: bool, kernels: LogitKernels):
        dtype = compute_dtype(weight)
        M = hidden.shape[0]
        logps = torch.empty(M, dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(logps)
        entropy = torch.empty_like(logps) if with_entropy else None
        kept = None  # a pass of one chunk keeps its logits for backward: the budget allows one chunk's logits
        with torch.autocast(hidden.device.type, enabled=False):  # dtypes are set here, as autocast would set them
            w = weight.to(dtype)  # [V, H], once for all chunks
            for rows in chunks(M, chunk_tokens):
                logits = hidden[rows].to(dtype) @ w.T  # [c, V]
                lp, ls, ent = kernels.stats(logits, targets[rows], 1.0 / temperature, with_entropy)  # [c] each
                logps[rows], lse[rows] = lp, ls
                if with_entropy:
                    entropy[rows] = ent
            if M <= chunk_tokens and any(ctx.needs_input_grad[:2]):
                kept = logits
        ctx.save_for_backward(hidden, weight, targets, lse, kept)
        ctx.dtype, ctx.temperature, ctx.chunk_tokens, ctx.kernels = dtype, temperature, chunk_tokens, kernels
        if with_entropy:
            ctx.mark_non_differentiable(entropy)
        return logps, entropy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logps: Tensor, _grad_entropy):
        hidden, weight, targets, lse, kept = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[:2]
        dtype, M = ctx.dtype, hidden.shape[0]
        grad = grad_logps.float()  # [M]
        d_hidden = torch.empty_like(hidden) if need_hidden else None  # [M, H]
        d_weight = None  # [V, H] float32, summed over chunks
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(dtype) if kept is None or need_hidden else None  # [V, H]
            for rows in chunks(M, ctx.chunk_tokens):
                h = hidden[rows].to(dtype)  # [c, H]
                logits = kept if kept is not None else h @ w.T  # [c, V]
                d_logits = ctx.kernels.grad(logits, targets[rows], lse[rows], grad[rows], 1.0 / ctx.temperature)
                del logits  # before the next chunk's are made
                if need_hidden:
                    d_hidden[rows] = d_logits @ w  # [c, H]
                if need_weight:  # [V, H]: each chunk's part in the matmul's dtype, the sum in float32
                    d_weight = (d_logits.T @ h).float() if d_weight is None else d_weight.add_(d_logits.T @ h)
                del d_logits
        d_weight = d_weight.to(weight.dtype) if need_weight else None
        return d_hidden, d_weight, None, None, None, None, None


def chunks(total: int, chunk_tokens: int) -> list[slice]:
    """``total`` rows in as few chunks of at most ``chunk_tokens`` as possible, of near-equal length: a chunk of one
    row beside long ones (a compiled kernel specialises on length 1, so it would compile again) only when
    ``chunk_tokens`` is below 3. No rows, no chunks."""
    if total <= 0:
        return []
    count = -(-total // chunk_tokens)
    bounds = [i * total // count for i in range(count + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]
