"""Compiled decoder layers (``model.policy.compile_layers``): the same log-probs, entropies and gradients as the eager
layers on the shared-prefix path (with and without gradient checkpointing, no-grad passes, a second batch of other
shapes), HF generation unchanged, the names that checkpoints and weight pushes use unchanged, a fit's first steps
equal, and the combinations that cannot work refused with the fix."""

from __future__ import annotations

import copy

import pytest
import torch

from r1lit.errors import ConfigError
from r1lit.policy.compile import check_compile_zero_stage, compile_decoder_layers, decoder_layers
from r1lit.policy.config import PolicyConfig
from r1lit.policy.logprobs import CompletionLogprobs
from r1lit.policy.shared_prefix import SharedPrefixLogprobs
from test_shared_prefix import _assert_same, _assert_same_fits, _batch, _fit, _model, _run, _tiny_llama


def _graphs() -> int:
    """Graphs dynamo has compiled in this process (torch 2.13's ``torch._dynamo.utils.counters``)."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def _compiled_twin(model):
    twin = copy.deepcopy(model)
    assert compile_decoder_layers(twin) == len(decoder_layers(model))
    return twin


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_compiled_layers_give_the_eager_values_and_gradients(tiny_model_dir, family):
    """fp32, eager attention's additive mask: log-probs within 1e-5 of the eager layers', entropies within 1e-4,
    gradients within 1e-5 + 1e-4 relative (inductor fuses in another summation order), for two batches of
    different shapes and for the no-grad pass a reference makes. Every layer and both shapes share one graph; the
    no-grad pass adds one (the shared-prefix probe runs the plain layers)."""
    model = _model(family, tiny_model_dir, "eager")
    twin = _compiled_twin(model)
    scorer = SharedPrefixLogprobs(0.7, chunk_tokens=4)
    before = _graphs()
    for seed, width in [(0, 5), (1, 3)]:
        ids, attention = _batch(seed)
        _assert_same(_run(scorer, twin, ids, attention, width, "metric"),
                     _run(scorer, model, ids, attention, width, "metric"), atol=1e-5, grad_atol=1e-5)
        assert _graphs() == before + 1  # compiled at the first batch, and no more for the second's shapes
    ids, attention = _batch(2)
    with torch.no_grad():
        mine, _ = scorer(twin.eval(), ids, attention, 5, 5)
        theirs, _ = scorer(model.eval(), ids, attention, 5, 5)
    assert _graphs() == before + 2
    real = attention[:, 6:].float()
    assert ((mine - theirs) * real).abs().max() <= 1e-5
    assert [n for n, _ in twin.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert twin.state_dict().keys() == model.state_dict().keys()  # checkpoints and weight pushes see the plain names


@pytest.mark.slow
def test_compiled_layers_under_gradient_checkpointing_and_bf16_autocast(tiny_model_dir):
    """Checkpointing recomputes each compiled layer in backward: values and gradients still equal the eager layers'
    (fp32); under bf16 autocast both round differently, within the shared-prefix path's own bf16 tolerance."""
    model = _model("qwen2", tiny_model_dir)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    twin = _compiled_twin(model)
    assert twin.is_gradient_checkpointing
    ids, attention = _batch(seed=1)
    scorer = SharedPrefixLogprobs(1.0, chunk_tokens=8)
    _assert_same(_run(scorer, twin, ids, attention, 5, "metric"), _run(scorer, model, ids, attention, 5, "metric"),
                 atol=1e-5, grad_atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mine = _run(scorer, twin, ids, attention, 5, "none")
        theirs = _run(CompletionLogprobs(1.0), model, ids, attention, 5, "none")
    assert (mine[0] - theirs[0]).abs().max() < 0.005
    flat = lambda grads: torch.cat([g.flatten().float() for g in grads.values()])  # noqa: E731
    assert torch.nn.functional.cosine_similarity(flat(mine[2]), flat(theirs[2]), dim=0) > 0.9999


def test_hf_generation_runs_the_compiled_layers_eager(tiny_model_dir, tiny_tokenizer):
    """HF generate carries a KV cache whose per-layer index would make every layer recompile: it runs the plain
    layers, sampling the same tokens and log-probs as the uncompiled model for the same seed."""
    from r1lit.policy.loading import load_policy
    from r1lit.rollout import SamplingConfig
    from r1lit.rollout.hf import HFEngine

    model = load_policy(str(tiny_model_dir))
    twin = _compiled_twin(model)
    prompts = [tiny_tokenizer("What is 2 + 3?")["input_ids"], tiny_tokenizer("Add 7 and 8")["input_ids"]]
    sampling = SamplingConfig(max_tokens=10, temperature=1.0)
    out, before = [], _graphs()
    for m in (twin, model):
        engine = HFEngine(return_logprobs=True)
        engine.bind(m, tiny_tokenizer)
        out.append(engine.generate(prompts, n=3, sampling=sampling, seed=5))
    assert _graphs() == before  # nothing compiled
    assert torch.equal(out[0].completion_ids, out[1].completion_ids)
    assert torch.equal(out[0].sampler_logprobs, out[1].sampler_logprobs)
    assert out[0].completion_ids.numel() > 0


@pytest.mark.slow
def test_a_fit_with_compiled_layers_matches_the_eager_fit(tiny_model_dir):
    """Three GRPO steps (μ = 2, KL to a compiled reference, HF generation): each optimizer step's gradients and the
    logged loss, KL and entropy equal the eager fit's within fp32 fusion noise."""
    mine = _fit(tiny_model_dir, shared=True, policy=PolicyConfig(compile_layers=True, attn_implementation="eager"))
    theirs = _fit(tiny_model_dir, shared=True, policy=PolicyConfig(attn_implementation="eager"))
    _assert_same_fits(mine, theirs, rtol=1e-3, atol=1e-5)
    assert mine.metrics[-1]["kl"] > 0


def test_what_cannot_be_compiled_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="ZeRO stage 3.*compile_layers: false"):
        check_compile_zero_stage(3)
    check_compile_zero_stage(2)  # ZeRO-2 keeps whole weights on every rank: nothing to gather in a layer
    check_compile_zero_stage(0)

    class NoStack(torch.nn.Module):
        def get_decoder(self):
            return torch.nn.Linear(2, 2)

    with pytest.raises(ConfigError, match="NoStack has no decoder layer stack.*compile_layers: false"):
        compile_decoder_layers(NoStack())
    assert len(decoder_layers(_tiny_llama())) == 1
