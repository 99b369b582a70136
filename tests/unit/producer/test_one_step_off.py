"""One-step-off generation: which weights sample which step's rollout, exact resume with a rollout in flight, and
the configurations that cannot work. The engine is ``SnapshotEngine`` (HF generation from the engine's own copy of
the weights, changed only by pushes); the real vLLM process engine is tested in test_vllm_server.py."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from custom_rewards import LengthReward
from r1lit.callbacks import VLLMEngineCallback
from r1lit.data import ArithmeticSource, MathDataModule, ProblemBatch
from r1lit.data.sampler import ResumableLoader
from r1lit.errors import ConfigError
from r1lit.module import GRPOModule
from r1lit.rollout import HFEngine, SamplingConfig
from helpers import SnapshotEngine, adamw, fingerprint


class Watch(L.Callback):
    """Per step: the policy's fingerprint before the step, the prompts it trained on, its completions and staleness."""

    def __init__(self):
        self.before, self.prompts, self.texts, self.staleness = [], [], [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before.append(fingerprint(pl_module.policy))
        self.prompts.append(batch.prompt_ids)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.texts.append([c.text for g in outputs["groups"] for c in g.completions])
        self.staleness.append(float(trainer.callback_metrics["rollout/staleness"]))


def module(model_dir, async_generation=True, engine=None):
    L.seed_everything(0)
    return GRPOModule(
        str(model_dir), rewards=[LengthReward()], engine=engine or SnapshotEngine(), async_generation=async_generation,
        sampling=SamplingConfig(max_tokens=8, temperature=1.0), num_generations=2, micro_batch_size=4,
        optimizer=adamw(5e-3), max_grad_norm=None,
    )


def trainer(root, steps, *callbacks, **kwargs):
    return L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, limit_val_batches=0, default_root_dir=root,
                     callbacks=[VLLMEngineCallback(), *callbacks], **kwargs)


def data(model_dir, lookahead=True):
    return MathDataModule(ArithmeticSource(num_problems=40), tokenizer=str(model_dir), batch_size=2, check_gold=False,
                          lookahead=lookahead)


def test_each_step_trains_on_a_rollout_sampled_by_the_weights_one_update_older(tiny_model_dir, tmp_path):
    """Step 0 samples its own rollout; step k ≥ 1 trains on the rollout asked for during step k − 1, i.e. sampled by
    the weights the policy had before step k − 1, and logs staleness 1."""
    watch, mod = Watch(), module(tiny_model_dir)
    trainer(tmp_path, 4, watch, enable_checkpointing=False).fit(mod, data(tiny_model_dir))
    calls = mod.engine.calls
    assert len(set(watch.before)) == 4  # the weights moved every step, so the fingerprints can tell them apart
    assert watch.staleness == [0.0, 1.0, 1.0, 1.0]
    for step in range(4):
        sampled_by = [weights for prompts, weights in calls if prompts == watch.prompts[step]]
        assert len(sampled_by) == 1, step
        assert sampled_by[0] == watch.before[max(step - 1, 0)], step
    # the fifth batch's rollout was asked for during the last step (and is simply not trained on)
    assert len(calls) == 5


def test_synchronous_engine_samples_with_the_current_weights(tiny_model_dir, tmp_path):
    """The same engine without async_generation: staleness 0, each rollout from the weights before its own step."""
    watch, mod = Watch(), module(tiny_model_dir, async_generation=False)
    trainer(tmp_path, 3, watch, enable_checkpointing=False).fit(mod, data(tiny_model_dir, lookahead=False))
    assert watch.staleness == [0.0, 0.0, 0.0]
    assert [weights for _, weights in mod.engine.calls] == watch.before


def test_resume_with_a_rollout_in_flight_equals_the_uninterrupted_run(tiny_model_dir, tmp_path):
    """Saved after step 2 with step 3's rollout in flight (sampled by weights the checkpoint does not hold): the
    checkpoint keeps that rollout, and the resumed run's completions and final weights equal an uninterrupted run's."""
    whole, whole_mod = Watch(), module(tiny_model_dir)
    saver = ModelCheckpoint(dirpath=tmp_path, filename="{step}", every_n_train_steps=2, save_top_k=-1)
    trainer(tmp_path / "whole", 4, whole, saver).fit(whole_mod, data(tiny_model_dir))
    saved = torch.load(tmp_path / "step=2.ckpt", weights_only=False)["r1lit_in_flight"]
    assert saved["world_size"] == 1 and saved["ranks"][0]["rollout"]["texts"] == whole.texts[2]

    resumed, resumed_mod = Watch(), module(tiny_model_dir)
    trainer(tmp_path / "part", 4, resumed, enable_checkpointing=False).fit(
        resumed_mod, data(tiny_model_dir), ckpt_path=tmp_path / "step=2.ckpt")
    assert resumed.texts == whole.texts[2:]
    assert resumed.staleness == [1.0, 1.0]
    for (name, a), (_, b) in zip(whole_mod.policy.named_parameters(), resumed_mod.policy.named_parameters()):
        assert torch.equal(a, b), name


def test_lookahead_loader_hands_each_batch_its_successor():
    examples = [{"problem": str(i), "answer": "1", "prompt": "p", "prompt_ids": [i]} for i in range(7)]
    loader = ResumableLoader(examples, batch_size=2, drop_last=True, lookahead=True, collate_fn=ProblemBatch.collate)
    batches = list(loader)
    assert [b.problems for b in batches] == [["0", "1"], ["2", "3"], ["4", "5"]]
    assert [b.next.problems if b.next else None for b in batches] == [["2", "3"], ["4", "5"], None]
    plain = ResumableLoader(examples[:4], batch_size=2, collate_fn=ProblemBatch.collate)
    assert next(iter(plain)).next is None


def test_async_generation_without_the_datas_successors_fails_clearly(tiny_model_dir, tmp_path):
    """A module built in Python with async_generation and a datamodule without lookahead names the fix."""
    with pytest.raises(ConfigError, match="lookahead=True"):
        trainer(tmp_path, 1, enable_checkpointing=False).fit(module(tiny_model_dir), data(tiny_model_dir, False))


def test_async_generation_with_an_engine_that_shares_the_weights_is_refused(tiny_model_dir):
    with pytest.raises(ConfigError, match="VLLMServerEngine"):
        module(tiny_model_dir, engine=HFEngine())


def test_rollouts_in_flight_from_another_world_size_are_dropped_with_a_warning():
    """A checkpoint from 2 ranks holds rank 1's batch too: on 1 rank its rollouts cannot be the right ones."""
    from r1lit.producer.one_step_off import OneStepOff

    saved = {"world_size": 2, "ranks": [{"problems": ["a"]}, {"problems": ["b"]}]}
    pipeline = OneStepOff()
    with pytest.warns(UserWarning, match="generated on 2 ranks, this run has 1"):
        pipeline.load_state_dict(saved, rank=0, world_size=1)
    assert pipeline.restored is None and pipeline.take(["a"]) is None
    pipeline.load_state_dict(saved, rank=1, world_size=2)
    assert pipeline.restored == {"problems": ["b"]}
