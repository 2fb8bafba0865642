"""The one table from exception to HTTP status, and the errors only a server raises."""

from __future__ import annotations

from pallet.errors import (IntegrityError, InvalidInput, InvalidReference, ModelNotFound, NoRollout, NoRuntime,
                           PalletError, PredictionError, RolloutConflict, RolloutError)


class BadRequest(PalletError):
    """The request itself is malformed: body, content type, fields."""


class PayloadTooLarge(PalletError):
    """The body is over the configured limit."""


class RequestTimeout(PalletError):
    """The client did not send the whole request in time."""


class UnsupportedMediaType(PalletError):
    """A content type the endpoint does not read."""


class NotAcceptable(PalletError):
    """An Accept type the endpoint cannot answer in."""


class Unauthorized(PalletError):
    """A missing or wrong API key."""


class Conflict(PalletError):
    """The request cannot be carried out in the server's current set-up."""


class ModelNotReady(PalletError):
    """The model is known but not loaded (yet, or any more)."""


class Unavailable(PalletError):
    """Something the server leans on (the database) cannot be reached now: retry shortly."""


class NonFiniteOutput(PalletError):
    """The model answered with NaN or infinity where its signature allows none: the input is
    likely outside what the model handles (a client's error to fix, not the server's)."""


class Overloaded(PalletError):
    """More requests wait for a model than its queue holds: shed the load, ask to retry."""

    retry_after_seconds = 1


STATUS: list[tuple[type[Exception], int]] = [
    (BadRequest, 400),
    (InvalidInput, 400),
    (InvalidReference, 400),
    (RolloutError, 400),
    (Unauthorized, 401),
    (ModelNotFound, 404),
    (NoRollout, 404),
    (NotAcceptable, 406),
    (RequestTimeout, 408),
    (Conflict, 409),
    (RolloutConflict, 409),
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (NoRuntime, 422),
    (IntegrityError, 422),  # a stored model whose files do not match their sha256 is never loaded
    (NonFiniteOutput, 422),
    (PredictionError, 500),
    (ModelNotReady, 503),
    (Overloaded, 503),
    (Unavailable, 503),
    (PalletError, 500),
]


def status_of(error: Exception) -> int:
    for kind, status in STATUS:
        if isinstance(error, kind):
            return status
    return 500
