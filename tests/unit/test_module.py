"""GRPOModule on a tiny model: log-probs under padding, micro-batch accumulation, μ > 1, the engine's masks."""

import lightning as L
import pytest
import torch

from custom_rewards import LengthReward
from r1lit.data import ArithmeticSource, MathDataModule
from r1lit.grpo.losses import BNPOLoss, DAPOLoss, DrGRPOLoss, GRPOLoss, GSPOLoss
from r1lit.module import GRPOModule
from r1lit.policy.config import PolicyConfig
from r1lit.rollout import HFEngine, SamplingConfig
from r1lit.rollout.types import completion_mask_from_eos, left_pad
from helpers import adamw


class Capture(L.Callback):
    """Records the gradients each optimizer step sees, and the completions of each batch."""

    def __init__(self):
        self.grads, self.texts = [], []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads.append({n: p.grad.detach().clone() for n, p in pl_module.policy.named_parameters() if p.grad is not None})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.texts.append([c.text for g in outputs["groups"] for c in g.completions])


def fit_one_batch(model_dir, micro_batch_size=8, loss=None, num_iterations=1, steps=1):
    L.seed_everything(0)
    module = GRPOModule(
        str(model_dir), rewards=[LengthReward()], loss=loss or GRPOLoss(), sampling=SamplingConfig(max_tokens=12),
        num_generations=4, micro_batch_size=micro_batch_size, num_iterations=num_iterations, max_grad_norm=None,
        optimizer=adamw(1e-3),
    )
    data = MathDataModule(ArithmeticSource(num_problems=16), tokenizer=str(model_dir), batch_size=2, check_gold=False)
    capture = Capture()
    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[capture],
    )
    trainer.fit(module, data)
    return capture, trainer


@pytest.mark.parametrize("loss", [GRPOLoss(), BNPOLoss(), DrGRPOLoss(), DAPOLoss(), GSPOLoss()], ids=lambda l: type(l).__name__)
def test_micro_batch_accumulation_equals_one_big_batch(tiny_model_dir, loss):
    """Guards the loss normalisation across micro-batches: 4 micro-batches of 2 give one batch of 8's gradient."""
    big, _ = fit_one_batch(tiny_model_dir, micro_batch_size=8, loss=loss)
    small, _ = fit_one_batch(tiny_model_dir, micro_batch_size=2, loss=loss)
    assert big.texts == small.texts  # same seed, same rollout
    assert big.grads[0].keys() == small.grads[0].keys() and big.grads[0]
    nonzero = 0
    for name, grad in big.grads[0].items():
        torch.testing.assert_close(small.grads[0][name], grad, rtol=1e-4, atol=1e-7)  # fp32; only summation order differs
        nonzero += int(grad.abs().max() > 0)
    assert nonzero > len(big.grads[0]) // 2  # the comparison is not between zeros


def test_mu_two_takes_two_steps_and_its_first_equals_mu_one(tiny_model_dir):
    """With μ = 2 the first update uses old = current log-probs, i.e. the μ = 1 update; the second one differs."""
    one, _ = fit_one_batch(tiny_model_dir, num_iterations=1)
    two, trainer = fit_one_batch(tiny_model_dir, num_iterations=2, steps=2)
    assert trainer.global_step == 2 and len(two.grads) == 2 and len(two.texts) == 1
    for name, grad in one.grads[0].items():
        torch.testing.assert_close(two.grads[0][name], grad, rtol=1e-4, atol=1e-7)
    assert any(not torch.allclose(two.grads[1][n], g) for n, g in two.grads[0].items())


def test_logprobs_under_left_padding_equal_unpadded_forward(tiny_model_dir):
    """Guards position ids: a left-padded prompt must score its completion as it would alone."""
    module = GRPOModule(str(tiny_model_dir), rewards=[LengthReward()], num_generations=2, sampling=SamplingConfig(temperature=0.8))
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13]]
    completions = [[20, 21, 22], [23, 24, 25]]
    p_ids, p_mask = left_pad(prompts, pad_id=0)
    input_ids = torch.cat([p_ids, torch.tensor(completions)], dim=1)
    attention = torch.cat([p_mask, torch.ones(2, 3, dtype=torch.long)], dim=1)
    with torch.no_grad():
        batched, _ = module.completion_logprobs(module.policy, input_ids, attention, completion_len=3, width=3)
        for row, (prompt, completion) in enumerate(zip(prompts, completions)):
            ids = torch.tensor([prompt + completion])
            logits = module.policy(input_ids=ids).logits[0, len(prompt) - 1 : -1] / 0.8
            alone = torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion).unsqueeze(-1)).squeeze(-1)
            torch.testing.assert_close(batched[row], alone, rtol=1e-5, atol=1e-5)


def test_completion_mask_keeps_the_first_eos_only():
    ids = torch.tensor([[4, 2, 7, 2], [4, 5, 6, 7], [2, 0, 0, 0]])  # EOS = 2
    mask, truncated = completion_mask_from_eos(ids, [2])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert truncated.tolist() == [False, True, False]


