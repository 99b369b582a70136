"""Hugging Face folders from a policy or from a checkpoint (Lightning ``.ckpt`` file or DeepSpeed checkpoint folder).

``r1lit export CHECKPOINT OUT_DIR`` writes ``save_pretrained`` weights (safetensors), config, tokenizer and generation
config, loadable by ``AutoModelForCausalLM`` and vLLM. The architecture and tokenizer come from the run's
``model_name_or_path`` (stored in the checkpoint's hyper-parameters), the weights from the checkpoint.
An export deletes nothing it did not write: ``OUT_DIR`` must be new, empty or a previous export (``--overwrite``
replaces any other folder), never one that holds the checkpoint; the files go to a temporary sibling renamed onto
``OUT_DIR`` at the end.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from r1lit.errors import ConfigError
from r1lit.policy.loading import load_policy, load_tokenizer
from r1lit.training.checkpoints import checkpoint_files, is_complete, newest

PREFIX = "policy."  # GRPOModule keeps the causal LM as its ``policy`` child

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


MARKER = "r1lit-export.json"  # written last into every export: what wrote the folder, and its files


def save_pretrained(policy: nn.Module, tokenizer, out_dir: str | Path, dtype: torch.dtype | None = None,
                    source: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write model, tokenizer and generation config into ``out_dir``: into a temporary sibling first, renamed onto
    ``out_dir`` at the end, so an interrupted or failed export leaves no half-written folder and nothing else changes.
    An existing ``out_dir`` is replaced only when it is empty or a previous export (or with ``overwrite``), and never
    when it holds ``source``."""
    out = Path(out_dir)
    check_out_dir(out, source, overwrite)
    tmp = out.with_name(f".{out.name}.export-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model = policy if dtype is None else _cast_copy(policy, dtype)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp)
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        (tmp / MARKER).write_text(json.dumps({"source": str(source) if source else None, "files": files}, indent=1))
        if out.exists():
            old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def check_out_dir(out: Path, source: str | Path | None, overwrite: bool) -> None:
    """Refuse a folder that holds the checkpoint being exported, and a non-empty folder that no export wrote."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"export folder {out} is a file; name a folder to write")
    if source is not None and out.is_dir():
        src = Path(source).resolve()
        if src == out.resolve() or out.resolve() in src.parents:
            raise ConfigError(f"export folder {out} holds the checkpoint being exported ({source}); name a new folder, "
                              "e.g. {out}/hf".replace("{out}", str(out)))
    if not out.is_dir() or not any(out.iterdir()) or overwrite or is_export(out):
        return
    raise ConfigError(f"export folder {out} is not empty and was not written by r1lit export; name a new or empty "
                      "folder, or pass --overwrite to replace it")


SAVED_FILES = ("config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer*",
               "special_tokens_map.json", "added_tokens.json", "chat_template.*", "vocab.*", "merges.txt")
"""What ``save_pretrained`` of a causal LM and its tokenizer writes: an export without a marker holds only these."""


def is_export(folder: Path) -> bool:
    """A folder holding only what an export wrote (the files its marker lists, or, without a marker, only files
    that ``save_pretrained`` writes): safe to replace."""
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} - {MARKER}
    try:
        listed = set(json.loads((folder / MARKER).read_text())["files"])
    except FileNotFoundError:
        return bool(present) and all("/" not in f and any(fnmatch.fnmatch(f, g) for g in SAVED_FILES) for f in present)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return present <= listed


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
        if not is_complete(path):
            beside = newest([p for p in checkpoint_files(path.parent) if p.resolve() != path.resolve()])
            raise ConfigError(f"{path} is truncated or not a checkpoint (not a complete torch.save archive)"
                              + (f"; the intact checkpoint beside it is {beside}" if beside else ""))
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:  # noqa: BLE001 - a damaged archive raises many types
            raise ConfigError(f"{path} cannot be read as a checkpoint ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''})") from None
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            raise ConfigError(f"{path} is not a Lightning checkpoint (no state_dict); pass a .ckpt written by r1lit fit")
        state, hparams = checkpoint["state_dict"], checkpoint.get("hyper_parameters", {})
    policy = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    if not policy:
        raise ConfigError(f"{path} holds no '{PREFIX}*' weights: it was not written by r1lit's GRPOModule")
    return policy, dict(hparams)


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, model_name_or_path: str | None = None,
                      dtype: str | None = None, overwrite: bool = False) -> Path:
    """Rebuild the policy from the run's base model and the checkpoint's weights, then ``save_pretrained`` it."""
    check_out_dir(Path(out_dir), checkpoint, overwrite)  # before minutes of loading
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
    return save_pretrained(policy, load_tokenizer(base), out_dir, DTYPES[dtype] if dtype else None,
                           source=checkpoint, overwrite=overwrite)


def _tied_names(model: nn.Module) -> set[str]:
    """Parameter names that alias another (a tied lm_head): absent from a checkpoint that saved the shared tensor once."""
    seen, tied = {}, set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            tied.add(name)
        seen[id(tensor)] = name
    return tied


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ConfigError(f"r1lit export: {message}; see r1lit export --help")


def main(args: list[str] | None = None) -> None:
    parser = _Parser(prog="r1lit export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .ckpt file, or a DeepSpeed checkpoint folder (e.g. .../checkpoints/last.ckpt)")
    parser.add_argument("out_dir", help="folder to write: new, empty, or a previous export (which it replaces)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty folder that r1lit export did not write (never one holding CHECKPOINT)")
    parser.add_argument("--model", default=None, help="base model (default: the run's model_name_or_path)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="cast the weights (default: as trained)")
    options = parser.parse_args(args)
    out = export_checkpoint(options.checkpoint, options.out_dir, options.model, options.dtype, options.overwrite)
    print(f"[r1lit] exported {options.checkpoint} -> {out}")
