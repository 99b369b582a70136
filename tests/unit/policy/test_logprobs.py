"""Log-probs through the LM head in chunks equal the full-logits path: values, entropies and gradients."""

import math

import pytest
import torch

from r1lit.policy.logprobs import (full_logprobs, head_logprobs, lm_parts, logits_logprobs, matches_full_logits,
                                   target_logprobs)


def test_head_logprobs_by_hand():
    """Two tokens, a 2-word vocabulary: head weights [[1, 0], [0, 1]] on hidden (ln 3, 0) give p = (3/4, 1/4)."""
    head = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    hidden = torch.tensor([[[math.log(3.0), 0.0], [math.log(3.0), 0.0]]])  # [1, 2, 2]
    logps, entropy = head_logprobs(head, hidden, torch.tensor([[0, 1]]), chunk_tokens=1, entropy="metric")
    assert logps.tolist()[0] == pytest.approx([math.log(0.75), math.log(0.25)], abs=1e-6)
    assert entropy.tolist()[0] == pytest.approx([0.5623351] * 2, abs=1e-6)  # -(3/4 ln 3/4 + 1/4 ln 1/4)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_logits_to_logprobs_gradient_by_hand(temperature):
    """logits (2 ln 3, 0) at T = 2 are z = (ln 3, 0), p = (3/4, 1/4); d log p(0) / d logits = (onehot − p) / T =
    (1/8, −1/8). At T = 1, logits (ln 3, 0): (1/4, −1/4). An upstream gradient of 2 doubles it."""
    logits = torch.tensor([[temperature * math.log(3.0), 0.0]], requires_grad=True)
    logps, entropy = logits_logprobs(logits, torch.tensor([0]), temperature, "metric")
    assert logps.tolist() == pytest.approx([math.log(0.75)], abs=1e-6)
    assert entropy.tolist() == pytest.approx([0.5623351], abs=1e-6) and not entropy.requires_grad
    (2 * logps).sum().backward()
    assert logits.grad.tolist()[0] == pytest.approx([0.5 / temperature, -0.5 / temperature], abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logits_to_logprobs_equals_autograd_of_the_formula(dtype, temperature):
    """The hand-written backward against autograd through ``target_logprobs`` (the formula itself), on [2, 3, 50]
    logits in float32 and bfloat16, with an uneven upstream gradient; the gradient comes back in the logits' dtype
    and the input is left as it was."""
    torch.manual_seed(0)
    raw = (3 * torch.randn(2, 3, 50)).to(dtype)
    targets = torch.randint(0, 50, (2, 3))
    upstream = torch.linspace(-1.0, 2.0, 6).view(2, 3)
    mine_in, ref_in = raw.clone().requires_grad_(True), raw.clone().requires_grad_(True)
    mine, mine_entropy = logits_logprobs(mine_in, targets, temperature, "metric")
    ref, ref_entropy = target_logprobs(ref_in.float() / temperature, targets, "metric")
    (mine * upstream).sum().backward()
    (ref * upstream).sum().backward()
    assert torch.equal(mine_in.detach(), raw)
    assert mine.dtype == torch.float32 and mine_in.grad.dtype == dtype
    torch.testing.assert_close(mine, ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(mine_entropy, ref_entropy, atol=1e-5, rtol=0)
    tolerance = 1e-6 if dtype == torch.float32 else 1e-2  # both round their float32 gradient to bf16
    torch.testing.assert_close(mine_in.grad.float(), ref_in.grad.float(), atol=tolerance, rtol=0)


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_path_equals_full_logits_in_value_and_gradient(tiny_model_dir, chunk):
    """Guards the memory path against the reference path: fp32 values within 1e-6 and the same gradients, for
    chunks smaller than a row, across rows, and larger than everything."""
    from r1lit.policy.loading import load_policy

    torch.manual_seed(0)
    model = load_policy(str(tiny_model_dir)).float()
    ids = torch.randint(5, 300, (3, 11))
    targets = ids[:, 1:]
    temperature = 0.7

    logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
    reference, ref_entropy = full_logprobs(logits, targets, temperature, "metric")
    (reference * torch.linspace(0.5, 1.5, reference.numel()).view_as(reference)).sum().backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    decoder, head = lm_parts(model)
    hidden = decoder(input_ids=ids, use_cache=False).last_hidden_state[:, :-1]
    logps, entropy = head_logprobs(head, hidden, targets, temperature, chunk_tokens=chunk, entropy="metric")
    assert head_logprobs(head, hidden.detach(), targets, temperature, chunk)[1] is None  # entropy only when asked
    (logps * torch.linspace(0.5, 1.5, logps.numel()).view_as(logps)).sum().backward()
    assert (logps - reference).abs().max() < 1e-6
    assert (entropy - ref_entropy).abs().max() < 1e-5
    for name, grad in ref_grads.items():
        mine = dict(model.named_parameters())[name].grad
        assert torch.allclose(mine, grad, atol=1e-6, rtol=1e-4), name


def test_models_whose_logits_are_more_than_the_head_keep_the_full_path(tiny_model_dir):
    """A model that scales its logits after the head (as some do) must not be read through head(decoder(x))."""
    from r1lit.policy.loading import load_policy

    model = load_policy(str(tiny_model_dir)).float()
    assert matches_full_logits(model)
    real_forward = model.forward

    def scaled(*args, **kwargs):
        out = real_forward(*args, **kwargs)
        out.logits = out.logits * 2.0
        return out

    model.forward = scaled
    assert not matches_full_logits(model)


def _left_padded_batch():
    """Two prompts, left-padded, each followed by 5 completion tokens: ids/attention [2, 4 + 5]."""
    ids = torch.tensor([[0, 0, 7, 8, 20, 21, 22, 23, 24], [9, 10, 11, 12, 30, 31, 32, 33, 34]])
    attention = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * 9])
    return ids, attention


