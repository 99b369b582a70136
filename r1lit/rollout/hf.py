"""Rollouts with the policy's own ``generate``: the engine for CPU, tests, and machines without vLLM."""

from __future__ import annotations

import torch
from torch import nn
from transformers import GenerationConfig

from r1lit.errors import ConfigError
from r1lit.policy.compile import eager_layers
from r1lit.rollout.engine import RolloutEngine
from r1lit.rollout.types import Rollout, SamplingConfig, assemble_rollout, left_pad


def eos_token_ids(model: nn.Module, tokenizer) -> list[int]:
    """Every token id that ends a completion: the generation config's EOS ids, the tokenizer's, and the chat
    template's end of turn."""
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(gen_eos)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    ids.update(end_of_turn_ids(tokenizer))
    if not ids:
        raise ConfigError("neither the model's generation config nor the tokenizer names an EOS token; set tokenizer.eos_token")
    return sorted(ids)


def end_of_turn_ids(tokenizer) -> list[int]:
    """The special token the chat template closes an assistant turn with (ChatML's ``<|im_end|>``, Llama 3's
    ``<|eot_id|>``). A base checkpoint (Qwen2.5) names only ``<|endoftext|>`` as EOS, so without this a completion
    runs on past its turn into a new one."""
    if not getattr(tokenizer, "chat_template", None):
        return []
    marker = "r1lit-end-of-turn-probe"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}],
                                             tokenize=False)
    except Exception:  # noqa: BLE001 - a template that needs other roles or fields: no end of turn to learn
        return []
    tail = text.split(marker, 1)[1] if marker in text else ""
    ids = tokenizer.encode(tail, add_special_tokens=False) if tail.strip() else []
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", None) or {})
    return [ids[0]] if ids and ids[0] in special else []


def eos_and_pad(model: nn.Module, tokenizer) -> tuple[list[int], int]:
    """What every engine needs to cut and pad completions: the EOS ids, and the pad id (the first EOS when the
    tokenizer has no pad token)."""
    eos_ids = eos_token_ids(model, tokenizer)
    return eos_ids, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]


class HFEngine(RolloutEngine):
    """Samples with ``policy.generate`` on the policy's own weights, so there is nothing to push after a step."""

    def __init__(self, max_batch_size: int | None = None, return_logprobs: bool = False):
        """
        Args:
            max_batch_size: most prompts passed to one ``generate`` call (each expands to G sequences);
                None generates the whole batch at once. Lower it to bound the KV cache's memory.
            return_logprobs: also return the sampler's log-probs of the sampled tokens (after temperature, top-k
                and top-p), which lets the trainer measure how far its own log-probs are from generation's.
        """
        if max_batch_size is not None and max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be >= 1 or None, got {max_batch_size}")
        self.max_batch_size = max_batch_size
        self.return_logprobs = return_logprobs
        self.model: nn.Module | None = None
        self.tokenizer = None

    def bind(self, policy: nn.Module, tokenizer) -> None:
        self.model, self.tokenizer = policy, tokenizer
        self.eos_ids, self.pad_id = eos_and_pad(policy, tokenizer)

    def generation_config(self, sampling: SamplingConfig, n: int) -> GenerationConfig:
        """Every sampling setting of ``generate``, from ``sampling`` alone: what the trainer's log-probs assume.
        A checkpoint's ``generation_config.json`` (``epsilon_cutoff``, ``min_new_tokens``, a default ``top_k`` …)
        plays no part; its EOS ids are the engine's stop tokens (``eos_token_ids``)."""
        return GenerationConfig(
            do_sample=True,
            num_return_sequences=n,
            max_new_tokens=sampling.max_tokens,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,  # 0 = off (None would let transformers' default of 50 in)
            min_p=sampling.min_p or None,
            repetition_penalty=sampling.repetition_penalty,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            use_cache=True,
            output_scores=self.return_logprobs,
            return_dict_in_generate=True,
        )

    @torch.no_grad()
    def generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, seed: int | None = None) -> Rollout:
        if self.model is None:
            raise RuntimeError("HFEngine.generate called before bind(policy, tokenizer)")
        device = next(self.model.parameters()).device
        if seed is None:
            return self._generate(prompt_ids, n, sampling, device)
        # generate draws from the global generator: seed a forked copy so the caller's random state is untouched
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            return self._generate(prompt_ids, n, sampling, device)

    def _generate(self, prompt_ids: list[list[int]], n: int, sampling: SamplingConfig, device: torch.device) -> Rollout:
        model = self.model
        was_training = model.training
        model.eval()
        step = self.max_batch_size or len(prompt_ids)
        chunks, logprob_chunks = [], []
        config = self.generation_config(sampling, n)
        checkpoint_config = model.generation_config
        try:
            # transformers (5.19: GenerationMixin._prepare_generation_config) fills every field a passed config
            # leaves None from model.generation_config: swapped for the call, the checkpoint's flags cannot reach it.
            model.generation_config = config
            for start in range(0, len(prompt_ids), step):
                ids, mask = left_pad(prompt_ids[start:start + step], self.pad_id)  # [b, P]
                with eager_layers():  # a KV-cache pass: compiled layers (compile_layers) would recompile per layer
                    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                         generation_config=config)
                new = out.sequences[:, ids.shape[1]:]  # [b*n, c]
                chunks.append(new.cpu())
                if self.return_logprobs:
                    scores = torch.stack(out.scores, dim=1).float()  # [b*n, c, V] processed logits
                    logprob_chunks.append(scores.log_softmax(-1).gather(-1, new.unsqueeze(-1)).squeeze(-1).cpu())
        finally:
            model.generation_config = checkpoint_config
            model.train(was_training)
        width = max(c.shape[1] for c in chunks)
        pad = torch.nn.functional.pad
        completion_ids = torch.cat([pad(c, (0, width - c.shape[1]), value=self.pad_id) for c in chunks])  # [N, C]
        sampler_logprobs = None
        if self.return_logprobs:
            sampler_logprobs = torch.cat([pad(c, (0, width - c.shape[1])) for c in logprob_chunks])  # [N, C]
        return assemble_rollout(prompt_ids, n, completion_ids, sampler_logprobs, self.eos_ids, self.pad_id, self.tokenizer)
