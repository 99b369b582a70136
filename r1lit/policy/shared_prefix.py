"""Completion log-probs with each distinct prompt computed once: GRPO's G completions of a prompt share its forward.

The unshared path (``CompletionLogprobs``) runs every row as [left padding, prompt, completion, right padding], so a
group of G completions computes its prompt G times, and every row pays for the micro-batch's longest prompt and
completion. Here the rows of a micro-batch that carry the same prompt (adjacent rows with equal prompt tokens: a GRPO
group, or the part of it in this micro-batch; a group of one is fine) are packed into one sequence

    [prompt, c1[:-1], c2[:-1], …, cG[:-1]]        (real tokens only: no padding inside a group)

with a 4-D attention mask under which each completion sees the prompt and its own earlier tokens, never another
completion, and position ids that restart at len(prompt) for each completion. Every completion token then sees the
same keys, values and positions as in its own row, so its log-prob is the same; the prompt's hidden states feed all
G completions, so backward sums their gradients into the prompt positions exactly as the G unshared rows would.
A completion's last token predicts nothing that is scored, so it is not fed; its first token is predicted by the
prompt's last position. A group longer than ``row_tokens`` is split into parts, each with its own copy of the prompt.
The groups (or parts) are then packed first-fit, longest first, into rows as long as the longest of them: the attention
kernel computes each row's whole square whatever the mask says, so one row per group costs R·L² where one long row of
them all would cost (R·L)², and filling rows with the shorter groups saves rows without lengthening any. Rows are
right-padded to the longest; pad positions see only themselves and nobody sees them.

It runs through the model's own forward (``input_ids``, a 4-D ``attention_mask``, ``position_ids``), so gradient
checkpointing, autocast, DeepSpeed ZeRO and the chunked LM head (``head_logprobs``) compose with it unchanged. A
model where that cannot give the unshared values (an attention kernel that takes no 4-D mask, such as
flash_attention_2; sliding-window layers; no ``position_ids``; or a probe that disagrees) uses the unshared path,
and says so once.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from r1lit.policy.compile import eager_layers
from r1lit.policy.logit_kernels import LogitKernels
from r1lit.policy.logprobs import CompletionLogprobs, EntropyMode, full_logprobs, head_logprobs, lm_parts

# attention implementations that take a custom 4-D mask: bool for sdpa, additive for eager
MASKED_KERNELS = ("sdpa", "eager")


@dataclass(frozen=True)
class Packed:
    """A micro-batch laid out as R packed rows of L tokens, and where each scored token's log-prob comes from and goes.

    M is the number of scored tokens (each row's completion tokens up to its length and ``width``)."""

    input_ids: Tensor  # [R, L]
    position_ids: Tensor  # [R, L]
    allowed: Tensor  # [R, 1, L, L] bool: query (dim 2) may attend to key (dim 3)
    source: tuple[Tensor, Tensor]  # (packed row [M], packed column [M]) of the hidden state that predicts each token
    targets: Tensor  # [M] the scored token ids
    dest: tuple[Tensor, Tensor]  # (batch row [M], completion index [M]) of each scored token


def pack(input_ids: Tensor, attention: Tensor, completion_len: int, width: int, row_tokens: int) -> Packed | None:
    """Lay out the micro-batch (input_ids/attention: [n, P + C], prompts padded anywhere, C = ``completion_len``) as
    shared-prompt packed rows. None when there is nothing to score, a prompt has no token, or a completion's mask
    is not ones then zeros (the layout keeps a completion's first tokens only)."""
    n, total = input_ids.shape
    P = total - completion_len
    prompts, prompt_mask = input_ids[:, :P], attention[:, :P].bool()  # [n, P]
    comp_mask = attention[:, P:P + width].bool()  # [n, width]
    lengths = comp_mask.sum(dim=1)  # [n]
    prefix = (comp_mask == (torch.arange(width, device=attention.device) < lengths[:, None])).all()
    same = ((prompts[1:] * prompt_mask[1:] == prompts[:-1] * prompt_mask[:-1])
            & (prompt_mask[1:] == prompt_mask[:-1])).all(dim=1)  # [n - 1]: row i + 1 has row i's prompt
    host = torch.cat([lengths, same.long(), prefix.long().view(1)]).tolist()  # one device → host sync
    lengths, same, prefix = host[:n], host[n:2 * n - 1], host[-1]
    prompt_mask = prompt_mask.cpu()
    if not prefix or sum(lengths) == 0 or not bool(prompt_mask.any(dim=1).all()):
        return None

    groups, start = [], 0  # [(first row, end row)] of adjacent rows with one prompt
    for i in range(1, n + 1):
        if i == n or not same[i - 1]:
            groups.append((start, i))
            start = i
    # a piece is a prompt copy and the completions fed after it: [(first row, prompt length, [(row, fed tokens)])];
    # a group whose completions do not fit row_tokens after one prompt copy is split into several pieces
    pieces: list[tuple[int, int, list[tuple[int, int]]]] = []
    for first, end in groups:
        p = int(prompt_mask[first].sum())
        for i in range(first, end):
            if lengths[i] == 0:
                continue
            k = lengths[i] - 1  # tokens fed: all but the last
            piece = pieces[-1] if pieces and pieces[-1][0] == first else None
            if piece is None or p + sum(f for _, f in piece[2]) + k > row_tokens:
                pieces.append((first, p, []))
            pieces[-1][2].append((i, k))
    # rows as long as the longest piece, filled first-fit in decreasing length: the attention kernel computes a
    # row's whole L × L square whatever the mask, so rows cost R·L² in attention and R·L in the other layers, and
    # fewer rows of the smallest possible L cost least
    sizes = [p + sum(k for _, k in fed) for _, p, fed in pieces]
    capacity = max(sizes)
    bins: list[list[int]] = []  # piece indices per packed row
    room: list[int] = []
    for j in sorted(range(len(pieces)), key=lambda j: -sizes[j]):
        r = next((r for r, free in enumerate(room) if free >= sizes[j]), None)
        if r is None:
            bins.append([])
            room.append(capacity)
            r = len(bins) - 1
        bins[r].append(j)
        room[r] -= sizes[j]
    # each packed row's segments: (flat token index [k], positions [k], first column of its prompt copy, the prompt
    # copy's length); a prompt copy is a segment of its own
    rows: list[list[tuple[Tensor, Tensor, int, int]]] = []
    sources, dests = [], []  # per completion: (packed row [k+1], packed column [k+1]), (batch row [k+1], index [k+1])
    for r, members in enumerate(bins):
        rows.append([])
        col = 0
        for j in members:
            first, p, fed = pieces[j]
            cols = prompt_mask[first].nonzero().squeeze(1)  # [p] the prompt's real tokens, wherever the padding is
            rows[-1].append((first * total + cols, torch.arange(p), col, p))
            home = col
            col += p
            for i, k in fed:
                rows[-1].append((i * total + P + torch.arange(k), p + torch.arange(k), home, p))
                # token j is predicted by the prompt's last column (j = 0) or by the completion's token j - 1
                sources.append((torch.full((k + 1,), r), torch.cat([torch.tensor([home + p - 1]), col + torch.arange(k)])))
                dests.append((torch.full((k + 1,), i), torch.arange(k + 1)))
                col += k

    device = input_ids.device
    L = max(sum(len(piece[0]) for piece in row) for row in rows)
    R = len(rows)
    flat = torch.zeros(R, L, dtype=torch.long)  # index into input_ids.view(-1); pads read token 0 of the batch
    positions = torch.zeros(R, L, dtype=torch.long)
    allowed = torch.zeros(R, L, L, dtype=torch.bool, device=device)  # [R, L(query), L(key)], filled block by block
    tril = torch.ones(L, L, dtype=torch.bool, device=device).tril()
    for r, row in enumerate(rows):
        col = 0
        for idx, pos, home_start, home_len in row:
            k = len(idx)
            flat[r, col:col + k], positions[r, col:col + k] = idx, pos
            if col != home_start:  # a completion sees its whole prompt copy
                allowed[r, col:col + k, home_start:home_start + home_len] = True
            allowed[r, col:col + k, col:col + k] = tril[:k, :k]  # and itself (a prompt: itself), causally
            col += k
        pads = torch.arange(col, L, device=device)
        allowed[r, pads, pads] = True  # pads see themselves: no query without a key
    src_row, src_col = (torch.cat(t).to(device) for t in zip(*sources))  # [M] each
    dst_row, dst_col = (torch.cat(t).to(device) for t in zip(*dests))  # [M] each
    return Packed(
        input_ids=input_ids.reshape(-1)[flat.to(device)], position_ids=positions.to(device),
        allowed=allowed.unsqueeze(1), source=(src_row, src_col), targets=input_ids[dst_row, P + dst_col],
        dest=(dst_row, dst_col),
    )


def attention_mask_for(model: nn.Module, allowed: Tensor) -> Tensor:
    """The 4-D mask in the form the model's attention kernel takes: bool for sdpa, additive (0 / the dtype's
    minimum, like transformers' own eager mask) for eager. allowed: [R, 1, L, L] bool."""
    if model.config._attn_implementation == "sdpa":
        return allowed
    dtype = model.get_input_embeddings().weight.dtype
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def unsupported(model: nn.Module) -> str | None:
    """Why the packed layout cannot give this model's unshared values (read from its config and signature), or None."""
    config = getattr(model, "config", None)
    if config is None:
        return "it has no transformers config"
    kernel = getattr(config, "_attn_implementation", None)
    if kernel not in MASKED_KERNELS:
        return f"its attention kernel {kernel!r} takes no custom 4-D mask (use attn_implementation sdpa or eager)"
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and any(t != "full_attention" for t in layer_types):
        return "it has sliding-window or other non-full attention layers"
    if layer_types is None and getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return "it uses sliding-window attention"
    if "position_ids" not in inspect.signature(model.forward).parameters:
        return "its forward takes no position_ids"
    return None


TWIN_SIZES = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
              "head_dim": 16, "vocab_size": 32}


