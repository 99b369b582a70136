"""Compiling the policy's decoder layers with torch.compile (``model.policy.compile_layers``).

Each decoder layer gets ``nn.Module.compile(dynamic=True)``: the norms, rotary embedding, SwiGLU, residual adds and
autocast's casts around the matmuls become fused kernels, while parameter names, state dicts, checkpoints and the
weights pushed to the engine stay those of the plain model. All layers run the same code, so dynamo traces it once
and every layer reuses the graph (one for the trained pass, one for the no-grad passes); dynamic shapes keep it
across the micro-batches' changing rows and lengths. Passes that carry a KV cache (HF generation) run eager: the
cache's per-layer index would make dynamo recompile for every layer.
"""

from __future__ import annotations

import torch
from torch import nn

from r1lit.errors import ConfigError


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of decoder layers (``get_decoder().layers`` of a transformers causal LM)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ConfigError(f"model.policy.compile_layers: {type(model).__name__} has no decoder layer stack "
                          "(get_decoder().layers) to compile; set compile_layers: false")
    return layers


def compile_decoder_layers(model: nn.Module) -> int:
    """Compile each decoder layer in place (compiled at its first call); returns how many."""
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def check_compile_zero_stage(stage: int) -> None:
    """ZeRO-3 gathers each layer's parameters in hooks around its forward, which a compiled layer would trace
    into its graph; that combination has not been run, so it is refused."""
    if stage == 3:
        raise ConfigError("model.policy.compile_layers is not supported with DeepSpeed ZeRO stage 3 (its parameter "
                          "gathering hooks run inside each layer's forward): set compile_layers: false, or use "
                          "ZeRO-2 (configs/deepspeed/zero2.json)")


def eager_layers():
    """Context in which compiled layers run their plain forward (for passes with a KV cache)."""
    return torch.compiler.set_stance("force_eager")
