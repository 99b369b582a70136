"""The LM head's log-probs as one autograd node (``HeadLogprobs``) and its per-chunk math (``logit_kernels``): values
by hand, the same values and gradients as calling the head module per chunk (fp32, bf16 autocast, bf16 weights,
frozen parts), compiled kernels equal to eager ones, and the heads it must leave to the module route."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from r1lit.policy.lm_head import HeadLogprobs, chunks, plain_head_weight
from r1lit.policy.logit_kernels import LogitKernels, logit_stats, logits_grad
from r1lit.policy.logprobs import head_logprobs


class ModuleHead(nn.Linear):
    """The same linear head, of a type ``plain_head_weight`` does not read: it takes the module route."""


def _heads(vocab: int = 40, hidden: int = 6, dtype=torch.float32, seed: int = 0) -> tuple[nn.Linear, ModuleHead]:
    torch.manual_seed(seed)
    plain = nn.Linear(hidden, vocab, bias=False).to(dtype)
    other = ModuleHead(hidden, vocab, bias=False).to(dtype)
    with torch.no_grad():
        plain.weight.mul_(4.0)  # logits of a few units, as a trained head gives
        other.weight.copy_(plain.weight)
    return plain, other


def _run(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, chunk: int, entropy: str,
         temperature: float = 0.7):
    """(log-probs, entropy, d hidden, d weight) of Σ w·log p with uneven weights w."""
    hidden = hidden.detach().clone().requires_grad_(True)
    head.weight.grad = None
    logps, ent = head_logprobs(head, hidden, targets, temperature, chunk, entropy)
    (logps * torch.linspace(0.5, 1.5, logps.numel()).view_as(logps)).sum().backward()
    return logps.detach(), ent, hidden.grad, head.weight.grad


def test_logit_stats_by_hand():
    """logits (ln 3, 0): p = (3/4, 1/4), logsumexp ln 4, entropy −(3/4 ln 3/4 + 1/4 ln 1/4) = 0.5623351; at T = 2
    the logits (2 ln 3, 0) give the same; four equal logits: log p = −ln 4 and entropy ln 4."""
    for temperature in (1.0, 2.0):
        logits = torch.tensor([[temperature * math.log(3.0), 0.0], [temperature * math.log(3.0), 0.0]])
        logps, lse, entropy = logit_stats(logits, torch.tensor([0, 1]), 1.0 / temperature, True)
        assert logps.tolist() == pytest.approx([math.log(0.75), math.log(0.25)], abs=1e-6)
        assert lse.tolist() == pytest.approx([math.log(4.0)] * 2, abs=1e-6)
        assert entropy.tolist() == pytest.approx([0.5623351] * 2, abs=1e-6)
    logps, lse, entropy = logit_stats(torch.full((1, 4), 7.0), torch.tensor([2]), 1.0, True)
    assert logps.item() == pytest.approx(-math.log(4.0)) and entropy.item() == pytest.approx(math.log(4.0))
    assert lse.item() == pytest.approx(7.0 + math.log(4.0))
    assert logit_stats(torch.full((1, 4), 7.0), torch.tensor([2]), 1.0, False)[2] is None


def test_chunks_are_as_few_and_as_even_as_the_budget_allows():
    """10 rows at most 4 a chunk: three chunks of 3, 3 and 4; 257 rows at most 256: 128 and 129, never 256 and a
    lone row (a compiled kernel would compile again for it); a budget that fits everything: one chunk."""
    sizes = lambda total, budget: [s.stop - s.start for s in chunks(total, budget)]  # noqa: E731
    assert sizes(10, 4) == [3, 3, 4]
    assert sizes(257, 256) == [128, 129]
    assert sizes(5, 5) == [5] and sizes(5, 1000) == [5] and sizes(3, 1) == [1, 1, 1] and chunks(0, 4) == []
    assert chunks(10, 4)[0].start == 0 and chunks(10, 4)[-1].stop == 10


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_logits_grad_by_hand(dtype):
    """d log p(0) / d logits = (onehot − p) / T: logits (ln 3, 0) at T = 1 → (1/4, −1/4), (2 ln 3, 0) at T = 2 →
    (1/8, −1/8); an upstream gradient of 2 doubles both. In the logits' dtype; the logits are left as they were."""
    logits = torch.tensor([[math.log(3.0), 0.0], [2 * math.log(3.0), 0.0]]).to(dtype)
    before = logits.clone()
    lse = torch.tensor([math.log(4.0), 2 * math.log(4.0)])
    rows = [logits_grad(logits[i:i + 1], torch.tensor([0]), lse[i:i + 1] / t, torch.tensor([2.0]), 1.0 / t)
            for i, t in enumerate((1.0, 2.0))]
    assert all(r.dtype == dtype for r in rows) and torch.equal(logits, before)
    tolerance = 1e-6 if dtype == torch.float32 else 4e-3
    assert rows[0].float().tolist()[0] == pytest.approx([0.5, -0.5], abs=tolerance)
    assert rows[1].float().tolist()[0] == pytest.approx([0.25, -0.25], abs=tolerance)


