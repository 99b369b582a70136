"""Kind 5 of issue 15 through a real step: a rollout whose only reward is a constant carries no signal, so the
update must leave every weight as it was (the README says such groups give advantage 0 and loss 0)."""

import lightning as L
import torch

from r1lit.data import ArithmeticSource, MathDataModule
from r1lit.grpo.losses import GRPOLoss
from r1lit.module import GRPOModule
from r1lit.rewards import Reward
from r1lit.rollout import SamplingConfig
from helpers import adamw


class ConstantReward(Reward):
    """Scores every completion ``value``."""

    def __init__(self, value: float = 0.7, **kwargs):
        """
        Args:
            value: the score of every completion.
        """
        super().__init__(**kwargs)
        self.value = value

    def __call__(self, prompts, completions, answers):
        return [self.value] * len(completions)


def test_constant_reward_moves_no_weight(tiny_model_dir):
    """Guards the float32 residue: with reward 0.7 everywhere, Adam turned advantages of ~6e-4 into ~1e-3 steps."""
    L.seed_everything(0)
    module = GRPOModule(
        str(tiny_model_dir), rewards=[ConstantReward(0.7)], loss=GRPOLoss(), sampling=SamplingConfig(max_tokens=8),
        num_generations=8, micro_batch_size=8, optimizer=adamw(1e-3), max_grad_norm=None,
    )
    before = {n: p.detach().clone() for n, p in module.policy.named_parameters()}
    data = MathDataModule(ArithmeticSource(num_problems=8), tokenizer=str(tiny_model_dir), batch_size=1, check_gold=False)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )
    trainer.fit(module, data)
    assert trainer.global_step == 1
    assert float(trainer.callback_metrics["loss"]) == 0.0
    for name, param in module.policy.named_parameters():
        assert torch.equal(param.detach(), before[name]), name