@pytest.mark.parametrize("entropy", ["metric", "grad"])
def test_trainer_path_through_the_head_equals_full_logits(tiny_model_dir, entropy):
    """What the trainer calls (left padding, a width shorter than the completion, entropy as metric or with its
    gradient): the chunked head path gives the full-logits path's log-probs within 1e-6 in fp32, and the same
    gradients."""
    from r1lit.policy.logprobs import CompletionLogprobs
    from r1lit.policy.loading import load_policy

    torch.manual_seed(0)
    model = load_policy(str(tiny_model_dir)).float()
    ids, attention = _left_padded_batch()
    results = []
    for chunked in (False, True):
        scorer = CompletionLogprobs(temperature=0.7, chunk_tokens=3, chunked=chunked)
        assert scorer.uses_chunks(model) is chunked
        logps, ent = scorer(model, ids, attention, completion_len=5, width=4, entropy=entropy)
        assert logps.shape == ent.shape == (2, 4)
        loss = (logps * torch.linspace(0.5, 1.5, 8).view(2, 4)).sum() - (0.1 * ent.sum() if entropy == "grad" else 0)
        loss.backward()
        results.append((logps.detach(), ent.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
        model.zero_grad(set_to_none=True)
    (full, full_ent, full_grads), (mine, mine_ent, mine_grads) = results
    assert (full - mine).abs().max() < 1e-6
    assert (full_ent - mine_ent).abs().max() < 1e-5
    for name, grad in full_grads.items():
        assert torch.allclose(mine_grads[name], grad, atol=1e-6, rtol=1e-4), name


def test_bf16_reference_moves_the_kl_by_little(tiny_model_dir):
    """The stated tolerance of ``bf16_reference``: under bf16 autocast, a reference stored in bfloat16 gives a
    mean k3 KL within 2 % of the fp32-stored reference's (the policy perturbed so that the KL is not ~0)."""
    from r1lit.policy.logprobs import CompletionLogprobs
    from r1lit.grpo.losses import k3_kl
    from r1lit.policy.loading import load_policy

    torch.manual_seed(0)
    reference = load_policy(str(tiny_model_dir)).float()
    policy = load_policy(str(tiny_model_dir)).float()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p) * p.abs().mean())
    ids, attention = _left_padded_batch()
    scorer = CompletionLogprobs(temperature=1.0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logps, _ = scorer(policy, ids, attention, 5, 5)
        ref32, _ = scorer(reference, ids, attention, 5, 5)
        ref16, _ = scorer(reference.to(torch.bfloat16), ids, attention, 5, 5)
    kl32, kl16 = k3_kl(logps, ref32).mean(), k3_kl(logps, ref16).mean()
    assert kl32 > 1e-4  # the perturbation is visible
    assert abs(kl16 - kl32) / kl32 < 0.02, (float(kl32), float(kl16))
