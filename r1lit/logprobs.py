"""Per-token log-probs (and entropy) of a causal LM without its full-vocabulary logits.

The usual path runs the model to logits ``[n, T, V]`` and takes a log-softmax: with Qwen's 151,936-token vocabulary,
16 completions of 1,024 tokens are 10 GB of float32 logits, kept for backward. Here the decoder runs to its last
hidden states ``[n, T, H]`` and the LM head is applied ``chunk_tokens`` tokens at a time inside an activation
checkpoint, so forward and backward each hold one chunk's logits ``[chunk, V]`` at a time. The LM head is called as
a module (not through its weight), so DeepSpeed ZeRO-3 still gathers it.

``lm_parts`` finds the decoder and head of a transformers causal LM; models whose logits are more than
``head(decoder(x))`` (soft-capping, scaling) are detected by ``matches_full_logits`` and keep the usual path.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


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


def _chunk_logps(head: nn.Module, hidden: Tensor, targets: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """hidden [c, H], targets [c] → (log p(target) [c], entropy [c]), float32, through one chunk's logits [c, V]."""
    logits = head(hidden).float() / temperature  # [c, V]
    lse = torch.logsumexp(logits, dim=-1)  # [c]
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    probs = torch.softmax(logits.detach(), dim=-1)  # entropy is a metric: no gradient through it
    entropy = lse.detach() - (probs * logits.detach()).sum(dim=-1)
    return picked, entropy


def head_logprobs(head: nn.Module, hidden: Tensor, targets: Tensor, temperature: float = 1.0,
                  chunk_tokens: int = 1024) -> tuple[Tensor, Tensor]:
    """Log-probs and entropies of ``targets`` under softmax(head(hidden) / temperature), ``chunk_tokens`` at a time.

    hidden: [n, T, H]; targets: [n, T]. Returns (logps [n, T] float32 with gradient, entropy [n, T] float32
    without). With gradients on, each chunk is checkpointed: its logits are recomputed in backward, not kept.
    """
    n, T = targets.shape
    flat_hidden, flat_targets = hidden.reshape(n * T, -1), targets.reshape(n * T)
    grad = torch.is_grad_enabled() and (hidden.requires_grad or any(p.requires_grad for p in head.parameters()))
    logps, entropies = [], []
    for start in range(0, n * T, chunk_tokens):
        h, t = flat_hidden[start:start + chunk_tokens], flat_targets[start:start + chunk_tokens]
        if grad:
            lp, ent = checkpoint(_chunk_logps, head, h, t, temperature, use_reentrant=False)
        else:
            lp, ent = _chunk_logps(head, h, t, temperature)
        logps.append(lp)
        entropies.append(ent)
    if not logps:
        empty = hidden.new_zeros((n, T), dtype=torch.float32)
        return empty, empty
    return torch.cat(logps).view(n, T), torch.cat(entropies).view(n, T)


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