def structural_twin(model: nn.Module) -> nn.Module | None:
    """A float32 model of the same class, attention kernel and layer kinds as ``model``, two layers of width 64 and
    a 32-token vocabulary, randomly initialised on the CPU (the global RNG untouched); None when the config cannot
    be shrunk into one. What the probe checks (the 4-D mask, position ids, the LM head's place) is the class's code
    path, which the twin shares; its weights are irrelevant, and its float32 sums leave no rounding to hide in."""
    config = copy.deepcopy(getattr(model, "config", None))
    if config is None or not hasattr(type(model), "_from_config"):
        return None
    for name, size in TWIN_SIZES.items():
        if hasattr(config, name):
            setattr(config, name, size)
    if getattr(config, "num_key_value_heads", None) is not None:  # keep grouped-query attention grouped
        grouped = model.config.num_key_value_heads < model.config.num_attention_heads
        config.num_key_value_heads = 2 if grouped else 4
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = list(config.layer_types[:2])
    if getattr(config, "max_window_layers", None) is not None:
        config.max_window_layers = min(config.max_window_layers, 2)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):  # ids must fit the small vocabulary
        if isinstance(getattr(config, name, None), int):
            setattr(config, name, 0)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            twin = type(model)._from_config(config, dtype=torch.float32,
                                            attn_implementation=model.config._attn_implementation)
    except Exception:  # noqa: BLE001 - any config that cannot be shrunk: the model itself is probed
        return None
    return twin.eval()