def test_hf_engine_returns_groups_in_order(tiny_model_dir, tiny_tokenizer):
    from r1lit.policy.loading import load_policy

    engine = HFEngine(max_batch_size=1)
    engine.bind(load_policy(str(tiny_model_dir)), tiny_tokenizer)
    torch.manual_seed(0)
    rollout = engine.generate([[5, 6, 7], [8, 9]], n=3, sampling=SamplingConfig(max_tokens=6))
    assert rollout.completion_ids.shape[0] == 6 and rollout.num_generations == 3
    assert rollout.prompt_ids[:3].tolist() == [[5, 6, 7]] * 3  # group 0 = prompt 0, no padding needed
    assert rollout.prompt_mask[3].tolist() == [0, 1, 1]  # prompt 1 left-padded
    assert (rollout.completion_lengths <= 6).all() and (rollout.completion_lengths >= 1).all()
    assert rollout.truncated.tolist() == [bool(m.all()) and int(r[-1]) != tiny_tokenizer.eos_token_id
                                          for r, m in zip(rollout.completion_ids, rollout.completion_mask)]
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=0)


def test_sampler_logprobs_match_the_trainers_and_mismatch_is_logged(tiny_model_dir):
    """Invariant: for the same weights the engine's log-probs equal the loss's (fp32, so within 1e-4)."""
    L.seed_everything(0)
    module = GRPOModule(
        str(tiny_model_dir), rewards=[LengthReward()], engine=HFEngine(return_logprobs=True),
        sampling=SamplingConfig(max_tokens=12, temperature=0.7), num_generations=4, micro_batch_size=4,
    )
    module.engine.bind(module.policy, module.tokenizer)
    rollout = module.engine.generate([[5, 6, 7], [8, 9, 10, 11]], n=4, sampling=module.sampling)
    trainer = module.rollout_logprobs(rollout)
    mask = rollout.completion_mask.bool()
    assert (trainer[mask] - rollout.sampler_logprobs[mask]).abs().max() < 1e-4

    class Tagged(Capture):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.metrics = dict(trainer.callback_metrics)

    from r1lit.grpo.importance_sampling import ImportanceSampling

    module = GRPOModule(
        str(tiny_model_dir), rewards=[LengthReward()], engine=HFEngine(return_logprobs=True),
        sampling=SamplingConfig(max_tokens=12), num_generations=4, micro_batch_size=4,
        loss=GRPOLoss(importance_sampling=ImportanceSampling(cap=2.0)),
    )
    data = MathDataModule(ArithmeticSource(num_problems=16), tokenizer=str(tiny_model_dir), batch_size=2, check_gold=False)
    tagged = Tagged()
    L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=0, callbacks=[tagged]).fit(module, data)
    assert float(tagged.metrics["sampling/logp_diff/max"]) < 1e-4
    assert abs(float(tagged.metrics["sampling/is_ratio/mean"]) - 1.0) < 1e-4


@pytest.mark.parametrize("dtype, expected", [(None, "torch.float32"), ("bfloat16", "torch.bfloat16")])
def test_policy_dtype_and_attention_are_settable(tiny_model_dir, dtype, expected):
    """Guards load_policy's dtype and attention arguments, which no config could reach (a user could not pick bf16
    weights or an attention kernel)."""
    module = GRPOModule(str(tiny_model_dir), rewards=[LengthReward()], num_generations=2,
                        policy=PolicyConfig(dtype=dtype, attn_implementation="eager"), loss=GRPOLoss(beta=0.04))
    assert str(next(module.policy.parameters()).dtype) == expected
    assert str(next(module.ref_model.parameters()).dtype) == expected
    assert module.policy.config._attn_implementation == "eager"


@pytest.mark.parametrize("bf16_reference", [True, False])
def test_reference_is_kept_in_bf16_under_bf16_mixed_only_when_asked(tiny_model_dir, bf16_reference):
    """``bf16_reference`` halves the frozen reference under bf16-mixed; the policy's weights stay float32 and the
    KL of the first step (same weights) is still ~0."""
    L.seed_everything(0)
    module = GRPOModule(
        str(tiny_model_dir), rewards=[LengthReward()], loss=GRPOLoss(beta=0.04), sampling=SamplingConfig(max_tokens=8),
        num_generations=2, micro_batch_size=4, policy=PolicyConfig(bf16_reference=bf16_reference),
    )
    data = MathDataModule(ArithmeticSource(num_problems=8), tokenizer=str(tiny_model_dir), batch_size=2, check_gold=False)
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(module, data)
    assert next(module.ref_model.parameters()).dtype == (torch.bfloat16 if bf16_reference else torch.float32)
    assert next(module.policy.parameters()).dtype == torch.float32
    assert 0 <= float(trainer.callback_metrics["kl"]) < 1e-2
