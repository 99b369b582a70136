"""Entropy of the policy's next-token distribution: one definition, used by the logged ``entropy``, the entropy
bonus and TRL's ``top_entropy_quantile`` mask that trains only on the highest-entropy ("forking") tokens.

The bonus subtracts ``coef · Σ_t w_t H_t`` from the loss, with the loss's own token weights ``w``, so it is
normalised like the policy-gradient term and micro-batches still add up to one big batch. The quantile mask is
computed once per rollout from the entropies of the policy that sampled it, over this rank's trained tokens, and
multiplies the policy-gradient term only (like TRL: not the KL penalty, and not the normalisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from r1lit.errors import ConfigError


@dataclass(frozen=True)
class EntropyConfig:
    """Entropy controls of the loss: a bonus and a top-entropy token mask (both off by default)."""

    coef: float = 0.0
    """Entropy bonus: subtracts coef × the token-weighted mean entropy of the trained tokens from the loss (0 = off)."""
    top_quantile: float = 1.0
    """Train the policy-gradient term only on this top fraction of the rollout's tokens by entropy (TRL's
    ``top_entropy_quantile``; 0.2 = the 20 % highest-entropy tokens; 1.0 = all). Logs ``entropy/trained``."""

    def __post_init__(self):
        if not 0.0 < self.top_quantile <= 1.0 or self.coef < 0:
            raise ConfigError(f"entropy.top_quantile must be in (0, 1] and entropy.coef >= 0, got "
                              f"{self.top_quantile} and {self.coef}")


def token_entropy(logits: Tensor, lse: Tensor) -> Tensor:
    """Entropy of softmax(logits) per position, in nats: H = logsumexp(z) − Σ_v softmax(z)_v · z_v.

    logits: [..., V] float32, already divided by the temperature; lse: [...] their logsumexp (which the log-prob
    of the target needs anyway). Differentiable; detach the inputs for a metric. Returns [...]."""
    return lse - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)


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