class SharedPrefixLogprobs:
    """``CompletionLogprobs``'s contract with each distinct prompt of a micro-batch computed once (see the module
    docstring); models that cannot take the packed layout use ``CompletionLogprobs`` itself, with one warning."""

    def __init__(self, temperature: float, chunk_tokens: int = 1024, chunked: bool = True, row_tokens: int = 2048,
                 kernels: LogitKernels | None = None):
        """
        Args:
            temperature: the sampling temperature; log-probs are of softmax(logits / temperature).
            chunk_tokens: tokens per chunk of the LM head (as ``CompletionLogprobs``).
            chunked: whether to go through the chunked LM head where the model allows it (as ``CompletionLogprobs``).
            row_tokens: the most tokens in one packed row; a group longer than this is split, each part with its
                own copy of the prompt. Rows are as long as the longest group (or part), and attention over a row
                costs the square of its length.
            kernels: the LM head's per-chunk log-prob math, eager or compiled (as ``CompletionLogprobs``).
        """
        if row_tokens < 1:
            raise ValueError(f"row_tokens must be >= 1, got {row_tokens}")
        self.unshared = CompletionLogprobs(temperature, chunk_tokens, chunked, kernels)
        self.kernels = self.unshared.kernels
        self.temperature, self.chunk_tokens, self.chunked = temperature, chunk_tokens, chunked
        self.row_tokens = row_tokens
        self._shares: dict[int, bool] = {}

    def uses_chunks(self, model: nn.Module) -> bool:
        """Whether log-probs go through the chunked LM head for this model (as ``CompletionLogprobs.uses_chunks``)."""
        return self.unshared.uses_chunks(model)

    def shares(self, model: nn.Module) -> bool:
        """Whether this model takes the packed path: its config allows it and a probe gives the unshared values
        (checked once per model; the first refusal is warned about)."""
        if id(model) not in self._shares:
            reason = unsupported(model) or self._probe(model)
            if reason:
                rank_zero_warn(f"[r1lit] shared-prefix log-probs are off for {type(model).__name__}: {reason}; "
                               "each completion is scored with its own copy of the prompt")
            self._shares[id(model)] = reason is None
        return self._shares[id(model)]

    def _probe(self, model: nn.Module) -> str | None:
        """Compare both paths on a short probe: None when they agree, else why not. The probe runs on a small
        float32 twin of the model (``structural_twin``): whether the layout is right is a property of the
        architecture's code path, and in bfloat16 a right layout still differs by several nats on unlikely tokens
        (SmolLM2-135M in bf16: 8.9). A float32 model is probed itself as well (a patched instance differs from its
        class); a model no twin can be built of only itself, at a tolerance for its dtype."""
        twin = structural_twin(model)
        reason = None if twin is None else self._compare(twin, atol=1e-4)
        fp32 = next(model.parameters()).dtype == torch.float32
        if reason is None and (twin is None or fp32):  # the model itself too, where its dtype lets the probe judge
            # fp32 kernels sum in another order over a packed row: deep models differ by ~1e-4 (SmolLM2-135M, 30
            # layers: 2.1e-4); a wrong mask or position is off by far more than 2e-3
            reason = self._compare(model, atol=2e-3 if fp32 else 5e-2)
        return reason

    @torch.no_grad()
    def _compare(self, model: nn.Module, atol: float) -> str | None:
        """The largest gap between both paths' log-probs on two completions sharing a left-padded prompt and a third
        row, in eval mode and the model's own dtype: None when it is at most ``atol``."""
        device = next(model.parameters()).device
        ids = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 7, 8, 9], [4, 2, 6, 1, 3, 5, 7]], device=device)
        attention = torch.tensor([[0, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1], [1] * 7], device=device)
        was_training = model.training
        model.eval()
        try:  # compiled layers (compile_layers) run their plain code: the probe's shapes would add compiles
            with torch.autocast(device.type, enabled=False), eager_layers():
                mine, _ = self._packed(model, pack(ids, attention, 3, 3, row_tokens=64), 3, 3, "none")
                theirs, _ = self.unshared(model, ids, attention, 3, 3)
        except (RuntimeError, TypeError, ValueError) as error:
            return f"the packed forward failed ({type(error).__name__}: {error})"
        finally:
            model.train(was_training)
        gap = float((mine - theirs).abs().max())
        return None if gap <= atol else f"a probe's log-probs differ from the unshared path's by {gap:.2g}"

    def __call__(self, model: nn.Module, input_ids: Tensor, attention: Tensor, completion_len: int, width: int,
                 entropy: EntropyMode = "none") -> tuple[Tensor, Tensor | None]:
        """Log-probs of the first ``width`` completion tokens; input_ids/attention: [n, P + C] (prompt padded,
        C = ``completion_len``, rows of one prompt adjacent). Returns (logps [n, width] float32, entropies [n, width]
        float32 or None), 0 where a completion has ended (the unshared path's values there are never trained on)."""
        packed = pack(input_ids, attention, completion_len, width, self.row_tokens) if self.shares(model) else None
        if packed is None:
            return self.unshared(model, input_ids, attention, completion_len, width, entropy)
        return self._packed(model, packed, input_ids.shape[0], width, entropy)

    def _packed(self, model: nn.Module, packed: Packed, n: int, width: int,
                entropy: EntropyMode) -> tuple[Tensor, Tensor | None]:
        inputs = dict(input_ids=packed.input_ids, attention_mask=attention_mask_for(model, packed.allowed),
                      position_ids=packed.position_ids, use_cache=False)
        targets = packed.targets.unsqueeze(0)  # [1, M]
        if self.uses_chunks(model):
            decoder, head = lm_parts(model)
            hidden = decoder(**inputs).last_hidden_state  # [R, L, H]
            logps, ent = head_logprobs(head, hidden[packed.source].unsqueeze(0), targets, self.temperature,
                                       self.chunk_tokens, entropy, self.kernels)  # [1, M] each
        else:
            keep = torch.unique(packed.source[1])  # [K] sorted: the columns whose logits are needed
            logits = model(**inputs, logits_to_keep=keep).logits  # [R, K, V]
            column = torch.searchsorted(keep, packed.source[1].contiguous())  # [M] each source's place in keep
            logits = logits[packed.source[0], column].unsqueeze(0)  # [1, M, V]
            logps, ent = full_logprobs(logits, targets, self.temperature, entropy)  # [1, M] each
        out = torch.zeros(n, width, dtype=torch.float32, device=logps.device).index_put(packed.dest, logps[0])
        if ent is None:
            return out, None
        return out, torch.zeros(n, width, dtype=torch.float32, device=logps.device).index_put(packed.dest, ent[0])
