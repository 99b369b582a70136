"""Per-token log-probs (and entropy) of a causal LM without its full-vocabulary logits.

The usual path runs the model to logits ``[n, T, V]`` and takes a log-softmax: with Qwen's 151,936-token vocabulary,
16 completions of 1,024 tokens are 10 GB of float32 logits, kept for backward. Here the decoder runs to its last
hidden states ``[n, T, H]`` and the LM head is applied ``chunk_tokens`` tokens at a time, so forward and backward
each hold one chunk's logits ``[chunk, V]`` at a time: a plain linear head through ``HeadLogprobs`` (one autograd
node, its weight cast once per pass), any other head called as a module per chunk inside an activation checkpoint
(so DeepSpeed ZeRO-3, whose partitioned weight only the module's forward gathers, takes this route).

``lm_parts`` finds the decoder and head of a transformers causal LM; models whose logits are more than
``head(decoder(x))`` (soft-capping, scaling) are detected by ``matches_full_logits`` and keep the usual path.
``CompletionLogprobs`` is what the trainer calls: it picks the path once per model.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from r1lit.grpo.entropy import token_entropy
from r1lit.policy.lm_head import HeadLogprobs, plain_head_weight
from r1lit.policy.logit_kernels import LogitKernels, logit_stats, logits_grad

EntropyMode = Literal["none", "metric", "grad"]


def lm_parts(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """(decoder returning ``last_hidden_state``, LM head) of a transformers causal LM, or None if it has no such split."""
    get_decoder, get_head = getattr(model, "get_decoder", None), getattr(model, "get_output_embeddings", None)
    if get_decoder is None or get_head is None:
        return None
    try:
        decoder, head = get_decoder(), get_head()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or decoder is model or not isinstance(head, nn.Module):
        return None
    return decoder, head


def target_logprobs(logits: Tensor, targets: Tensor, entropy: EntropyMode = "none") -> tuple[Tensor, Tensor | None]:
    """log p(target) under softmax(logits), and the entropy when asked: the one place both are computed.

    logits: [..., V] float32, already divided by the temperature; targets: [...] token ids. Returns (logps [...],
    entropy [...] or None); the entropy carries a gradient only for ``"grad"`` (an entropy bonus)."""
    lse = torch.logsumexp(logits, dim=-1)  # [...]
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    if entropy == "none":
        return picked, None
    if entropy == "metric":
        logits, lse = logits.detach(), lse.detach()
    return picked, token_entropy(logits, lse)


class LogitsToLogprobs(torch.autograd.Function):
    """log p(target) under softmax(logits / T) from logits of any float dtype, with a backward that writes the
    logits' gradient g · (onehot(target) − softmax) / T in a few in-place passes over one float32 copy
    (``logit_kernels``).

    Autograd's own graph for the same formula (cast, divide, logsumexp, gather, subtract) keeps a float32 copy of
    the logits for backward and walks the [..., V] tensor about ten times there: with SmolLM2's 49,152-token
    vocabulary, most of the LM head's time on a CPU. Forward: logits [..., V], targets [...]; returns log-probs [...]
    float32 and, with ``with_entropy``, the entropies [...] (no gradient: the entropy bonus takes
    ``target_logprobs``)."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, temperature: float, with_entropy: bool):
        # [..., V] as given: a sliced batch of logits cannot be flattened without a copy of all of it
        picked, lse, entropy = logit_stats(logits, targets, 1.0 / temperature, with_entropy)  # [...] each
        ctx.save_for_backward(logits, targets, lse)
        ctx.temperature = temperature
        if with_entropy:
            ctx.mark_non_differentiable(entropy)
        return picked, entropy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor, _grad_entropy):
        logits, targets, lse = ctx.saved_tensors
        return logits_grad(logits, targets, lse, grad.float(), 1.0 / ctx.temperature), None, None, None


def logits_logprobs(logits: Tensor, targets: Tensor, temperature: float,
                    entropy: EntropyMode = "none") -> tuple[Tensor, Tensor | None]:
    """``target_logprobs`` of ``logits / temperature`` (logits [..., V] of any float dtype, targets [...]):
    through ``LogitsToLogprobs`` unless the entropy needs a gradient."""
    if entropy == "grad":
        return target_logprobs(logits.float() / temperature, targets, entropy)
    return LogitsToLogprobs.apply(logits, targets, temperature, entropy == "metric")


def _chunk_logps(head: nn.Module, hidden: Tensor, targets: Tensor, temperature: float,
                 entropy: EntropyMode = "none") -> tuple[Tensor, Tensor | None]:
    """hidden [c, H], targets [c] → (log p(target) [c], entropy [c] or None), float32, through one chunk's logits
    [c, V]."""
    return logits_logprobs(head(hidden), targets, temperature, entropy)  # logits [c, V]


def full_logprobs(logits: Tensor, targets: Tensor, temperature: float = 1.0, entropy: EntropyMode = "none",
                  chunk_rows: int = 4) -> tuple[Tensor, Tensor | None]:
    """``target_logprobs`` from a model's full logits [B, T, V] (any float dtype), ``chunk_rows`` sequences at a
    time in float32, so the extra memory is [chunk_rows, T, V] instead of a full copy. targets: [B, T].
    Returns ([B, T], [B, T] or None) float32."""
    logps, entropies = [], []
    for rows, ids in zip(logits.split(chunk_rows), targets.split(chunk_rows)):
        lp, h = logits_logprobs(rows, ids, temperature, entropy)  # [b, T] each
        logps.append(lp)
        entropies.append(h)
    return torch.cat(logps), (None if entropy == "none" else torch.cat(entropies))