@pytest.mark.parametrize("entropy", ["none", "metric"])
@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_one_node_equals_the_module_route_in_fp32(chunk, entropy):
    """Log-probs, entropies and both gradients equal the checkpointed module route's (fp32, T = 0.7, uneven upstream
    gradient), for chunks of one token, chunks across rows and one chunk for all."""
    plain, other = _heads()
    hidden, targets = torch.randn(3, 5, 6), torch.randint(0, 40, (3, 5))
    mine, theirs = _run(plain, hidden, targets, chunk, entropy), _run(other, hidden, targets, chunk, entropy)
    torch.testing.assert_close(mine[0], theirs[0], atol=1e-6, rtol=0)
    if entropy == "none":
        assert mine[1] is None and theirs[1] is None
    else:
        torch.testing.assert_close(mine[1], theirs[1], atol=1e-5, rtol=0)
        assert not mine[1].requires_grad
    for a, b in zip(mine[2:], theirs[2:]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("chunk", [4, 100])
def test_one_node_under_bf16_autocast_matches_the_module_route(chunk):
    """Under bf16 autocast both routes run the head's matmul in bf16 on the same bf16 weight: the same log-probs,
    entropies and hidden gradient. The weight's gradient is float32; each chunk's part of it is a bf16 matmul in
    both, so both are within bf16 rounding of the fp32 gradient (the module route's own differs by as much between
    chunk sizes), mine no further from it than the module route's. Chunks of 4 recompute the logits in backward; one
    chunk of 100 keeps them from forward."""
    plain, other = _heads(vocab=300, hidden=16)
    hidden, targets = torch.randn(2, 9, 16), torch.randint(0, 300, (2, 9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mine, theirs = _run(plain, hidden, targets, chunk, "metric"), _run(other, hidden, targets, chunk, "metric")
    fp32 = _run(plain, hidden, targets, chunk, "metric")
    assert mine[3].dtype == torch.float32 and mine[2].dtype == torch.float32
    torch.testing.assert_close(mine[0], theirs[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(mine[1], theirs[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(mine[2], theirs[2], atol=1e-6, rtol=1e-5)
    scale = fp32[3].abs().max()
    error, their_error = (mine[3] - fp32[3]).abs().max() / scale, (theirs[3] - fp32[3]).abs().max() / scale
    assert error < 0.02 and error <= 1.5 * their_error
    assert torch.nn.functional.cosine_similarity(mine[3].flatten(), fp32[3].flatten(), dim=0) > 0.9999
    assert (fp32[0] - mine[0]).abs().max() > 1e-4  # bf16 really ran: fp32 differs by more than the rounding


def test_bf16_weights_get_a_bf16_gradient_summed_in_float32():
    """Pure bf16 training (bf16 weights, no autocast): the gradient comes back in bf16, within bf16 rounding of the
    fp32 head's."""
    plain, _ = _heads(vocab=300, hidden=16)
    bf16 = nn.Linear(16, 300, bias=False).to(torch.bfloat16)
    with torch.no_grad():
        bf16.weight.copy_(plain.weight)
        plain.weight.copy_(bf16.weight.float())  # the same (bf16-representable) weights in both
    hidden, targets = torch.randn(2, 9, 16).bfloat16().float(), torch.randint(0, 300, (2, 9))
    mine = _run(bf16, hidden.bfloat16(), targets, 4, "none")
    fp32 = _run(plain, hidden, targets, 4, "none")
    assert mine[3].dtype == torch.bfloat16 and mine[2].dtype == torch.bfloat16
    torch.testing.assert_close(mine[0], fp32[0], atol=0.1, rtol=0)
    cosine = torch.nn.functional.cosine_similarity(mine[3].float().flatten(), fp32[3].flatten(), dim=0)
    assert cosine > 0.999


@pytest.mark.parametrize("chunk", [3, 100])
def test_frozen_parts_get_no_gradient(chunk):
    """A frozen head gives the hidden states their gradient and itself none; frozen hidden states the reverse; with
    no gradient anywhere (a reference's pass) only the values. Chunks of 3 recompute the logits, one of 100 keeps
    them; either way the gradient that is asked for equals the module route's."""
    plain, other = _heads()
    hidden, targets = torch.randn(2, 4, 6), torch.randint(0, 40, (2, 4))
    for head in (plain, other):
        head.weight.requires_grad_(False)
    mine, theirs = _run(plain, hidden, targets, chunk, "none"), _run(other, hidden, targets, chunk, "none")
    assert mine[3] is None and theirs[3] is None
    torch.testing.assert_close(mine[2], theirs[2], atol=1e-6, rtol=1e-5)
    for head in (plain, other):
        head.weight.requires_grad_(True)
    grads = []
    for head in (plain, other):
        head.weight.grad = None
        (head_logprobs(head, hidden, targets, 0.7, chunk)[0] * torch.linspace(0.5, 1.5, 8).view(2, 4)).sum().backward()
        grads.append(head.weight.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        logps, _ = head_logprobs(plain, hidden, targets, 1.0, chunk)
    assert not logps.requires_grad
    torch.testing.assert_close(logps, head_logprobs(other, hidden, targets, 1.0, chunk)[0].detach(), atol=1e-6, rtol=0)


def test_backward_outside_autocast_and_no_double_backward():
    """Lightning may call backward after the autocast region that ran forward: the node set its dtypes in forward,
    so the gradients are those of a backward inside it. A second derivative is refused (the node is once
    differentiable), never silently wrong."""
    plain, _ = _heads(vocab=300, hidden=16)
    hidden, targets = torch.randn(1, 9, 16), torch.randint(0, 300, (1, 9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = _run(plain, hidden, targets, 4, "none")
        h = hidden.clone().requires_grad_(True)
        logps, _ = head_logprobs(plain, h, targets, 0.7, 4)
    plain.weight.grad = None
    (logps * torch.linspace(0.5, 1.5, 9).view(1, 9)).sum().backward()
    torch.testing.assert_close(h.grad, inside[2], atol=0, rtol=0)
    torch.testing.assert_close(plain.weight.grad, inside[3], atol=0, rtol=0)
    h, upstream = hidden.clone().requires_grad_(True), torch.ones(1, 9, requires_grad=True)
    (first,) = torch.autograd.grad((head_logprobs(plain, h, targets, 1.0, 100)[0] * upstream).sum(), h,
                                   create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        first.sum().backward()


def test_heads_it_cannot_read_take_the_module_route():
    """Only ``x @ weight.T`` with the whole weight here: a head with a bias, a subclass that may change its forward,
    and a DeepSpeed ZeRO-3 parameter (a partition, gathered only by the module's forward) are called as modules."""
    plain, other = _heads()
    assert plain_head_weight(plain) is plain.weight
    assert plain_head_weight(other) is None
    assert plain_head_weight(nn.Linear(6, 40)) is None
    partitioned = nn.Linear(6, 40, bias=False)
    partitioned.weight.ds_id = 3  # what deepspeed.zero.Init puts on each parameter it partitions
    assert plain_head_weight(partitioned) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_kernels_equal_the_eager_ones(dtype):
    """Inductor's fused kernels against the eager math: log-probs and logsumexp within 1e-5, entropies within 1e-4
    (another summation order over the vocabulary), gradients within the dtype's rounding, across two chunk lengths
    (dynamic shapes) and T = 0.7."""
    torch.manual_seed(0)
    compiled, eager = LogitKernels(compiled=True), LogitKernels()
    for rows in (7, 5):
        logits, targets = (4 * torch.randn(rows, 500)).to(dtype), torch.randint(0, 500, (rows,))
        mine, theirs = compiled.stats(logits, targets, 1 / 0.7, True), eager.stats(logits, targets, 1 / 0.7, True)
        torch.testing.assert_close(mine[:2], theirs[:2], atol=1e-5, rtol=0)
        torch.testing.assert_close(mine[2], theirs[2], atol=1e-4, rtol=0)
        assert compiled.stats(logits, targets, 1 / 0.7, False)[2] is None
        grad = torch.linspace(-1, 2, rows)
        d_mine, d_theirs = (k.grad(logits, targets, theirs[1], grad, 1 / 0.7) for k in (compiled, eager))
        assert d_mine.dtype == dtype
        torch.testing.assert_close(d_mine.float(), d_theirs.float(), atol=1e-6 if dtype == torch.float32 else 1e-2,
                                   rtol=0)


def test_head_logprobs_apply_is_one_autograd_node():
    """The whole pass is one node, however many chunks: backward holds no per-chunk graph."""
    plain, _ = _heads()
    hidden = torch.randn(1, 10, 6, requires_grad=True)
    logps, _ = head_logprobs(plain, hidden, torch.randint(0, 40, (1, 10)), 1.0, 2)
    node = logps.grad_fn
    while node is not None and "HeadLogprobs" not in type(node).__name__:
        node = node.next_functions[0][0]
    assert node is not None and HeadLogprobs.__name__ in type(node).__name__


@pytest.mark.slow
def test_a_fit_with_compiled_logprobs_matches_the_eager_fit(tiny_model_dir):
    """``model.policy.compile_logprobs``: three GRPO steps (μ = 2, KL to the reference, shared-prefix scoring) give
    each optimizer step's gradients and the logged loss, KL and entropy of the eager kernels' fit within fp32
    fusion noise."""
    from r1lit.policy.config import PolicyConfig
    from test_compile import _graphs
    from test_shared_prefix import _assert_same_fits, _fit

    torch._dynamo.reset()  # graphs an earlier test compiled would be reused: start as a fresh process does
    before = _graphs()
    theirs = _fit(tiny_model_dir, shared=False, policy=PolicyConfig())
    assert _graphs() == before  # the eager fit compiles nothing ...
    mine = _fit(tiny_model_dir, shared=False, policy=PolicyConfig(compile_logprobs=True))
    assert _graphs() > before  # ... and this one compiles the kernels
    _assert_same_fits(mine, theirs, rtol=1e-3, atol=1e-5)
    assert mine.metrics[-1]["kl"] > 0
