"""Shared-prefix log-probs equal the unshared path: the packed layout worked out by hand, then values, entropies and
gradients on the tiny Qwen2 and a tiny Llama (left padding, prompts of different lengths in one micro-batch, G = 1
rows, rows split by the token budget), with gradient checkpointing, under bf16 autocast, and the fallbacks."""

from __future__ import annotations

import warnings

import pytest
import torch

from r1lit.policy.logprobs import CompletionLogprobs
from r1lit.policy.shared_prefix import SharedPrefixLogprobs, pack, unsupported


def test_pack_layout_by_hand():
    """Rows 0 and 1 share the prompt [7, 8] (left-padded), row 2 is a group of one with prompt [9, 10, 11].
    Completions (width 3): [20, 21, 22], [30, 31], [40]. Fed: the prompt once, then each completion minus its
    last token, positions restarting at the prompt's length: [7, 8 | 20, 21 | 30 | 9, 10, 11] at
    [0, 1 | 2, 3 | 2 | 0, 1, 2]. Token 30 (column 4) sees the prompt and itself, not 20 or 21."""
    ids = torch.tensor([[0, 7, 8, 20, 21, 22], [0, 7, 8, 30, 31, 0], [9, 10, 11, 40, 0, 0]])
    attention = torch.tensor([[0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0]])
    packed = pack(ids, attention, completion_len=3, width=3, row_tokens=100)
    # rows are as long as the longest group (5 tokens): the second group (3 tokens) gets a row of its own
    assert packed.input_ids.tolist() == [[7, 8, 20, 21, 30], [9, 10, 11, 0, 0]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 2], [0, 1, 2, 0, 0]]
    assert packed.allowed.squeeze(1).int().tolist() == [[
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 0, 0, 1],
    ], [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 0, 0, 0, 1],
    ]]
    # each scored token: predicted from the prompt's last column (the first of each completion) or its own previous
    assert packed.targets.tolist() == [20, 21, 22, 30, 31, 40]
    assert list(zip(packed.source[0].tolist(), packed.source[1].tolist())) == [
        (0, 1), (0, 2), (0, 3), (0, 1), (0, 4), (1, 2)]
    assert list(zip(*(t.tolist() for t in packed.dest))) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0)]

    # a budget of 4 tokens a row: [7, 8, 20, 21] is full, so [30] starts a part with its own copy of the prompt
    # (3 tokens), and the second group (3 + 0 tokens) is a third piece: three rows of 4, right-padded
    split = pack(ids, attention, completion_len=3, width=3, row_tokens=4)
    assert split.input_ids.tolist() == [[7, 8, 20, 21], [7, 8, 30, 0], [9, 10, 11, 0]]
    assert split.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 2, 0]]
    assert split.allowed[1, 0].int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1]]
    assert list(zip(split.source[0].tolist(), split.source[1].tolist())) == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (2, 2)]

    # a width of 1 feeds no completion token: every log-prob comes from a prompt's last position
    first = pack(ids, attention, completion_len=3, width=1, row_tokens=100)
    assert first.input_ids.tolist() == [[9, 10, 11], [7, 8, 0]]  # longest piece first
    by_row = dict(zip(first.dest[0].tolist(), zip(first.source[0].tolist(), first.source[1].tolist())))
    assert by_row == {0: (1, 1), 1: (1, 1), 2: (0, 2)}
    # nothing to score, an empty prompt, or a completion mask with a hole: no layout (the caller goes unshared)
    assert pack(ids, attention, completion_len=3, width=0, row_tokens=100) is None
    assert pack(ids, torch.cat([torch.zeros(3, 3, dtype=torch.long), attention[:, 3:]], 1), 3, 3, 100) is None
    holed = attention.clone()
    holed[0, 4] = 0
    assert pack(ids, holed, completion_len=3, width=3, row_tokens=100) is None


