"""Entropy regularisation: a differentiable per-token entropy for an entropy bonus, and TRL's
``top_entropy_quantile`` mask that trains only on the highest-entropy ("forking") tokens.

The bonus subtracts ``coef · Σ_t w_t H_t`` from the loss, with the loss's own token weights ``w``, so it is
normalised like the policy-gradient term and micro-batches still add up to one big batch. The quantile mask is
computed once per rollout from the entropies of the policy that sampled it, over this rank's trained tokens, and
multiplies the policy-gradient term only (like TRL: not the KL penalty, and not the normalisation).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def entropy_with_grad(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Entropy of softmax(logits / temperature) per position, in nats, with its gradient. logits: [B, T, V].
    Returns [B, T] float32."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # [B, T, V]
    return -(logp.exp() * logp).sum(dim=-1)


def high_entropy_mask(entropy: Tensor, mask: Tensor, quantile: float) -> Tensor:
    """[N, C] float: 1 on the masked-in tokens whose entropy is at least the (1 − quantile)-quantile of all
    masked-in tokens' entropies (the top ``quantile`` fraction), 0 elsewhere. ``quantile`` 1 keeps every token.
    entropy, mask: [N, C].

    The same tokens as ``entropy >= torch.quantile(values, 1 - quantile)`` (linear interpolation), for any number
    of tokens (``torch.quantile`` refuses more than 2^24): the interpolated threshold lies between the sorted values
    at floor(pos) and ceil(pos), pos = (1 - quantile)(n - 1), so ``>=`` it keeps exactly the values ``>=`` the one at
    ceil(pos), found by selection (``kthvalue``) instead of a sort."""
    mask = mask.bool()
    if quantile >= 1.0 or not mask.any():
        return mask.float()
    values = entropy[mask].float()  # [n]
    position = (1.0 - quantile) * (values.numel() - 1)
    k = min(values.numel(), math.ceil(position - 1e-9) + 1)  # 1-based rank of the value at ceil(pos)
    threshold = torch.kthvalue(values, k).values
    return ((entropy >= threshold) & mask).float()
