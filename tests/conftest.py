"""Shared fixtures: a tiny Qwen2-shaped model and a BPE tokenizer built here, on CPU, with nothing downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models on 2 cores run far faster single-threaded
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from helpers import build_tiny_model  # noqa: E402 (after the environment above)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from r1lit.policy.loading import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


@pytest.fixture(scope="session")
def vllm_model_dir(tmp_path_factory) -> Path:
    # vLLM's CPU attention needs head_dim >= 32: hidden 64 with 2 heads
    return build_tiny_model(tmp_path_factory.mktemp("tiny-vllm"), hidden_size=64, num_heads=2)
