"""Validation that does not reuse the training reward: pass@k and maj@k over k sampled answers per held-out problem,
graded by answer equivalence alone (math-verify on the extracted final answer; format plays no part).

- pass@k: the chance that at least one of k samples is right, estimated without bias from n >= k samples of which
  c are right: 1 − C(n − c, k) / C(n, k) (Chen et al., 2021, the Codex paper).
- maj@k: whether the most frequent final answer among the first k samples is right (self-consistency). Answers
  vote by their text with spaces and surrounding ``$`` removed; ties go to the answer seen first; samples without
  an answer do not vote, and a problem with no votes counts as wrong.
"""

from __future__ import annotations

from collections import Counter

from r1lit.errors import ConfigError


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 − C(n−c, k)/C(n, k), computed as a stable product."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):  # C(n−c, k)/C(n, k) = Π_{i=n−c+1}^{n} (1 − k/i)
        miss *= 1.0 - k / i
    return 1.0 - miss


def vote_key(answer: str | None) -> str | None:
    """The text an answer votes with: no whitespace, no surrounding ``$``."""
    if answer is None:
        return None
    key = "".join(answer.split()).strip("$")
    return key or None


def majority_correct(answers: list[str | None], correct: list[float], k: int) -> float:
    """maj@k of one problem: 1.0 if the most frequent answer among the first k samples is right, else 0.0.
    answers: extracted final answers (None = none); correct: 1.0/0.0 per sample, same order."""
    keys = [vote_key(a) for a in answers[:k]]
    votes = Counter(key for key in keys if key is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    winner = next(key for key in keys if key is not None and votes[key] == top)  # first seen among the tied
    return float(correct[keys.index(winner)])


class PassAtK:
    """Sample ``n`` answers per held-out problem and log ``val/pass@k`` and ``val/maj@k`` for each k in ``k``.
    ``val/accuracy`` and ``val/reward`` then come from each problem's first sample (still one sample, pass@1)."""

    def __init__(self, n: int = 8, k: list[int] = [1, 4, 8]):  # noqa: B006 (jsonargparse shows the default)
        """
        Args:
            n: samples per problem (n >= every k; more samples make the pass@k estimate less noisy).
            k: the k values to log pass@k and maj@k for.
        """
        if n < 1 or not k or any(not 1 <= x <= n for x in k):
            raise ConfigError(f"PassAtK needs n >= 1 and every k in 1..n, got n={n}, k={k}")
        self.n, self.k = n, sorted(set(k))

    def metrics(self, answers: list[str | None], correct: list[float]) -> dict[str, float]:
        """Mean pass@k and maj@k over problems. answers/correct: [B·n], problem by problem."""
        if len(answers) % self.n:
            raise ValueError(f"{len(answers)} samples are not a whole number of problems × n={self.n}")
        problems = len(answers) // self.n
        out = {}
        for k in self.k:
            passed = majority = 0.0
            for b in range(problems):
                rows = slice(b * self.n, (b + 1) * self.n)
                passed += pass_at_k(self.n, int(sum(c >= 1.0 for c in correct[rows])), k)
                majority += majority_correct(answers[rows], correct[rows], k)
            out[f"pass@{k}"], out[f"maj@{k}"] = passed / problems, majority / problems
        return out
