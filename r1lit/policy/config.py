"""PolicyConfig: how the policy (and its frozen reference) is loaded and run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from r1lit.errors import ConfigError


@dataclass(frozen=True)
class PolicyConfig:
    """Loading and running the policy: dtype, attention kernel, memory savers, dropout, the reference's dtype."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = None
    """dtype the policy (and its reference) is loaded in (transformers' ``dtype``): None = float32 weights (train in
    ``bf16-mixed`` with them); ``bfloat16`` halves the weights' memory (pure bf16 training); ``auto`` = the
    checkpoint's own dtype."""
    attn_implementation: str | None = None
    """transformers' attention kernel (``sdpa``, ``eager``, ``flash_attention_2`` where installed); None =
    transformers' default. On a CPU under bf16-mixed with short rows, ``eager`` is faster (its matmuls run in bf16;
    the CPU SDPA kernel does not gain from bf16) but keeps each layer's [rows, heads, L, L] probabilities for
    backward (docs/benchmarks.md, "Attention kernels on CPU")."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory."""
    compile_layers: bool = False
    """Compile each decoder layer of the policy and its reference with torch.compile (dynamic shapes, one graph
    shared by all layers): the elementwise work around the matmuls (norms, rotary embedding, SwiGLU, autocast's
    casts) runs fused and fewer intermediates are kept. Costs a compile in the first step (~20 s for SmolLM2-135M on
    a 2-core CPU; seconds when torch's compile cache already holds it); SmolLM2's optimisation phase then takes 8 %
    less time and its peak memory 14 % less (docs/benchmarks.md, "Compiled decoder layers"). HF generation runs the
    layers eager. Not with ZeRO-3."""
    compile_logprobs: bool = False
    """Compile the LM head's per-chunk log-prob math (logsumexp, entropy and the logits' gradient over the
    vocabulary) with torch.compile: each becomes one or two fused passes over a chunk's logits instead of several.
    Applies to plain linear heads (``HeadLogprobs``); the full-logits path and the entropy bonus stay eager.
    Costs a few seconds of compile at the first step (none when torch's compile cache already holds it);
    docs/shared-prefix.md, "The LM head's log-probs", has its measured share."""
    disable_dropout: bool = True
    """Turn dropout off in the policy and the reference (TRL's ``disable_dropout``). With it on, log-probs of the
    same weights differ between passes: step 1's ``kl`` is not 0 and the ratio is not 1."""
    logprob_chunk_tokens: int | None = 256
    """Tokens per chunk when the LM head turns hidden states into log-probs: the full vocabulary's logits exist
    for one chunk at a time (forward and backward), never for a whole micro-batch. A pass that fits in one chunk
    keeps its logits for backward (no recompute): raise it on small rollouts where memory allows. Models whose
    logits are more than head(decoder(x)) keep their full logits; None = always the full logits (for comparisons)."""
    shared_prefix: bool = True
    """Compute each distinct prompt once per micro-batch: its G completions attend to one copy of its keys and
    values in a packed row (same log-probs and gradients as computing every completion with its own copy of the
    prompt, ``docs/shared-prefix.md``). Models or kernels that cannot take the packed layout fall back, with one
    warning; False = always one row per completion (for comparisons)."""
    bf16_reference: bool = True
    """Under ``bf16-mixed``, keep the frozen reference (``loss.beta`` > 0) in bfloat16: half its memory; its
    matmuls already ran in bf16 under autocast (the mean KL moves by < 2 %, tests/unit/policy/test_logprobs.py)."""

    def __post_init__(self):
        if self.logprob_chunk_tokens is not None and self.logprob_chunk_tokens < 1:
            raise ConfigError(f"model.policy.logprob_chunk_tokens must be >= 1 (or null for full logits), got "
                              f"{self.logprob_chunk_tokens}")
