"""The typed batch carried from generation to the loss, and the sampling settings that made it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from r1lit.errors import ConfigError


@dataclass
class SamplingConfig:
    """How completions are sampled. The same temperature scales the trainer's log-probs, so it is set once here."""

    temperature: float = 1.0
    """Softmax temperature for sampling and for the policy's log-probs in the loss."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p (1.0 = off)."""
    top_k: int = 0
    """Keep only the k most likely tokens (0 = off)."""
    min_p: float = 0.0
    """Drop tokens whose probability is below min_p times the top token's (0 = off)."""
    repetition_penalty: float = 1.0
    """Penalty on tokens already present (1.0 = off)."""
    max_tokens: int = 1024
    """Most tokens generated per completion (the recipe's max completion length)."""
    seed: int = 0
    """Base of the sampling seeds: each step and rank samples with a seed derived from (seed, step, rank)."""

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ConfigError(f"sampling.temperature must be > 0 for RL sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ConfigError(f"sampling.max_tokens must be >= 1, got {self.max_tokens}")


@dataclass
class Rollout:
    """N = B·G completions, ordered group by group (completion i belongs to prompt i // G).

    Prompts are left-padded and completions right-padded so that ``cat([prompt_ids, completion_ids], 1)`` is one
    sequence per row with the prompt ending where the completion starts.
    """

    prompt_ids: Tensor  # [N, P] long, left-padded
    prompt_mask: Tensor  # [N, P] long, 1 on real prompt tokens
    completion_ids: Tensor  # [N, C] long, right-padded
    completion_mask: Tensor  # [N, C] long, 1 up to and including the first EOS, 0 after
    texts: list[str]  # [N] decoded completions, special tokens removed
    truncated: Tensor  # [N] bool, True where no EOS came within max_tokens
    num_generations: int  # G
    sampler_logprobs: Tensor | None = None  # [N, C] float, the engine's log-probs of the sampled tokens; 0 where masked

    def __post_init__(self) -> None:
        n = self.prompt_ids.shape[0]
        if not (self.completion_ids.shape[0] == n == len(self.texts) == self.truncated.shape[0]):
            raise ValueError("Rollout fields disagree on the number of completions")
        if n % self.num_generations:
            raise ValueError(f"{n} completions are not a whole number of groups of {self.num_generations}")
        if self.sampler_logprobs is not None and not bool(
            torch.isfinite(self.sampler_logprobs.masked_select(self.completion_mask == 0)).all()
        ):
            raise ValueError("sampler_logprobs hold non-finite values on masked positions; build the rollout with "
                             "assemble_rollout, which sets them to 0")

    def sequences(self) -> tuple[Tensor, Tensor]:
        """Prompt and completion as one row each: (input_ids [N, P + C], attention_mask [N, P + C])."""
        return (torch.cat([self.prompt_ids, self.completion_ids], dim=1),
                torch.cat([self.prompt_mask, self.completion_mask], dim=1))

    @property
    def completion_lengths(self) -> Tensor:
        """[N] number of tokens in each completion (EOS included)."""
        return self.completion_mask.sum(dim=1)

    def to(self, device: torch.device | str) -> "Rollout":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Rollout(
            prompt_ids=move(self.prompt_ids),
            prompt_mask=move(self.prompt_mask),
            completion_ids=move(self.completion_ids),
            completion_mask=move(self.completion_mask),
            texts=self.texts,
            truncated=move(self.truncated),
            num_generations=self.num_generations,
            sampler_logprobs=move(self.sampler_logprobs),
        )


def completion_mask_from_eos(completion_ids: Tensor, eos_ids: list[int]) -> tuple[Tensor, Tensor]:
    """Mask that keeps tokens up to and including the first EOS of each row.

    completion_ids: [N, C]. Returns (mask [N, C] long, truncated [N] bool). With C = 0 (an engine that returned
    no tokens at all) every completion is empty and none counts as truncated.
    """
    if completion_ids.shape[1] == 0:
        return torch.zeros_like(completion_ids), torch.zeros(completion_ids.shape[0], dtype=torch.bool, device=completion_ids.device)
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))  # [N, C]
    has_eos = is_eos.any(dim=1)  # [N]
    first = torch.where(has_eos, is_eos.float().argmax(dim=1), torch.full_like(has_eos, completion_ids.shape[1], dtype=torch.long))
    positions = torch.arange(completion_ids.shape[1], device=completion_ids.device).unsqueeze(0)  # [1, C]
    mask = (positions <= first.unsqueeze(1)).long()
    return mask, ~has_eos


def assemble_rollout(
    prompt_ids: list[list[int]], n: int, completion_ids: Tensor, sampler_logprobs: Tensor | None,
    eos_ids: list[int], pad_id: int, tokenizer, lengths: Tensor | None = None,
) -> Rollout:
    """What every engine does with raw samples: cut each completion after its first EOS, decode it, and pair it
    with its left-padded prompt. completion_ids: [N, C] ordered group by group; sampler_logprobs: [N, C] or None,
    set to 0 after the cut (selected, not multiplied: a truncating sampler's -inf on padding times 0 is NaN);
    lengths: [N] tokens each sample really has, for engines whose samples can end without EOS before the widest
    one (vLLM at max_model_len): the padding after them must not count as completion tokens."""
    completion_mask, truncated = completion_mask_from_eos(completion_ids, eos_ids)  # [N, C], [N]
    if lengths is not None:
        positions = torch.arange(completion_ids.shape[1]).unsqueeze(0)  # [1, C]
        completion_mask = completion_mask * (positions < lengths.unsqueeze(1)).long()
    completion_ids = completion_ids.masked_fill(completion_mask == 0, pad_id)
    texts = tokenizer.batch_decode(
        [row[: int(m.sum())] for row, m in zip(completion_ids, completion_mask)], skip_special_tokens=True
    )
    p_ids, p_mask = left_pad([p for p in prompt_ids for _ in range(n)], pad_id)  # [N, P]
    return Rollout(
        prompt_ids=p_ids, prompt_mask=p_mask, completion_ids=completion_ids, completion_mask=completion_mask,
        texts=texts, truncated=truncated, num_generations=n,
        sampler_logprobs=None if sampler_logprobs is None else torch.where(completion_mask.bool(), sampler_logprobs, 0.0),
    )


def rollout_from_samples(
    prompt_ids: list[list[int]], n: int, sequences: list[list[int]], logprobs: list[list[float]],
    eos_ids: list[int], pad_id: int, tokenizer,
) -> Rollout:
    """A rollout from per-sample token lists and their sampler log-probs (what vLLM returns, in process or over
    HTTP), ordered group by group: padded into [N, C] tensors, then ``assemble_rollout``."""
    width = max(1, max((len(s) for s in sequences), default=0))
    completion_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)  # [N, C]
    sampler_logprobs = torch.zeros((len(sequences), width), dtype=torch.float32)  # [N, C]
    for i, (ids, lps) in enumerate(zip(sequences, logprobs)):
        completion_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        sampler_logprobs[i, : len(lps)] = torch.tensor(lps, dtype=torch.float32)
    lengths = torch.tensor([len(s) for s in sequences])  # [N]
    return assemble_rollout(prompt_ids, n, completion_ids, sampler_logprobs, eos_ids, pad_id, tokenizer, lengths)


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Left-pad token lists into (ids [N, P], mask [N, P])."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if seq:
            ids[i, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[i, width - len(seq):] = 1
    return ids, mask
