"""Is a rate above what the untrained model already produces? Exact one-sided tests, no scipy.

An untrained model says "wait" now and then: at a 0.5 % base rate, 300 samples hold at least one such completion
with probability 1 − 0.995³⁰⁰ ≈ 78 %. A sighting or a rate means something only next to that base rate and a test
of whether the rate now exceeds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _sum_exp(logs: list[float]) -> float:
    if not logs:
        return 0.0
    top = max(logs)
    return math.exp(top) * sum(math.exp(v - top) for v in logs)


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p): the chance of k or more hits in n samples at rate p."""
    if not 0.0 <= p <= 1.0 or n < 0:
        raise ValueError(f"binomial_sf needs 0 <= p <= 1 and n >= 0, got p={p}, n={n}")
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p == 0.0:
        return 0.0
    if p == 1.0:
        return 1.0
    if k == 1:  # the common question "at least one sighting": exact without a sum
        return -math.expm1(n * math.log1p(-p))
    terms = [_log_comb(n, x) + x * math.log(p) + (n - x) * math.log1p(-p) for x in range(k, n + 1)]
    return min(1.0, _sum_exp(terms))


def fisher_greater(hits: int, n: int, base_hits: int, base_n: int) -> float:
    """One-sided Fisher exact test that the rate hits/n exceeds base_hits/base_n (both are samples).

    Given the K = hits + base_hits hits of the two samples together, the number falling in the first sample is
    hypergeometric; the p-value is P(X ≥ hits) = Σ_{x ≥ hits} C(K, x) C(N − K, n − x) / C(N, n), N = n + base_n.
    """
    if not (0 <= hits <= n and 0 <= base_hits <= base_n):
        raise ValueError(f"fisher_greater needs 0 <= hits <= n, got {hits}/{n} and {base_hits}/{base_n}")
    total, k_all = n + base_n, hits + base_hits
    top = min(n, k_all)
    if hits == 0 or total == 0:
        return 1.0
    denominator = _log_comb(total, n)
    terms = [_log_comb(k_all, x) + _log_comb(total - k_all, n - x) - denominator
             for x in range(hits, top + 1) if n - x <= total - k_all]
    return min(1.0, _sum_exp(terms))


@dataclass(frozen=True)
class RateVsBase:
    """A rate over some samples against the base rate of the untrained model, and the test's verdict."""

    kind: str
    hits: int
    n: int
    base_hits: int
    base_n: int
    p_value: float
    alpha: float

    @property
    def rate(self) -> float:
        return self.hits / self.n if self.n else 0.0

    @property
    def base_rate(self) -> float:
        return self.base_hits / self.base_n if self.base_n else 0.0

    @property
    def rose(self) -> bool:
        return self.p_value < self.alpha

    def sentence(self) -> str:
        """"reflection rose from 0.2 % to 3.0 % (p = 0.004)" or "... : no rise detectable (p = 0.41)"."""
        counts = f"{self.hits}/{self.n} vs {self.base_hits}/{self.base_n} before training"
        if self.rose:
            return (f"{self.kind} rose from {self.base_rate:.1%} to {self.rate:.1%} (p = {self.p_value:.2g} < "
                    f"{self.alpha:g}; {counts})")
        return (f"{self.kind} {self.rate:.1%} against a base rate of {self.base_rate:.1%}: no rise detectable "
                f"(p = {self.p_value:.2g}; {counts})")


def compare_to_base(kind: str, hits: int, n: int, base_hits: int, base_n: int, alpha: float = 0.01) -> RateVsBase:
    """hits of n against the base rate's base_hits of base_n, by the one-sided Fisher exact test."""
    return RateVsBase(kind, hits, n, base_hits, base_n, fisher_greater(hits, n, base_hits, base_n), alpha)
