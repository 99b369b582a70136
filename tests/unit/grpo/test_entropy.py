"""Entropy regularisation: the differentiable entropy and the top-entropy token mask by hand, and in a fit the
bonus's gradient and the quantile mask keep micro-batch accumulation equal to one big batch."""

import math

import lightning as L
import pytest
import torch

from custom_rewards import LengthReward
from r1lit.data import ArithmeticSource, MathDataModule
from r1lit.grpo.entropy import EntropyConfig, high_entropy_mask, token_entropy
from r1lit.grpo.losses import GRPOLoss
from r1lit.errors import ConfigError
from r1lit.module import GRPOModule
from r1lit.rewards import Reward
from r1lit.rollout import SamplingConfig


class ConstantReward(Reward):
    """Every completion scores 1: all advantages are 0, so any gradient comes from the entropy bonus."""

    def __call__(self, prompts, completions, answers):
        return [1.0] * len(completions)


def test_token_entropy_by_hand():
    """Guards the value and the gradient of the bonus: logits (ln 3, 0) give p = (3/4, 1/4),
    H = -(3/4 ln 3/4 + 1/4 ln 1/4) = 0.562335 and dH/dz_i = -p_i (ln p_i + H) = (-0.205990, +0.205990)."""
    logits = torch.tensor([[[math.log(3.0), 0.0]]], requires_grad=True)
    h = token_entropy(logits, torch.logsumexp(logits, dim=-1))
    H = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert float(h.detach()) == pytest.approx(H)
    h.sum().backward()
    expected = [-0.75 * (math.log(0.75) + H), -0.25 * (math.log(0.25) + H)]
    torch.testing.assert_close(logits.grad.view(-1), torch.tensor(expected))
    assert expected[0] == pytest.approx(-0.205990, abs=1e-6)


def test_high_entropy_mask_by_hand():
    """Guards the quantile over masked-in tokens only (the padded 5.0 must not raise the threshold)."""
    entropy = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.3, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # the 5 real tokens sorted: 0.1 0.3 0.5 0.7 0.9; the 0.6-quantile (top 40 %) interpolates at 0.6·4 = 2.4:
    # 0.5 + 0.4·(0.7 − 0.5) = 0.58 -> kept: 0.9 and 0.7
    assert high_entropy_mask(entropy, mask, 0.4).tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    assert high_entropy_mask(entropy, mask, 1.0).tolist() == mask.float().tolist()


def _quantile_mask(entropy, mask, quantile):
    """The mask as ``torch.quantile`` defines it (linear interpolation): usable below 2^24 tokens only."""
    mask = mask.bool()
    threshold = torch.quantile(entropy[mask].float(), 1.0 - quantile)
    return ((entropy >= threshold) & mask).float()


@pytest.mark.parametrize("quantile", [0.2, 0.25, 0.5, 0.01, 0.999])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (8, 33), (16, 500)])
def test_high_entropy_mask_equals_the_quantile_definition(shape, quantile):
    """Guards the selection rewrite: on inputs torch.quantile accepts, the same tokens, ties and padding included."""
    g = torch.Generator().manual_seed(shape[0] * 1000 + shape[1])
    entropy = torch.rand(shape, generator=g)
    entropy[:, ::3] = entropy[:, :1].clone()  # ties across a row
    mask = (torch.rand(shape, generator=g) < 0.8).long()
    mask[0, 0] = 1
    assert torch.equal(high_entropy_mask(entropy, mask, quantile), _quantile_mask(entropy, mask, quantile))


