"""Exceptions a user can cause, each with a message they can act on.

They carry no web or CLI imports: the server maps them to status codes and the
CLI prints them as one line.
"""


class PalletError(Exception):
    """Base class of every error pallet raises on purpose."""


def first_line(error: BaseException) -> str:
    """An error from elsewhere (a driver, a library) as one line: its message's first, or its type."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


class InvalidReference(PalletError):
    """A model reference that cannot be parsed (`name`, `name:3`, `name@alias`)."""


class ModelNotFound(PalletError):
    """A reference that names no stored model, version or alias."""


class IntegrityError(PalletError):
    """A stored file is missing or its sha256 does not match the manifest."""


class NoRuntime(PalletError):
    """No runtime can save this object, or load this framework."""


class InvalidInput(PalletError):
    """Inputs that do not match the model's signature."""


class PredictionError(PalletError):
    """The model itself raised while predicting."""


class RolloutError(PalletError):
    """Rollout settings that make no sense: weights, steps, thresholds, versions of another model."""


class RolloutConflict(PalletError):
    """A rollout change its current state forbids: a canary already running, nothing to roll back."""


class NoRollout(PalletError):
    """A name that has no rollout yet."""
