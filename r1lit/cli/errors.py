"""What the ``r1lit`` command prints when it fails: one line that names the cause and the fix, first on stderr.

The line comes from r1lit's own error when one is anywhere in the exception's chain (also when jsonargparse wraps it
in its "Does not validate against any of the Union subtypes" wall), else from jsonargparse's parse message turned
into the setting and its fix (unknown class paths get the close matches among r1lit's classes), else the exception
itself. The traceback goes to a log file named on the second line; ``R1LIT_TRACEBACK=1`` prints it instead.
While a run starts (before its first batch) stderr is held, so that the lines printed before a failure (Lightning's
notices, warnings) come after the failure's line; a run that starts training prints them at once.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path

import yaml

from r1lit.errors import R1LitError

TRACEBACK_FLAG = "R1LIT_TRACEBACK"
USAGE = 2  # exit code of settings refused while parsing (argparse's); every other failure exits 1
_STATE_DICT = ("Error(s) in loading state_dict", "size mismatch for", "loaded state dict contains a parameter group")


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def explain(error: BaseException, argv: list[str]) -> str:
    """One line: what is wrong, which setting, and how to fix it."""
    for link in _chain(error):
        if isinstance(link, R1LitError):
            return str(link)
    text = str(error)
    if type(error).__name__ == "ArgumentError" or 'Parser key "' in text:
        return _parse_error(text, argv)
    mismatch = next((link for link in _chain(error) if any(m in str(link) for m in _STATE_DICT)), None)
    if mismatch is not None:
        return _other_config(mismatch)
    from r1lit.rollout.vllm.engine_process import memory_hint

    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(error).__name__}: {first}{memory_hint(first)}" if first else type(error).__name__


# Settings that live elsewhere in the config than a config written for r1lit 0.1 puts them: old key -> new key.
MOVED = {
    "model.importance_sampling": "model.loss.init_args.importance_sampling",
    "model.entropy_coef": "model.loss.init_args.entropy.coef",
    "model.top_entropy_quantile": "model.loss.init_args.entropy.top_quantile",
    "model.mask_truncated_completions": "model.loss.init_args.mask_truncated_completions",
    "model.torch_dtype": "model.policy.dtype",
    **{f"model.{name}": f"model.policy.{name}" for name in (
        "gradient_checkpointing", "attn_implementation", "logprob_chunk_tokens", "bf16_reference", "disable_dropout")},
}


def _moved(text: str) -> str | None:
    """A parse error about a setting that moved: where it lives now."""
    for old, new in MOVED.items():
        leaf = old.split(".", 1)[1]
        if re.search(rf"(--{re.escape(old)}\b|option '(model\.)?{re.escape(leaf)}[.'])", text):
            return f"{old} is set as {new}: move it there"
    return None


def _parse_error(text: str, argv: list[str]) -> str:
    if moved := _moved(text):
        return moved
    key = (re.search(r'Parser key "([^"]+)"', text) or [None, None])[1]
    name = re.search(r"Expected a dot import path string: (\S+)", text)
    if name:
        return _unknown_class(name[1], key, argv, "")
    given = re.search(r"Problem with given class_path '([^']+)':\s*\n\s*(.*)", text)
    if given:
        class_path, why = given[1], given[2].strip()
        inner = re.match(r'Parser key "([^"]+)":$', why)  # a wrong value of one of the class's arguments: its reason follows
        if inner:
            reason = next((ln.strip(" -") for ln in text[given.end():].splitlines() if ln.strip()), "")
            why = f"{inner[1]}: {reason}" if reason else why
        option = re.match(r"Option '([^']+)' is not accepted", why) or re.match(r'No action for key "([^"]+)"', why)
        if option:
            return _unknown_argument(class_path, option[1], key, argv)
        if why.startswith("No module named"):
            return _unknown_class(class_path, key, argv, f" ({why}: is its folder on PYTHONPATH?)")
        if why.startswith("module '"):
            return _unknown_class(class_path, key, argv, f" ({why})")
        return f"{_slot(key, class_path, argv)}: {class_path}: {why}"
    lines = [ln.strip(" -") for ln in text.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Parser key", "Does not validate", "Subtypes:", "Errors:",
                                                         "Given value", "Subclass types", "- a ", "a "))]
    detail = "; ".join(useful[:2]) or (lines[0] if lines else text)
    return f"{key}: {detail}" if key else detail


def _unknown_class(class_path: str, key: str | None, argv: list[str], why: str) -> str:
    short = class_path.rsplit(".", 1)[-1]
    names = list(known_classes(class_path))
    matches = difflib.get_close_matches(short, names, n=3, cutoff=0.8) or difflib.get_close_matches(short, names, 3, 0.6)
    hint = f"; did you mean {' or '.join(matches)}?" if matches else \
        "; name one of r1lit's classes by its short name, or your own by its full module path"
    return f"unknown class {class_path} for {_slot(key, class_path, argv)}{why}{hint}"


def _unknown_argument(class_path: str, option: str, key: str | None, argv: list[str]) -> str:
    cls = known_classes(class_path).get(class_path.rsplit(".", 1)[-1])
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")] if cls else []
    matches = difflib.get_close_matches(option, accepted, n=2, cutoff=0.6)
    hint = f"did you mean {' or '.join(matches)}?" if matches else f"it accepts: {', '.join(accepted) or 'nothing'}"
    return f"{class_path.rsplit('.', 1)[-1]} has no argument '{option}' (in {_slot(key, class_path, argv)}); {hint}"


def known_classes(class_path: str = "") -> dict[str, type]:
    """Short name → class for every public class of the imported r1lit modules, Lightning's callbacks and loggers,
    and the module a dotted ``class_path`` names (when it imports)."""
    import importlib

    modules = [m for n, m in sorted(sys.modules.items()) if n == "r1lit" or n.startswith("r1lit.")]
    for name in ("lightning.pytorch.callbacks", "lightning.pytorch.loggers"):
        modules.append(importlib.import_module(name))
    if "." in class_path:
        try:
            modules.append(importlib.import_module(class_path.rsplit(".", 1)[0]))
        except Exception:  # noqa: BLE001 - a module that does not import has no classes to offer
            pass
    found = {}
    for module in modules:
        for name, value in vars(module).items():
            if inspect.isclass(value) and not name.startswith("_"):
                found.setdefault(name, value)
    return found


def _slot(key: str | None, class_path: str, argv: list[str]) -> str:
    """``model.rewards[1]``: the key, with the list index where the config files put ``class_path``."""
    if not key:
        return "the config"
    for config in _config_files(argv):
        node = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, list):
            for index, item in enumerate(node):
                given = str(item.get("class_path") if isinstance(item, dict) else item)
                if given == class_path or given.rsplit(".", 1)[-1] == class_path.rsplit(".", 1)[-1]:
                    return f"{key}[{index}]"
    return key


def _config_files(argv: list[str]) -> list[dict]:
    configs = []
    for flag, value in zip(argv, argv[1:]):
        if flag in ("--config", "-c") and os.path.isfile(value):
            try:
                loaded = yaml.safe_load(Path(value).read_text())
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(loaded, dict):
                configs.append(loaded)
    return configs


def _other_config(error: BaseException) -> str:
    from r1lit.cli import resume

    first = next((ln.strip() for ln in str(error).splitlines() if "size mismatch" in ln or "Missing key" in ln
                  or "Unexpected key" in ln or "parameter group" in ln), str(error).splitlines()[0])
    if resume.resuming_from is None:
        return f"the checkpoint does not fit this config ({first}); resume with the config the run was trained with"
    differ = resume.settings_that_differ(resume.resuming_from, resume.configured_model or {})
    which = "; ".join(differ[:4]) if differ else first
    return (f"--ckpt_path {resume.resuming_from} was written by a run with other settings ({which}); resume with "
            "the run's own config (its config.yaml in the run folder)")


def exit_code(error: BaseException) -> int:
    return USAGE if type(error).__name__ == "ArgumentError" else getattr(error, "exit_code", 1)


def report(error: BaseException, argv: list[str]) -> None:
    """Print the one line, then where the traceback is (or the traceback, with ``R1LIT_TRACEBACK=1``), then the
    resume hint a failed fit carries."""
    print(f"r1lit: error: {explain(error, argv)}", file=sys.stderr, flush=True)
    if isinstance(error, R1LitError) and error.show_cause and error.__cause__ is not None:
        traceback.print_exception(error.__cause__)  # e.g. a user's own reward failed: its traceback finds the bug
    elif os.environ.get(TRACEBACK_FLAG) == "1":
        traceback.print_exception(error)
    else:
        log = Path(tempfile.gettempdir()) / f"r1lit-error-{os.getpid()}.log"
        try:
            log.write_text("".join(traceback.format_exception(error)))
            print(f"r1lit: the traceback is in {log} ({TRACEBACK_FLAG}=1 prints it here)", file=sys.stderr)
        except OSError:
            traceback.print_exception(error)
    hint = next((link.resume_hint for link in _chain(error) if getattr(link, "resume_hint", None)), None)
    if hint:
        print(hint, file=sys.stderr)
    sys.stderr.flush()


class HeldStderr:
    """Holds whatever is written to file descriptor 2 (Python, C libraries, logging handlers) in a temporary file
    until ``release``, which can print a line first. Only where ``sys.stderr`` is descriptor 2 (not under pytest's
    capture); child processes started while held write into the held file."""

    def __init__(self):
        self._saved: int | None = None
        self._file = None

    def hold(self) -> None:
        try:
            if sys.stderr.fileno() != 2 or self._saved is not None or os.environ.get(TRACEBACK_FLAG) == "1":
                return
        except (AttributeError, OSError, ValueError):
            return
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)

    def release(self, error: BaseException | None = None, argv: list[str] | None = None) -> None:
        """Give stderr back; with ``error``, its report comes before what was held."""
        if self._saved is not None:
            sys.stderr.flush()
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._saved = None
        if error is not None:
            report(error, argv or [])
        if self._file is not None:
            self._file.seek(0)
            while chunk := self._file.read(1 << 16):
                os.write(2, chunk)
            self._file.close()
            self._file = None


STARTUP = HeldStderr()
"""The ``r1lit`` command's stderr while a run starts; the run folder callback releases it at the first batch."""