def test_shorter_groups_fill_rows_as_long_as_the_longest():
    """Three groups of one row: prompt [1, 2] + completion [3, 4, 5, 6, 9] (6 tokens fed), then [7] + [8, 9, 9]
    and [5] + [6, 7, 9] (3 tokens each). Rows are 6 long: the first group fills one, the two short ones share the
    second, so two rows of 6 (attention 2 · 36) instead of one of 12 (144) or three of 6 (108)."""
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 9], [0, 7, 8, 9, 9, 0, 0], [0, 5, 6, 7, 9, 0, 0]])
    attention = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 0, 0]])
    packed = pack(ids, attention, completion_len=5, width=5, row_tokens=2048)
    assert packed.input_ids.tolist() == [[1, 2, 3, 4, 5, 6], [7, 8, 9, 5, 6, 7]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4, 5], [0, 1, 2, 0, 1, 2]]
    assert packed.allowed[1, 0].int().tolist() == [  # the two groups of row 1 never see each other
        [1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1]]
    assert packed.targets.tolist() == [3, 4, 5, 6, 9, 8, 9, 9, 6, 7, 9]


def _batch(seed: int = 0):
    """Six rows, P = 6 prompt columns, C = 5 completion columns: a group of 3 with a 3-token prompt (left-padded),
    a group of one with a full 6-token prompt, a group of 2 with a 5-token prompt; completion lengths 5, 2, 4 | 5 |
    1, 3. ids/attention: [6, 11]."""
    g = torch.Generator().manual_seed(seed)
    prompt_lens, comp_lens = [3, 3, 3, 6, 5, 5], [5, 2, 4, 5, 1, 3]
    prompts = {3: torch.randint(5, 300, (6,), generator=g), 6: torch.randint(5, 300, (6,), generator=g),
               5: torch.randint(5, 300, (6,), generator=g)}
    ids, attention = torch.zeros(6, 11, dtype=torch.long), torch.zeros(6, 11, dtype=torch.long)
    for row, (p, c) in enumerate(zip(prompt_lens, comp_lens)):
        ids[row, 6 - p:6], attention[row, 6 - p:6] = prompts[p][:p], 1
        ids[row, 6:6 + c], attention[row, 6:6 + c] = torch.randint(5, 300, (c,), generator=g), 1
    return ids, attention


def _tiny_llama():
    """A one-layer Llama (SmolLM2's architecture) with hidden 16, 4 heads / 2 kv heads, untied head."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=320, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=False, attn_implementation="sdpa")
    return LlamaForCausalLM(config).train()


def _model(family: str, tiny_model_dir, attn: str = "sdpa"):
    from r1lit.policy.loading import load_policy

    if family == "llama":
        model = _tiny_llama()
        model.config._attn_implementation = attn
        return model
    return load_policy(str(tiny_model_dir), attn_implementation=attn).float()


def _run(scorer, model, ids, attention, width, entropy):
    """Log-probs, entropies and every parameter's gradient of a loss that weights each real token differently
    (and, for ``entropy="grad"``, subtracts an entropy bonus). Tokens past a completion's end weigh 0."""
    logps, ent = scorer(model, ids, attention, completion_len=5, width=width, entropy=entropy)
    real = attention[:, 6:6 + width].float()  # [6, width]
    weights = torch.linspace(0.5, 1.5, real.numel()).view_as(real) * real
    loss = (logps * weights).sum() - (0.1 * (ent * weights).sum() if entropy == "grad" else 0.0)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return logps.detach() * real, (None if ent is None else ent.detach() * real), grads


def _assert_same(shared, unshared, atol=1e-6, grad_atol=1e-6):
    (logps, ent, grads), (ref_logps, ref_ent, ref_grads) = shared, unshared
    assert (logps - ref_logps).abs().max() <= atol
    if ref_ent is not None:
        assert (ent - ref_ent).abs().max() <= 10 * atol
    assert grads.keys() == ref_grads.keys() and ref_grads
    for name, grad in ref_grads.items():
        assert torch.allclose(grads[name], grad, atol=grad_atol, rtol=1e-4), (name, (grads[name] - grad).abs().max())