def test_high_entropy_mask_with_exact_ranks_by_hand():
    """Guards the boundary where pos = (1 - q)(n - 1) is a whole number: entropies 0..10, q = 0.2 -> pos = 8, the
    threshold is the value 8 itself, so 8, 9, 10 are kept (3 tokens); q = 0.25 -> pos 7.5, threshold 7.5: 8, 9, 10."""
    entropy = torch.arange(11, dtype=torch.float32).view(1, 11)
    mask = torch.ones(1, 11)
    assert high_entropy_mask(entropy, mask, 0.2).tolist() == [[0.0] * 8 + [1.0] * 3]
    assert high_entropy_mask(entropy, mask, 0.25).tolist() == [[0.0] * 8 + [1.0] * 3]
    assert high_entropy_mask(entropy, mask, 0.3).tolist() == [[0.0] * 7 + [1.0] * 4]  # pos 7: threshold 7


def test_high_entropy_mask_above_the_quantile_limit():
    """Guards pytorch#64947: 1025 x 16384 = 16793600 trained tokens (over 2^24) with q = 0.2. Entropies are the
    token's index, so pos = 0.8 x 16793599 = 13434879.2 and every value from 13434880 up is kept: 3358720 tokens."""
    n = 1025 * 16384
    assert n > 2 ** 24
    entropy = torch.arange(n, dtype=torch.float64).view(1025, 16384).flip(0)  # rows in reverse: order must not matter
    mask = torch.ones(1025, 16384, dtype=torch.long)
    kept = high_entropy_mask(entropy, mask, 0.2)
    assert int(kept.sum()) == 3358720
    assert float(entropy[kept.bool()].min()) == 13434880.0


def fit_grads(model_dir, micro_batch_size: int, reward=None, **entropy) -> tuple[dict, dict]:
    L.seed_everything(0)
    module = GRPOModule(
        str(model_dir), rewards=[reward or LengthReward()], sampling=SamplingConfig(max_tokens=12), num_generations=4,
        micro_batch_size=micro_batch_size, max_grad_norm=None, loss=GRPOLoss(entropy=EntropyConfig(**entropy)),
    )
    data = MathDataModule(ArithmeticSource(num_problems=16), tokenizer=str(model_dir), batch_size=2, check_gold=False)
    seen = {}

    class Capture(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            seen["grads"] = {n: p.grad.clone() for n, p in pl_module.policy.named_parameters() if p.grad is not None}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen["metrics"] = dict(trainer.callback_metrics)

    L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=0, callbacks=[Capture()]).fit(module, data)
    return seen["grads"], seen["metrics"]


def test_entropy_bonus_gives_the_only_gradient_when_advantages_are_zero(tiny_model_dir):
    """Guards that the bonus reaches the gradient (and that it is off at 0)."""
    off, _ = fit_grads(tiny_model_dir, 8, ConstantReward())
    on, _ = fit_grads(tiny_model_dir, 8, ConstantReward(), coef=0.5)
    assert all(float(g.abs().max()) == 0.0 for g in off.values())
    assert sum(float(g.abs().sum()) for g in on.values()) > 0.0


@pytest.mark.parametrize("options", [{"coef": 0.1}, {"top_quantile": 0.2}], ids=["bonus", "quantile"])
def test_entropy_options_keep_micro_batches_equal_to_one_batch(tiny_model_dir, options):
    """Guards normalisation: the bonus uses the loss's token weights and the quantile threshold is taken over the
    whole rollout, so 4 micro-batches of 2 give one batch of 8's gradient."""
    big, metrics = fit_grads(tiny_model_dir, 8, **options)
    small, _ = fit_grads(tiny_model_dir, 2, **options)
    for name, grad in big.items():
        torch.testing.assert_close(small[name], grad, rtol=1e-4, atol=1e-7)
    plain, _ = fit_grads(tiny_model_dir, 8)
    assert any(not torch.allclose(plain[n], g) for n, g in big.items())  # the option changed the gradient
    if "top_quantile" in options:  # the trained 20 % are the high-entropy tokens
        assert float(metrics["entropy/trained"]) > float(metrics["entropy"])


def test_bad_entropy_settings_fail_at_construction(tiny_model_dir):
    with pytest.raises(ConfigError, match="top_quantile"):
        EntropyConfig(top_quantile=0.0)
