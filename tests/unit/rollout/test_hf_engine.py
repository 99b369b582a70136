"""HFEngine samples from SamplingConfig alone (trl#5783, #6337, #4647: a checkpoint's generation_config.json must
not change sampling), and its sampler log-probs are finite on padding even under a truncating sampler
(NeMo-RL#4154: top_p/top_k/min_p write -inf after a row's EOS)."""

import lightning as L
import pytest
import torch
from transformers import AutoModelForCausalLM, GenerationConfig

from custom_rewards import LengthReward
from r1lit.data import ArithmeticSource, MathDataModule
from r1lit.grpo.importance_sampling import GeometricSequenceMask, ImportanceSampling, MaskedImportanceSampling
from r1lit.grpo.losses import GRPOLoss
from r1lit.module import GRPOModule
from r1lit.policy.loading import load_tokenizer
from r1lit.rollout import SamplingConfig
from r1lit.rollout.hf import HFEngine

PROMPTS = [[5, 6, 7], [8, 9, 10, 11], [12, 13]]


class EarlyEOSEngine(HFEngine):
    """Half the vocabulary ends a completion: most rows end early, so padding follows their EOS."""

    def bind(self, policy, tokenizer):
        super().bind(policy, tokenizer)
        self.eos_ids = sorted(set(self.eos_ids) | set(range(0, 400, 2)))


def _engine(model_dir, generation_config: dict | None = None, early_eos: bool = True) -> HFEngine:
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    if generation_config is not None:
        model.generation_config = GenerationConfig(**{**model.generation_config.to_dict(), **generation_config})
    engine = EarlyEOSEngine(return_logprobs=True) if early_eos else HFEngine(return_logprobs=True)
    engine.bind(model, load_tokenizer(str(model_dir)))
    return engine


