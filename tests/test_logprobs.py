"""Log-probs through the LM head in chunks equal the full-logits path: values, entropies and gradients."""

import math

import pytest
import torch

from r1lit.logprobs import head_logprobs, lm_parts, matches_full_logits
from r1lit.losses import selective_log_softmax
from r1lit.metrics import token_entropy


def test_head_logprobs_by_hand():
    """Two tokens, a 2-word vocabulary: head weights [[1, 0], [0, 1]] on hidden (ln 3, 0) give p = (3/4, 1/4)."""
    head = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    hidden = torch.tensor([[[math.log(3.0), 0.0], [math.log(3.0), 0.0]]])  # [1, 2, 2]
    logps, entropy = head_logprobs(head, hidden, torch.tensor([[0, 1]]), chunk_tokens=1)
    assert logps.tolist()[0] == pytest.approx([math.log(0.75), math.log(0.25)], abs=1e-6)
    assert entropy.tolist()[0] == pytest.approx([0.5623351] * 2, abs=1e-6)  # -(3/4 ln 3/4 + 1/4 ln 1/4)


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_path_equals_full_logits_in_value_and_gradient(tiny_model_dir, chunk):
    """Guards the memory path against the reference path: fp32 values within 1e-6 and the same gradients, for
    chunks smaller than a row, across rows, and larger than everything."""
    from r1lit.models import load_policy

    torch.manual_seed(0)
    model = load_policy(str(tiny_model_dir)).float()
    ids = torch.randint(5, 300, (3, 11))
    targets = ids[:, 1:]
    temperature = 0.7

    logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
    reference = selective_log_softmax(logits, targets, temperature)
    ref_entropy = token_entropy(logits, temperature)
    (reference * torch.linspace(0.5, 1.5, reference.numel()).view_as(reference)).sum().backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    decoder, head = lm_parts(model)
    hidden = decoder(input_ids=ids, use_cache=False).last_hidden_state[:, :-1]
    logps, entropy = head_logprobs(head, hidden, targets, temperature, chunk_tokens=chunk)
    (logps * torch.linspace(0.5, 1.5, logps.numel()).view_as(logps)).sum().backward()
    assert (logps - reference).abs().max() < 1e-6
    assert (entropy - ref_entropy).abs().max() < 1e-5
    for name, grad in ref_grads.items():
        mine = dict(model.named_parameters())[name].grad
        assert torch.allclose(mine, grad, atol=1e-6, rtol=1e-4), name


def test_models_whose_logits_are_more_than_the_head_keep_the_full_path(tiny_model_dir):
    """A model that scales its logits after the head (as some do) must not be read through head(decoder(x))."""
    from r1lit.models import load_policy

    model = load_policy(str(tiny_model_dir)).float()
    assert matches_full_logits(model)
    real_forward = model.forward

    def scaled(*args, **kwargs):
        out = real_forward(*args, **kwargs)
        out.logits = out.logits * 2.0
        return out

    model.forward = scaled
    assert not matches_full_logits(model)
