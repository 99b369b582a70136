"""Errors that mean "your settings or data need a change": the CLI prints them without a stack trace."""


class R1LitError(Exception):
    """A problem with the user's settings, data or components; the message says how to fix it."""

    resume_hint: str | None = None
    """Where a failed run can resume from; filled in by ``GracefulStop`` when the error ends a fit."""

    show_cause: bool = False
    """Print the traceback of the exception this one was raised from (a user's own code failed: it finds the bug)."""


class ConfigError(R1LitError, ValueError):
    """Settings that cannot run, alone or in combination."""


class DataError(R1LitError, ValueError):
    """A dataset that is missing, empty, or lacks the fields asked for."""


class RewardError(R1LitError, RuntimeError):
    """A reward raised, or returned something other than one finite float per completion."""

    show_cause = True


class TrainingError(R1LitError, RuntimeError):
    """Training diverged (the loss or gradients stayed NaN/inf): a setting must change before resuming."""


class EngineError(R1LitError, RuntimeError):
    """The rollout engine failed or died (out of memory, a crashed vLLM worker)."""