@pytest.mark.parametrize("family", ["qwen2", "llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("chunked", [True, False])
@pytest.mark.parametrize("entropy", ["none", "metric", "grad"])
def test_values_entropies_and_gradients_equal_the_unshared_path(tiny_model_dir, family, attn, chunked, entropy):
    """fp32: the same log-probs (1e-6), entropies (1e-5) and gradients (1e-6 + 1e-4 relative) as every row
    scored with its own prompt, through the chunked head and the full logits, sdpa's bool mask and eager's
    additive one, a width shorter than the completions, and a token budget that splits the group of 3."""
    model = _model(family, tiny_model_dir, attn)
    ids, attention = _batch()
    for row_tokens, width in [(2048, 5), (9, 4)]:
        shared = SharedPrefixLogprobs(0.7, chunk_tokens=4, chunked=chunked, row_tokens=row_tokens)
        assert shared.shares(model)
        unshared = CompletionLogprobs(0.7, chunk_tokens=4, chunked=chunked)
        _assert_same(_run(shared, model, ids, attention, width, entropy),
                     _run(unshared, model, ids, attention, width, entropy))


def _random_batch(g: torch.Generator, P: int = 6, C: int = 6):
    """1–5 groups of 1–4 rows, prompts of 1..P tokens (left-padded), completion lengths 0..C (a length-0 row is a
    completion the trainer drops). ids/attention: [n, P + C]."""
    rows_ids, rows_att = [], []
    for _ in range(int(torch.randint(1, 6, (1,), generator=g))):
        p = int(torch.randint(1, P + 1, (1,), generator=g))
        prompt = torch.randint(5, 300, (p,), generator=g)
        for _ in range(int(torch.randint(1, 5, (1,), generator=g))):
            c = int(torch.randint(0, C + 1, (1,), generator=g))
            ids, att = torch.zeros(P + C, dtype=torch.long), torch.zeros(P + C, dtype=torch.long)
            ids[P - p:P], att[P - p:P] = prompt, 1
            ids[P:P + c], att[P:P + c] = torch.randint(5, 300, (c,), generator=g), 1
            rows_ids.append(ids)
            rows_att.append(att)
    return torch.stack(rows_ids), torch.stack(rows_att)


def test_random_groups_lengths_and_budgets_equal_the_unshared_path():
    """40 random micro-batches (group sizes, prompt and completion lengths, empty completions, widths, and row
    budgets from 1 token, which splits every completion into its own part, to unbounded): every real token's
    log-prob equals the unshared path's (fp32, 1e-5), and the packed rows are no longer than the longest part."""
    model = _tiny_llama().eval()
    unshared = CompletionLogprobs(1.0, chunk_tokens=7)
    g = torch.Generator().manual_seed(0)
    checked = 0
    for _ in range(40):
        ids, attention = _random_batch(g)
        width = int(torch.randint(1, 7, (1,), generator=g))
        row_tokens = [1, 4, 9, 2048][int(torch.randint(0, 4, (1,), generator=g))]
        real = attention[:, 6:6 + width].float()  # [n, width]
        packed = pack(ids, attention, completion_len=6, width=width, row_tokens=row_tokens)
        if packed is None:
            assert real.sum() == 0  # only a micro-batch with nothing to score has no layout
            continue
        # per row: its prompt length and fed tokens; groups = runs of adjacent rows with the same prompt
        prompt_len = attention[:, :6].sum(1).tolist()
        fed = [max(int(r.sum()) - 1, 0) if r.sum() else None for r in real]  # None: nothing scored, not fed
        key = [tuple((ids[i, :6] * attention[i, :6]).tolist()) for i in range(len(ids))]
        totals, singles = [], []
        for i in range(len(ids)):
            if i == 0 or key[i] != key[i - 1]:
                totals.append(prompt_len[i])
            if fed[i] is not None:
                totals[-1] += fed[i]
                singles.append(prompt_len[i] + fed[i])
        L = packed.input_ids.shape[1]
        assert L <= max(totals)  # never longer than the longest whole group
        assert L <= max(row_tokens, max(singles))  # nor past the budget, unless one completion with its prompt is
        with torch.no_grad():
            mine, _ = SharedPrefixLogprobs(1.0, chunk_tokens=7, row_tokens=row_tokens)(model, ids, attention, 6, width)
            theirs, _ = unshared(model, ids, attention, 6, width)
        assert ((mine - theirs) * real).abs().max() <= 1e-5
        checked += 1
    assert checked >= 30


def test_the_layout_computes_each_prompt_once(tiny_model_dir):
    """Guards the point of it: the batch's 6 rows × 11 columns (66 positions, 36 of them prompt) become 3 + 6 + 5
    prompt tokens and (4 + 1 + 3) + 4 + (0 + 2) fed completion tokens = 28, in three rows (groups of 11, 10 and 7
    tokens: no two fit one row of 11) = 33 positions."""
    ids, attention = _batch()
    packed = pack(ids, attention, completion_len=5, width=5, row_tokens=2048)
    assert packed.input_ids.shape == (3, 11)
    assert packed.targets.numel() == int(attention[:, 6:].sum()) == 20


def test_gradient_checkpointing(tiny_model_dir):
    """With the decoder's gradient checkpointing on (the recomputation sees the same 4-D mask), values and
    gradients still equal the unshared path's in fp32."""
    model = _model("qwen2", tiny_model_dir)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    assert model.is_gradient_checkpointing
    ids, attention = _batch(seed=1)
    shared, unshared = SharedPrefixLogprobs(1.0, chunk_tokens=8), CompletionLogprobs(1.0, chunk_tokens=8)
    _assert_same(_run(shared, model, ids, attention, 5, "metric"), _run(unshared, model, ids, attention, 5, "metric"))


def test_no_grad_reference_pass(tiny_model_dir):
    """The reference pass (no gradient) gives the same values and builds no graph."""
    model = _model("qwen2", tiny_model_dir)
    ids, attention = _batch(seed=2)
    real = attention[:, 6:].float()
    with torch.no_grad():
        mine, _ = SharedPrefixLogprobs(1.0)(model, ids, attention, 5, 5)
        theirs, _ = CompletionLogprobs(1.0)(model, ids, attention, 5, 5)
    assert not mine.requires_grad
    assert ((mine - theirs) * real).abs().max() <= 1e-6
    assert (mine * (1 - real)).abs().max() == 0  # past a completion's end: 0


def test_bf16_autocast_within_stated_tolerance(tiny_model_dir):
    """Under bf16 autocast both paths round differently (other matmul shapes, other summation orders): the
    log-probs agree within 0.005 nats and each stays within 0.005 of the fp32 values; the gradients' cosine
    similarity is above 0.9999. Measured on four batches: at most 0.0010 between the paths, 0.0011 from fp32, cosine
    1.00000 to five places (docs/shared-prefix.md). A completion that wrongly sees another moves by ~0.01 in fp32."""
    model = _model("qwen2", tiny_model_dir)
    ids, attention = _batch(seed=3)
    fp32 = _run(CompletionLogprobs(1.0), model, ids, attention, 5, "none")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        shared = _run(SharedPrefixLogprobs(1.0), model, ids, attention, 5, "none")
        unshared = _run(CompletionLogprobs(1.0), model, ids, attention, 5, "none")
    assert (shared[0] - unshared[0]).abs().max() < 0.005
    assert (shared[0] - fp32[0]).abs().max() < 0.005 and (unshared[0] - fp32[0]).abs().max() < 0.005
    flat = lambda grads: torch.cat([g.flatten().float() for g in grads.values()])  # noqa: E731
    assert torch.nn.functional.cosine_similarity(flat(shared[2]), flat(unshared[2]), dim=0) > 0.9999


def test_a_model_that_ignores_the_mask_falls_back_with_one_warning(tiny_model_dir):
    """A decoder that drops custom 4-D masks (as some kernels would) lets completions see each other: the probe
    notices, the scorer warns once and then gives exactly the unshared path's values."""
    model = _model("qwen2", tiny_model_dir)
    decoder = model.get_decoder()
    real_forward = decoder.forward

    def drops_4d_masks(*args, attention_mask=None, **kwargs):
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = None
        return real_forward(*args, attention_mask=attention_mask, **kwargs)

    decoder.forward = drops_4d_masks
    ids, attention = _batch()
    shared = SharedPrefixLogprobs(1.0)
    with pytest.warns(UserWarning, match="shared-prefix log-probs are off.*probe"):
        mine, _ = shared(model, ids, attention, 5, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, _ = shared(model, ids, attention, 5, 5)
    theirs, _ = CompletionLogprobs(1.0)(model, ids, attention, 5, 5)
    assert torch.equal(mine, theirs) and torch.equal(again, theirs)


def test_unsupported_models_are_named_with_the_fix(tiny_model_dir):
    """Kernels without custom masks, sliding-window layers and forwards without position ids are refused from the
    config alone, each with its reason."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model = _model("qwen2", tiny_model_dir)
    assert unsupported(model) is None
    model.config._attn_implementation_internal = "flash_attention_2"  # what the setter stores; no kernel needed
    assert "flash_attention_2" in unsupported(model) and "sdpa" in unsupported(model)
    sliding = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                           num_attention_heads=2, num_key_value_heads=1, use_sliding_window=True,
                                           sliding_window=4, max_window_layers=1, attn_implementation="sdpa"))
    assert "sliding" in unsupported(sliding)

    class NoPositions(torch.nn.Module):
        config = model.config.__class__(attn_implementation="sdpa")

        def forward(self, input_ids, attention_mask=None):
            return input_ids

    assert "position_ids" in unsupported(NoPositions())
    with pytest.raises(ValueError, match="row_tokens must be >= 1"):
        SharedPrefixLogprobs(1.0, row_tokens=0)


def _fit(model_dir, shared: bool, steps: int = 3, policy=None):
    """Three GRPO steps of the tiny model (HF engine, 3 problems × G = 4, micro-batches of 3 rows so groups straddle
    micro-batches and leave groups of one, KL to the reference, μ = 2), the trainer's scorer swapped in as the lead
    would swap it; ``policy``: a PolicyConfig. Returns each optimizer step's gradients and each step's logged
    metrics."""
    import lightning as L

    from custom_rewards import LengthReward
    from helpers import adamw
    from r1lit.data import ArithmeticSource, MathDataModule
    from r1lit.grpo.losses import GRPOLoss
    from r1lit.module import GRPOModule
    from r1lit.rollout import SamplingConfig

    class Capture(L.Callback):
        def __init__(self):
            self.grads, self.metrics = [], []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.grads.append({n: p.grad.detach().clone() for n, p in pl_module.policy.named_parameters()
                               if p.grad is not None})

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.metrics.append({k: float(v) for k, v in trainer.callback_metrics.items()})

    L.seed_everything(0)
    module = GRPOModule(str(model_dir), rewards=[LengthReward()], loss=GRPOLoss(beta=0.1),
                        sampling=SamplingConfig(max_tokens=12, temperature=0.9), num_generations=4,
                        micro_batch_size=3, num_iterations=2, max_grad_norm=None, optimizer=adamw(1e-3),
                        **({"policy": policy} if policy is not None else {}))
    if shared:
        module.completion_logprobs = SharedPrefixLogprobs(0.9, chunk_tokens=module.completion_logprobs.chunk_tokens)
    data = MathDataModule(ArithmeticSource(num_problems=16), tokenizer=str(model_dir), batch_size=3, check_gold=False)
    capture = Capture()
    trainer = L.Trainer(accelerator="cpu", max_steps=2 * steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[capture])
    trainer.fit(module, data)
    return capture


def _assert_same_fits(mine, theirs, rtol: float, atol: float) -> None:
    """Two ``_fit`` runs: 6 optimizer steps whose gradients reach the same parameters with the same values, and the
    same logged loss, KL and entropy at each of the 3 steps (``rtol``; ``atol`` for gradients, a tenth of it for
    the metrics)."""
    assert len(mine.grads) == len(theirs.grads) == 6 and len(mine.metrics) == len(theirs.metrics) == 3
    for step, (a, b) in enumerate(zip(mine.grads, theirs.grads)):
        assert a.keys() == b.keys() and a
        for name, grad in b.items():
            torch.testing.assert_close(a[name], grad, rtol=rtol, atol=atol, msg=f"step {step}: {name}")
    for a, b in zip(mine.metrics, theirs.metrics):
        for key in ("loss", "kl", "entropy"):
            assert a[key] == pytest.approx(b[key], rel=rtol, abs=atol / 10), key


def test_a_fit_first_three_steps_match_the_unshared_path(tiny_model_dir):
    """The trainer with the shared-prefix scorer: the same gradients at each of 3 GRPO steps (6 optimizer steps with
    μ = 2) as with the unshared one, within fp32 summation-order noise, and the same loss, KL and entropy."""
    mine, theirs = _fit(tiny_model_dir, shared=True), _fit(tiny_model_dir, shared=False)
    _assert_same_fits(mine, theirs, rtol=1e-4, atol=1e-6)
    assert all(b["kl"] > 0 for b in theirs.metrics[1:])  # the reference pass is compared too, once the policy moved
    for a, b in zip(mine.metrics, theirs.metrics):
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4, abs=1e-7)


ZERO3_SCRIPT = r'''
import json, sys
import torch, torch.distributed as dist
import deepspeed
from r1lit.policy.loading import load_policy
from r1lit.policy.logprobs import CompletionLogprobs
from r1lit.policy.shared_prefix import SharedPrefixLogprobs
sys.path.insert(0, sys.argv[2])
from test_shared_prefix import _batch

dist.init_process_group("gloo")  # world 1 from the environment: RANK, WORLD_SIZE, MASTER_ADDR/PORT
model = load_policy(sys.argv[1]).float()
config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "zero_force_ds_cpu_optimizer": False,
          "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}}
engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=0.0), config=config)
assert all(p.numel() == 0 for p in engine.module.parameters())  # partitioned: every forward gathers its weights
ids, attention = _batch()
real = attention[:, 6:].float()
out = {}
for name, scorer in (("shared", SharedPrefixLogprobs(0.7, chunk_tokens=4)), ("unshared", CompletionLogprobs(0.7, chunk_tokens=4))):
    logps, ent = scorer(engine.module, ids, attention, 5, 5, "metric")
    engine.backward((logps * real * torch.linspace(0.5, 1.5, 30).view(6, 5)).sum())
    grads = {n: deepspeed.utils.safe_get_full_grad(p).clone() for n, p in engine.module.named_parameters()}
    engine.step()  # lr 0: clears the accumulated gradients for the next scorer
    out[name] = ((logps.detach() * real).tolist(), (ent * real).tolist(), {n: g.flatten().tolist() for n, g in grads.items()})
    if name == "shared":
        assert scorer.shares(engine.module)
json.dump(out, open(sys.argv[3], "w"))
dist.destroy_process_group()
'''


@pytest.mark.slow
@pytest.mark.deepspeed
def test_under_deepspeed_zero3(tmp_path, tiny_model_dir):
    """Under DeepSpeed ZeRO-3 (world 1 over gloo, every weight partitioned and gathered by its hooks), the packed
    path gives the unshared path's log-probs, entropies and full gradients in fp32."""
    import json
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script, result = tmp_path / "zero3.py", tmp_path / "out.json"
    script.write_text(ZERO3_SCRIPT)
    here = Path(__file__).resolve().parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "PYTHONPATH": os.pathsep.join([str(here.parents[2]), str(here.parents[1].parent / "support")])}
    done = subprocess.run([sys.executable, str(script), str(tiny_model_dir), str(here), str(result)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(result.read_text())
    (logps, ent, grads), (ref_logps, ref_ent, ref_grads) = out["shared"], out["unshared"]
    assert torch.allclose(torch.tensor(logps), torch.tensor(ref_logps), atol=1e-6)
    assert torch.allclose(torch.tensor(ent), torch.tensor(ref_ent), atol=1e-5)
    assert grads.keys() == ref_grads.keys() and ref_grads
    nonzero = 0
    for name, grad in ref_grads.items():
        mine, theirs = torch.tensor(grads[name]), torch.tensor(grad)
        assert torch.allclose(mine, theirs, atol=1e-6, rtol=1e-4), name
        nonzero += int(theirs.abs().max() > 0)
    assert nonzero > len(ref_grads) // 2


@pytest.mark.slow
def test_the_embedded_model_takes_the_shared_path():
    """Guards the probe's tolerance: SmolLM2-135M (30 layers, fp32, sdpa) packs with log-probs ~2e-4 from the
    unshared path's (another summation order), which must not send the default run down the fallback."""
    from r1lit.policy.loading import load_policy

    model = load_policy("embedded:smollm2-135m-instruct", None, None)
    assert SharedPrefixLogprobs(0.7, 256)._probe(model) is None
    # the bf16 reference of a bf16-mixed run: its own layouts differ by up to 8.9 nats on the probe's tokens
    assert SharedPrefixLogprobs(0.7, 256)._probe(model.to(torch.bfloat16)) is None


def test_the_probe_judges_a_bfloat16_model_on_a_float32_twin_and_leaves_the_rng_alone(tiny_model_dir):
    """In bf16 the two layouts differ by rounding that can reach nats on unlikely tokens; the probe judges the
    architecture on a float32 twin of the same class and kernel (two layers, width 64), built without drawing from
    the global RNG, so a bf16 reference or a DeepSpeed bf16 policy keeps the shared path."""
    from r1lit.policy.shared_prefix import structural_twin

    model = _model("qwen2", tiny_model_dir).to(torch.bfloat16)
    twin = structural_twin(model)
    assert type(twin) is type(model) and twin.config._attn_implementation == model.config._attn_implementation
    assert next(twin.parameters()).dtype == torch.float32 and twin.config.num_hidden_layers == 2
    assert (twin.config.num_key_value_heads < twin.config.num_attention_heads) == \
        (model.config.num_key_value_heads < model.config.num_attention_heads)
    state = torch.get_rng_state()
    assert SharedPrefixLogprobs(1.0)._probe(model) is None
    assert torch.equal(torch.get_rng_state(), state)


def test_a_twin_that_drops_the_mask_is_caught_even_for_a_bfloat16_model(tiny_model_dir, monkeypatch):
    """The twin runs the class's own code: a kernel that ignores 4-D masks fails the probe through the twin alone."""
    from transformers import Qwen2Model

    real_forward = Qwen2Model.forward

    def drops_4d_masks(self, *args, attention_mask=None, **kwargs):
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = None
        return real_forward(self, *args, attention_mask=attention_mask, **kwargs)

    monkeypatch.setattr(Qwen2Model, "forward", drops_4d_masks)
    model = _model("qwen2", tiny_model_dir).to(torch.bfloat16)
    assert "differ from the unshared path's" in SharedPrefixLogprobs(1.0)._probe(model)


def test_cpu_flex_attention_has_no_backward_so_the_trained_pass_stays_on_a_masked_kernel():
    """The packed rows' mask is block-sparse (a completion never sees another), and FlexAttention with a block mask
    would skip the masked blocks; on CPU, torch 2.13 runs it without gradients only, so the trained pass keeps
    eager/SDPA over the masked square (docs/benchmarks.md, "against a floor that is a lower bound"). When this fails,
    torch has gained the backward: measure it against eager with benchmarks/bench_attention_layout.py."""
    from torch.nn.attention.flex_attention import flex_attention

    q, k, v = (torch.randn(1, 2, 32, 16, requires_grad=True) for _ in range(3))
    with pytest.raises(NotImplementedError, match="backward on CPU"):
        flex_attention(q, k, v)
    assert flex_attention(q.detach(), k.detach(), v.detach()).shape == (1, 2, 32, 16)  # the forward alone runs
