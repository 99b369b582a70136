"""MathDataModule: problems → prompt token ids, with gold answers checked before training starts."""

from __future__ import annotations

import random
import re

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader

from r1lit.data.batch import ProblemBatch
from r1lit.data.extra import ExtraProblems
from r1lit.data.prompts import ChatPrompt, PromptTemplate
from r1lit.data.sampler import ResumableLoader, ResumableSampler
from r1lit.data.sources import ProblemSource
from r1lit.errors import ConfigError, DataError
from r1lit.policy.loading import load_tokenizer
from r1lit.grading.golds import is_prose_gold
from r1lit.grading.verifier import SafeVerifier

SHOWN_EXAMPLES = 3  # dropped golds quoted in the load report, per reason
HELD_OUT = "heldout"  # the name of the val_size / val_source set next to named validation sets


class MathDataModule(L.LightningDataModule):
    """Loads problems from a source, renders prompts, drops those over ``max_prompt_length`` tokens and rejects gold
    answers that cannot be graded (they could never be rewarded correctly): prose (``Proof``, a sentence; see
    ``r1lit.grading.golds``) and golds that neither parse nor read as well-formed text. The load report counts each
    reason and quotes a few of the dropped golds. Batches are ``ProblemBatch``es; the module samples G completions
    for each problem.
    """

    def __init__(
        self,
        source: ProblemSource,
        tokenizer: str,
        prompt: PromptTemplate | None = None,
        batch_size: int = 8,
        max_prompt_length: int = 256,
        val_size: int = 0,
        seed: int = 42,
        check_gold: bool = True,
        num_workers: int = 0,
        val_source: ProblemSource | None = None,
        val_sources: dict[str, ProblemSource] | None = None,
        lookahead: bool = False,
    ):
        """
        Args:
            source: where problems come from (``DatasetSource`` for hub ids and local files, ``ArithmeticSource``).
            tokenizer: tokenizer name or path; the CLI links it to ``model.model_name_or_path``.
            prompt: how a problem becomes prompt text: ``ChatPrompt`` (None = its defaults: the R1-Zero system prompt
                through the chat template) or ``PlainPrompt`` for base models.
            batch_size: prompts per training step per rank; each yields ``num_generations`` completions.
            max_prompt_length: prompts longer than this many tokens are dropped (and counted).
            val_size: problems held out for validation (0 = none).
            seed: seed of the train/validation split and of each epoch's shuffle order (the order of epoch e
                depends only on seed and e, which is what lets a resumed run continue mid-epoch).
            check_gold: check every gold answer at load time and drop prose golds and golds that do not parse.
            num_workers: DataLoader worker processes.
            val_source: held-out problems from another source than the training set (e.g. a local MATH-500
                file: ``DatasetSource`` with ``path: math500.jsonl, preset: math``), prepared like the training
                problems; None = hold ``val_size`` problems out of ``source``. Give one or the other.
            val_sources: named validation sets, each logged apart as ``val/<name>/accuracy`` (and its other
                ``val/<name>/…`` metrics) with ``val/accuracy`` their mean: e.g. ``math500: {class_path:
                DatasetSource, init_args: {path: HuggingFaceH4/MATH-500, split: test}}`` and ``gsm8k: {…
                openai/gsm8k, name: main, split: test}`` (presets for MATH-500, GSM8K, AIME, AMC are found from
                the hub id). With ``val_size`` or ``val_source`` too, that set is one more, named ``heldout``.
            lookahead: each training batch also carries its successor (``ProblemBatch.next``) for one-step-off
                generation; the ``r1lit`` command sets it from ``model.async_generation``.
        """
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        if max_prompt_length < 1 or val_size < 0:
            raise ConfigError("data.max_prompt_length must be >= 1 and data.val_size >= 0")
        if val_source is not None and val_size:
            raise ConfigError(f"data.val_source and data.val_size={val_size} both ask for validation problems: set "
                              "val_size: 0 to validate on val_source, or drop val_source to hold problems out")
        self.val_source = val_source
        self.val_sources = dict(val_sources or {})
        for name in self.val_sources:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or (name == HELD_OUT and (val_size or val_source)):
                raise ConfigError(f"data.val_sources name {name!r}: use letters, digits, '_', '.' or '-' (it becomes "
                                  f"the metric prefix val/{name}/), and not {HELD_OUT!r} next to val_size/val_source")
        self.source, self.tokenizer_name = source, tokenizer
        self.prompt = prompt if prompt is not None else ChatPrompt()
        self.batch_size, self.max_prompt_length, self.val_size = batch_size, max_prompt_length, val_size
        self.seed, self.check_gold, self.num_workers = seed, check_gold, num_workers
        self.train_set: list[dict] | None = None
        self.val_set: list[dict] = []
        self.val_sets: dict[str, list[dict]] = {}  # named validation sets, in val_names order
        self.stats: dict[str, int] = {}
        self._resume: dict | None = None  # data position from a checkpoint, applied when the loader is built
        self._extra: ExtraProblems | None = None  # this rank's stream of problems drawn beyond the batches
        self.lookahead = lookahead

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        tokenizer = load_tokenizer(self.tokenizer_name)
        examples, self.stats = self._prepare(self.source, tokenizer)
        random.Random(self.seed).shuffle(examples)
        if self.val_size >= len(examples):
            raise DataError(f"data.val_size={self.val_size} leaves no training problems out of {len(examples)}")
        self.val_set, self.train_set = examples[: self.val_size], examples[self.val_size :]
        if self.val_source is not None:
            self.val_set, _ = self._prepare(self.val_source, tokenizer)
        if self.val_sources:
            self.val_sets = {HELD_OUT: self.val_set} if self.val_set else {}
            self.val_sets.update({name: self._prepare(source, tokenizer)[0] for name, source in self.val_sources.items()})
        if len(self.train_set) < self.batch_size:
            raise DataError(
                f"only {len(self.train_set)} training problems for data.batch_size={self.batch_size}; lower the batch size"
            )

    def _prepare(self, source: ProblemSource, tokenizer) -> tuple[list[dict], dict[str, int]]:
        """A source's problems with an answer, a parsable gold and a prompt within ``max_prompt_length``, rendered
        and tokenised; and the counts of what was dropped."""
        records = source.load()
        if not records:
            raise DataError(f"{source.describe()} holds no problems; point data.source at a non-empty dataset")
        stats = {"loaded": len(records), "no_answer": 0, "prose_gold": 0, "unparsable_gold": 0, "too_long": 0}
        kept = []
        for record in records:
            if record["answer"] is None or not str(record["problem"]).strip():
                stats["no_answer"] += 1
            else:
                kept.append(record)
        dropped: dict[str, list[str]] = {"prose_gold": [], "unparsable_gold": []}
        if self.check_gold and kept:
            prose = [is_prose_gold(r["answer"]) for r in kept]
            dropped["prose_gold"] = [r["answer"] for r, p in zip(kept, prose) if p]
            kept = [r for r, p in zip(kept, prose) if not p]
            verifier = SafeVerifier(batch_timeout=max(60.0, len(kept) / 50))
            try:
                parses = verifier.run([(None, r["answer"]) for r in kept])
            finally:
                verifier.close()
            dropped["unparsable_gold"] = [r["answer"] for r, ok in zip(kept, parses) if ok != 1.0]
            kept = [r for r, ok in zip(kept, parses) if ok == 1.0]
            stats["prose_gold"], stats["unparsable_gold"] = len(dropped["prose_gold"]), len(dropped["unparsable_gold"])
        examples = []
        for record in kept:
            text = self.prompt.render(record["problem"], tokenizer)
            ids = tokenizer(text, add_special_tokens=self.prompt.add_special_tokens)["input_ids"]
            if len(ids) > self.max_prompt_length:
                stats["too_long"] += 1
                continue
            examples.append({"problem": record["problem"], "answer": record["answer"], "prompt": text, "prompt_ids": ids})
        stats["kept"] = len(examples)
        rank_zero_info(
            f"[r1lit] {source.describe()}: {stats['loaded']} loaded, {stats['no_answer']} without an answer, "
            f"{stats['prose_gold']} with prose gold (not a mathematical answer), {stats['unparsable_gold']} with "
            f"unparsable gold, {stats['too_long']} over {self.max_prompt_length} prompt tokens, {stats['kept']} kept"
            + "".join(_examples(reason, golds) for reason, golds in dropped.items())
        )
        if not examples:
            raise DataError(
                f"no usable problems left from {source.describe()} ({stats}); check the field names, "
                "raise data.max_prompt_length, or set data.check_gold: false if your answers are not maths (then use a "
                "reward of your own: AccuracyReward scores prose golds 0)"
            )
        return examples, stats

    def train_dataloader(self) -> DataLoader:
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        if len(self.train_set) < self.batch_size * world:
            raise DataError(
                f"{len(self.train_set)} training problems cannot fill data.batch_size={self.batch_size} on {world} "
                "ranks; lower the batch size or use more problems"
            )
        sampler = ResumableSampler(len(self.train_set), self.batch_size, world, rank, self.seed)
        if self._extra is None or (self._extra.num_replicas, self._extra.rank) != (world, rank):  # keep the count
            self._extra = ExtraProblems(len(self.train_set), world, rank, self.seed)  # if the loader is rebuilt
        if self._resume is not None:
            state, self._resume = self._resume, None
            self._extra.drawn = state.get("extra_drawn", 0)
            batches_done = state["batches_done"]
            if state["world_size"] != world:  # same samples consumed, counted in this run's per-rank batches
                batches_done = batches_done * state["world_size"] // world
                rank_zero_info(f"[r1lit] resuming on {world} ranks a run saved on {state['world_size']}: the data "
                               "order of the resumed epoch is not the uninterrupted run's")
            sampler.resume(state["epoch"], batches_done)
        return ResumableLoader(
            self.train_set, batch_size=self.batch_size, sampler=sampler, drop_last=True, collate_fn=ProblemBatch.collate,
            num_workers=self.num_workers, lookahead=self.lookahead,
        )

    def draw_extra(self, count: int) -> ProblemBatch:
        """``count`` more training problems for this rank, beyond its batches (dynamic sampling), as a batch. Every
        rank draws the same number, so the count saved by rank 0 is every rank's."""
        if self._extra is None:
            raise RuntimeError("draw_extra is called during training, after train_dataloader")
        return ProblemBatch.collate([self.train_set[i] for i in self._extra.draw(count)])

    def state_dict(self) -> dict:
        """The data position: batches (per rank) the current epoch has trained on, and problems (per rank) drawn
        beyond them; saved in every checkpoint."""
        if self.trainer is None:
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": self.trainer.current_epoch, "batches_done": progress.processed,
                "world_size": self.trainer.world_size, "seed": self.seed,
                "extra_drawn": self._extra.drawn if self._extra is not None else 0}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if state.get("seed") != self.seed:
            raise ConfigError(
                f"the checkpoint was trained with data.seed={state.get('seed')}, this config has {self.seed}: the "
                "resumed run would see other problems. Set data.seed back, or start a new run without --ckpt_path"
            )
        self._resume = state

    @property
    def val_names(self) -> list[str]:
        """Names of the validation sets, in the order of ``val_dataloader``'s loaders; [] = one unnamed set."""
        return list(self.val_sets)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """One loader for the unnamed set; one per named set (``val_names`` order) with ``val_sources``."""
        def loader(examples: list[dict]) -> DataLoader:
            return DataLoader(examples, batch_size=self.batch_size, shuffle=False, collate_fn=ProblemBatch.collate,
                              num_workers=self.num_workers)

        if self.val_sets:
            return [loader(examples) for examples in self.val_sets.values()]
        return loader(self.val_set)


def _examples(reason: str, golds: list[str]) -> str:
    """A line quoting the first few golds dropped for ``reason``, or nothing."""
    if not golds:
        return ""
    shown = ", ".join(repr(g if len(g) <= 60 else g[:57] + "...") for g in golds[:SHOWN_EXAMPLES])
    more = f" and {len(golds) - SHOWN_EXAMPLES} more" if len(golds) > SHOWN_EXAMPLES else ""
    return f"\n[r1lit]   dropped {reason.replace('_', ' ')}: {shown}{more}"