def head_logprobs(head: nn.Module, hidden: Tensor, targets: Tensor, temperature: float = 1.0,
                  chunk_tokens: int = 1024, entropy: EntropyMode = "none",
                  kernels: LogitKernels | None = None) -> tuple[Tensor, Tensor | None]:
    """Log-probs of ``targets`` under softmax(head(hidden) / temperature), ``chunk_tokens`` at a time, and their
    entropies when asked (``"metric"``: without gradient; ``"grad"``: with it).

    hidden: [n, T, H]; targets: [n, T]. Returns (logps [n, T] float32 with gradient, entropy [n, T] float32 or
    None). A plain linear head goes through ``HeadLogprobs`` (its weight cast once, ``kernels``' math per chunk; a
    pass of one chunk keeps its logits for backward); other heads and the entropy's gradient call the head per
    chunk, each chunk checkpointed. Otherwise a chunk's logits are recomputed in backward, not kept.
    """
    n, T = targets.shape
    flat_hidden, flat_targets = hidden.reshape(n * T, hidden.shape[-1]), targets.reshape(n * T)
    weight = plain_head_weight(head)
    if weight is not None and entropy != "grad" and n * T > 0:
        logps, ent = HeadLogprobs.apply(flat_hidden, weight, flat_targets, temperature, chunk_tokens,
                                        entropy == "metric", kernels or LogitKernels())  # [n·T] each
        return logps.view(n, T), (None if ent is None else ent.view(n, T))
    grad = torch.is_grad_enabled() and (hidden.requires_grad or any(p.requires_grad for p in head.parameters()))
    logps, entropies = [], []
    for start in range(0, n * T, chunk_tokens):
        h, t = flat_hidden[start:start + chunk_tokens], flat_targets[start:start + chunk_tokens]
        if grad:
            lp, ent = checkpoint(_chunk_logps, head, h, t, temperature, entropy, use_reentrant=False)
        else:
            lp, ent = _chunk_logps(head, h, t, temperature, entropy)
        logps.append(lp)
        entropies.append(ent)
    if not logps:  # nothing to score, yet stay in the graph so backward still reaches every parameter (as logits would)
        empty = head(hidden).float().sum(dim=-1) * 0.0  # [n, T]
        return empty, (None if entropy == "none" else empty.detach())
    return torch.cat(logps).view(n, T), (None if entropy == "none" else torch.cat(entropies).view(n, T))


@torch.no_grad()
def matches_full_logits(model: nn.Module, vocab_probe: int = 8, atol: float = 1e-4) -> bool:
    """Whether head(decoder(x)) gives the model's own logits on a short probe (False for models that scale or
    soft-cap their logits after the head, or have no decoder/head split)."""
    parts = lm_parts(model)
    if parts is None:
        return False
    decoder, head = parts
    device = next(model.parameters()).device
    ids = torch.arange(1, vocab_probe + 1, device=device).unsqueeze(0)  # [1, probe]
    was_training = model.training
    model.eval()
    try:
        full = model(input_ids=ids, use_cache=False).logits.float()
        mine = head(decoder(input_ids=ids, use_cache=False).last_hidden_state).float()
    finally:
        model.train(was_training)
    return full.shape == mine.shape and bool(torch.allclose(full, mine, atol=atol, rtol=1e-4))


class CompletionLogprobs:
    """Log-probs (and entropies) of a batch's completion tokens under a model: through the chunked LM head where
    ``matches_full_logits`` says the model allows it (checked once per model), else through its full logits."""

    def __init__(self, temperature: float, chunk_tokens: int = 1024, chunked: bool = True,
                 kernels: LogitKernels | None = None):
        self.temperature, self.chunk_tokens, self.chunked = temperature, chunk_tokens, chunked
        self.kernels = kernels or LogitKernels()
        self._paths: dict[int, bool] = {}

    def uses_chunks(self, model: nn.Module) -> bool:
        if id(model) not in self._paths:
            self._paths[id(model)] = self.chunked and matches_full_logits(model)
        return self._paths[id(model)]

    def __call__(self, model: nn.Module, input_ids: Tensor, attention: Tensor, completion_len: int, width: int,
                 entropy: EntropyMode = "none") -> tuple[Tensor, Tensor | None]:
        """Log-probs of the first ``width`` completion tokens; input_ids/attention: [n, P + C] (prompt left-padded,
        C = ``completion_len``). Returns (logps [n, width] float32, entropies [n, width] float32 or None)."""
        cut = input_ids.shape[1] - completion_len + width
        input_ids, attention = input_ids[:, :cut], attention[:, :cut]  # [n, P + width]
        position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)  # as generate computes them for left padding
        targets = input_ids[:, input_ids.shape[1] - width:]  # [n, width]; not [:, -width:]: all tokens at width 0
        inputs = dict(input_ids=input_ids, attention_mask=attention, position_ids=position_ids, use_cache=False)
        if self.uses_chunks(model):
            decoder, head = lm_parts(model)
            hidden = decoder(**inputs).last_hidden_state  # [n, P + width, H]
            hidden = hidden[:, hidden.shape[1] - width - 1:-1]  # [n, width, H]: position t predicts token t
            return head_logprobs(head, hidden, targets, self.temperature, self.chunk_tokens, entropy, self.kernels)
        logits = model(**inputs, logits_to_keep=width + 1).logits[:, :-1]  # [n, width, V]
        return full_logprobs(logits, targets, self.temperature, entropy)