def _trainer_logprobs(engine: HFEngine, rollout, temperature: float) -> torch.Tensor:
    """The policy's own log-probs of the sampled tokens at ``temperature``, [N, C]."""
    ids, attention = rollout.sequences()
    with torch.no_grad():
        logits = engine.model(input_ids=ids, attention_mask=attention).logits.float()  # [N, P + C, V]
    P = rollout.prompt_ids.shape[1]
    logp = torch.log_softmax(logits[:, P - 1:-1] / temperature, dim=-1)  # [N, C, V]
    return logp.gather(-1, rollout.completion_ids.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("sampling", [
    SamplingConfig(max_tokens=10, top_p=0.9),
    SamplingConfig(max_tokens=10, top_k=5),
    SamplingConfig(max_tokens=10, min_p=0.1),
    SamplingConfig(max_tokens=10, top_p=0.5, top_k=20, temperature=0.7),
    SamplingConfig(max_tokens=10, min_p=0.5, temperature=1.3),
    SamplingConfig(max_tokens=10, top_p=0.95, min_p=0.05, top_k=100),
], ids=["top_p", "top_k", "min_p", "top_p+top_k+T", "min_p+T", "all_three"])
def test_truncating_samplers_leave_finite_zeros_on_padding(tiny_model_dir, sampling):
    """Guards -inf on padding: positions after a row's EOS hold exactly 0, every value is finite, and the
    completions that ended early are there to be tested."""
    engine = _engine(tiny_model_dir)
    rollout = engine.generate(PROMPTS, n=4, sampling=sampling, seed=3)
    mask = rollout.completion_mask.bool()
    assert (~mask).any(), "no row ended early: the padding this test guards is absent"
    assert torch.isfinite(rollout.sampler_logprobs).all()
    assert (rollout.sampler_logprobs[~mask] == 0).all()
    assert (rollout.sampler_logprobs[mask] <= 0).all()


@pytest.mark.parametrize("flags", [
    {"epsilon_cutoff": 0.003},
    {"min_new_tokens": 8},
    {"top_k": 3},
    {"eta_cutoff": 0.01},
    {"typical_p": 0.3},
    {"no_repeat_ngram_size": 1},
    {"suppress_tokens": list(range(0, 400, 2))},
    {"temperature": 0.2, "top_p": 0.3, "repetition_penalty": 1.8},
    {"do_sample": False},
    {"max_new_tokens": 3},
    {"bad_words_ids": [[7], [9]]},
], ids=lambda f: "+".join(f))
def test_checkpoint_generation_flags_do_not_reach_sampling(tiny_model_dir, flags):
    """Guards inherited generation_config.json flags: a checkpoint carrying them samples exactly what a clean one
    samples with the same seed, and the sampler's log-probs equal the trainer's (SamplingConfig is all they assume)."""
    sampling = SamplingConfig(max_tokens=10, temperature=0.9)
    clean = _engine(tiny_model_dir).generate(PROMPTS, n=4, sampling=sampling, seed=11)
    engine = _engine(tiny_model_dir, generation_config=flags)
    flagged = engine.generate(PROMPTS, n=4, sampling=sampling, seed=11)
    assert torch.equal(flagged.completion_ids, clean.completion_ids)
    assert torch.equal(flagged.completion_mask, clean.completion_mask)
    mask = flagged.completion_mask.bool()
    trainer = _trainer_logprobs(engine, flagged, sampling.temperature)
    assert (trainer[mask] - flagged.sampler_logprobs[mask]).abs().max() < 1e-4
    for key, value in flags.items():  # the checkpoint's own config is untouched (it is what an export writes)
        assert getattr(engine.model.generation_config, key) == value


def test_no_top_k_means_no_top_k(tiny_model_dir):
    """Guards transformers' default top_k of 50 filling an unset field: with top_k 0 every one of the ~400 tokens
    can be sampled, so the sampler's log-probs are the untruncated ones."""
    sampling = SamplingConfig(max_tokens=6, temperature=3.0)  # flat: tokens beyond the top 50 are likely
    engine = _engine(tiny_model_dir, early_eos=False)
    rollout = engine.generate(PROMPTS, n=8, sampling=sampling, seed=0)
    mask = rollout.completion_mask.bool()
    trainer = _trainer_logprobs(engine, rollout, sampling.temperature)
    assert (trainer[mask] - rollout.sampler_logprobs[mask]).abs().max() < 1e-4


@pytest.mark.parametrize("correction", [
    ImportanceSampling(cap=2.0), ImportanceSampling(level="sequence", cap=2.0),
    MaskedImportanceSampling(level="sequence", upper=4.0), GeometricSequenceMask(upper=2.0),
], ids=["IS-token", "IS-sequence", "MIS-sequence", "geometric"])
def test_one_step_fit_with_top_p_and_a_correction_is_finite(tiny_model_dir, correction):
    """Guards the NaN loss of a 1-step fit with top_p 0.9 and importance sampling, and the silent zeroing of
    early-ended completions by sequence-level corrections. top_p moves the sampler's log-probs from the trainer's by
    its renormalisation only: each token's ratio is the kept mass, in [0.9, 1], so a 12-token product stays above
    0.9^12 = 0.28 and a geometric mean above 0.9, inside these ranges: nothing may be masked."""
    L.seed_everything(0)
    module = GRPOModule(
        str(tiny_model_dir), rewards=[LengthReward()], engine=EarlyEOSEngine(return_logprobs=True),
        sampling=SamplingConfig(max_tokens=12, top_p=0.9), num_generations=4, micro_batch_size=4,
        loss=GRPOLoss(importance_sampling=correction),
    )
    with torch.no_grad():  # a peaked distribution (the random tiny model's is nearly flat): top_p 0.9 cuts tokens
        module.policy.get_output_embeddings().weight.mul_(10.0)
    data = MathDataModule(ArithmeticSource(num_problems=16), tokenizer=str(tiny_model_dir), batch_size=2, check_gold=False)
    seen = {}

    class Watch(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.update({k: float(v) for k, v in trainer.callback_metrics.items()})

    L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, limit_val_batches=0, callbacks=[Watch()]).fit(module, data)
    loss = [v for k, v in seen.items() if k.endswith("loss")]
    assert loss and all(torch.isfinite(torch.tensor(v)) for v in seen.values()), seen
    masked = [v for k, v in seen.items() if k.endswith("is_masked_ratio")]
    assert masked == [0.0], seen
