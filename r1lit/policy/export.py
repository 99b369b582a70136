"""Hugging Face folders from a policy or from a checkpoint (Lightning ``.ckpt`` file or DeepSpeed checkpoint folder).

``r1lit export CHECKPOINT OUT_DIR`` writes ``save_pretrained`` weights (safetensors), config, tokenizer and generation
config, loadable by ``AutoModelForCausalLM`` and vLLM. The architecture and tokenizer come from the run's
``model_name_or_path`` (stored in the checkpoint's hyper-parameters), the weights from the checkpoint.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from r1lit.errors import ConfigError
from r1lit.policy.loading import load_policy, load_tokenizer

PREFIX = "policy."  # GRPOModule keeps the causal LM as its ``policy`` child

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def save_pretrained(policy: nn.Module, tokenizer, out_dir: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write model, tokenizer and generation config into ``out_dir`` via a temporary folder, so an interrupted export
    never leaves a half-written folder under the final name."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = policy if dtype is None else _cast_copy(policy, dtype)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _cast_copy(policy: nn.Module, dtype: torch.dtype) -> nn.Module:
    import copy

    return copy.deepcopy(policy).to(dtype)


def checkpoint_contents(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(policy state dict without the ``policy.`` prefix, hyper-parameters) of a Lightning or DeepSpeed checkpoint."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no checkpoint at {path}")
    if path.is_dir():  # DeepSpeed: shards + client state; gather the full fp32 weights
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        states = sorted(path.rglob("*model_states.pt"))
        if not states:
            raise ConfigError(f"{path} is a folder but not a DeepSpeed checkpoint (no *model_states.pt inside)")
        client = torch.load(states[0], map_location="cpu", weights_only=False)
        state, hparams = get_fp32_state_dict_from_zero_checkpoint(str(path)), client.get("hyper_parameters", {})
    else:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        if "state_dict" not in checkpoint:
            raise ConfigError(f"{path} is not a Lightning checkpoint (no state_dict); pass a .ckpt written by r1lit fit")
        state, hparams = checkpoint["state_dict"], checkpoint.get("hyper_parameters", {})
    policy = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    if not policy:
        raise ConfigError(f"{path} holds no '{PREFIX}*' weights: it was not written by r1lit's GRPOModule")
    return policy, dict(hparams)


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, model_name_or_path: str | None = None,
                      dtype: str | None = None) -> Path:
    """Rebuild the policy from the run's base model and the checkpoint's weights, then ``save_pretrained`` it."""
    state, hparams = checkpoint_contents(checkpoint)
    base = model_name_or_path or hparams.get("model_name_or_path")
    if not base:
        raise ConfigError(f"{checkpoint} does not record model_name_or_path; pass --model with the run's base model")
    policy = load_policy(base)
    missing, unexpected = policy.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in _tied_names(policy)]
    if missing or unexpected:
        raise ConfigError(
            f"the checkpoint's weights do not fit {base}: missing {missing[:5]}, unexpected {unexpected[:5]}; "
            "pass --model with the base model the run trained"
        )
    return save_pretrained(policy, load_tokenizer(base), out_dir, DTYPES[dtype] if dtype else None)


def _tied_names(model: nn.Module) -> set[str]:
    """Parameter names that alias another (a tied lm_head): absent from a checkpoint that saved the shared tensor once."""
    seen, tied = {}, set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            tied.add(name)
        seen[id(tensor)] = name
    return tied


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="r1lit export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .ckpt file, or a DeepSpeed checkpoint folder (e.g. .../checkpoints/last.ckpt)")
    parser.add_argument("out_dir", help="folder to write (replaced if it exists)")
    parser.add_argument("--model", default=None, help="base model (default: the run's model_name_or_path)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="cast the weights (default: as trained)")
    options = parser.parse_args(args)
    out = export_checkpoint(options.checkpoint, options.out_dir, options.model, options.dtype)
    print(f"[r1lit] exported {options.checkpoint} -> {out}")
