"""Sampler–trainer mismatch corrections: weights that multiply each token's policy-gradient term.

The engine (vLLM, bf16) and the trainer compute slightly different probabilities, so even at μ = 1 the samples are
off-policy. ``ImportanceSampling`` reweights by the truncated ratio π_trainer / π_sampler. The other two drop what
is too far off instead (verl's rollout correction):

- ``MaskedImportanceSampling`` (MIS): a token (or a whole sequence, by its product ratio) whose ratio falls outside
  [lower, upper] gets weight 0; the others keep their ratio.
- ``GeometricSequenceMask``: a completion whose geometric-mean ratio exp(mean_t log r) falls outside [lower, upper]
  gets no loss; the kept ones are weighted 1 (or by token TIS with ``cap``). The geometric mean does not grow
  with length, so one threshold suits short and long completions alike.

Each is set as the loss's ``importance_sampling`` (``model.loss.init_args.importance_sampling``) and needs an
engine that returns its log-probs. The mismatch itself is logged either way (``sampling/mismatch_kl``,
``sampling/logp_diff/*``), and the fraction of loss tokens a correction zeroed as ``sampling/is_masked_ratio``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from r1lit.errors import ConfigError


class ImportanceSampling:
    """Truncated importance sampling: reweights each token by min(π_trainer / π_sampler, cap).

    The sampler (vLLM) and the trainer compute probabilities with different kernels and precisions, so samples are
    slightly off-policy even at μ = 1; the ratio corrects for that and the cap bounds its variance.
    """

    def __init__(self, level: Literal["token", "sequence"] = "token", cap: float = 2.0):
        """
        Args:
            level: ``token`` uses each token's ratio; ``sequence`` the product over the completion, for every token.
            cap: ratios above this are truncated to it.
        """
        if level not in ("token", "sequence"):
            raise ConfigError(f"importance_sampling.level must be 'token' or 'sequence', got {level!r}")
        if cap <= 0:
            raise ConfigError(f"importance_sampling.cap must be > 0, got {cap}")
        self.level, self.cap = level, cap

    def weights(self, trainer_logps: Tensor, sampler_logps: Tensor, mask: Tensor) -> Tensor:
        """trainer_logps/sampler_logps/mask: [N, C]. Returns detached weights [N, C], 0 on padding."""
        on = mask.bool()  # selected, never multiplied: whatever lies under the mask (-inf, NaN) stays out
        log_ratio = torch.where(on, trainer_logps.detach() - sampler_logps, 0.0)  # [N, C]
        if self.level == "sequence":
            log_ratio = log_ratio.sum(dim=1, keepdim=True).expand_as(mask)
        return torch.where(on, torch.exp(log_ratio).clamp(max=self.cap), 0.0)


def _bounds(lower: float | None, upper: float) -> tuple[float, float]:
    lower = 1.0 / upper if lower is None else lower
    if not 0 <= lower <= 1.0 <= upper:
        raise ConfigError(f"the kept ratio range must hold 1: got lower={lower}, upper={upper}")
    return lower, upper


class MaskedImportanceSampling(ImportanceSampling):
    """Masked importance sampling: weight = ratio inside [lower, upper], 0 outside (no truncation)."""

    def __init__(self, level: Literal["token", "sequence"] = "token", upper: float = 2.0, lower: float | None = None):
        """
        Args:
            level: ``token`` judges each token's ratio; ``sequence`` the product over the completion, for every token.
            upper: ratios above this are masked (weight 0).
            lower: ratios below this are masked; None = 1 / upper.
        """
        if level not in ("token", "sequence"):
            raise ConfigError(f"MaskedImportanceSampling.level must be 'token' or 'sequence', got {level!r}")
        self.level, (self.lower, self.upper) = level, _bounds(lower, upper)

    def weights(self, trainer_logps: Tensor, sampler_logps: Tensor, mask: Tensor) -> Tensor:
        on = mask.bool()  # selected, never multiplied: whatever lies under the mask (-inf, NaN) stays out
        log_ratio = torch.where(on, trainer_logps.detach() - sampler_logps, 0.0)  # [N, C]
        if self.level == "sequence":
            log_ratio = log_ratio.sum(dim=1, keepdim=True).expand_as(mask)
        ratio = torch.exp(log_ratio)
        kept = (ratio >= self.lower) & (ratio <= self.upper) & on
        return torch.where(kept, ratio, 0.0)


class GeometricSequenceMask(ImportanceSampling):
    """Rejects completions whose geometric-mean ratio exp(mean_t log(π_trainer / π_sampler)) leaves [lower, upper]."""

    def __init__(self, upper: float = 1.01, lower: float | None = None, cap: float | None = None):
        """
        Args:
            upper: completions whose geometric-mean ratio is above this get no loss.
            lower: completions whose geometric-mean ratio is below this get no loss; None = 1 / upper.
            cap: also reweight the kept completions' tokens by their ratio truncated at ``cap`` (token TIS);
                None = weight 1.
        """
        if cap is not None and cap <= 0:
            raise ConfigError(f"GeometricSequenceMask.cap must be > 0 or None, got {cap}")
        self.level, self.cap = "geometric", cap
        self.lower, self.upper = _bounds(lower, upper)

    def weights(self, trainer_logps: Tensor, sampler_logps: Tensor, mask: Tensor) -> Tensor:
        on = mask.bool()  # selected, never multiplied: whatever lies under the mask (-inf, NaN) stays out
        log_ratio = torch.where(on, trainer_logps.detach() - sampler_logps, 0.0)  # [N, C]
        geometric = torch.exp(log_ratio.sum(dim=1) / on.sum(dim=1).clamp(min=1))  # [N]
        kept = ((geometric >= self.lower) & (geometric <= self.upper)).unsqueeze(1) & on  # [N, C]
        tokens = torch.exp(log_ratio).clamp(max=self.cap) if self.cap is not None else torch.ones_like(log_ratio)
        return torch.where(kept, tokens, 0.0)
