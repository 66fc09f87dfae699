"""Errors raised by the InfluxDB resource and IO manager.

Every error is either *transient* (a retry may succeed: network failures, 429, 5xx) or *terminal*
(a retry cannot help: bad request, authentication, missing database, type conflict). Only transient
errors are retried. Messages never contain tokens or passwords: the URL printed is the configured one
with any userinfo stripped, and server bodies are passed through :func:`redact`.
"""

from __future__ import annotations

from collections.abc import Iterable


class InfluxAssetsError(Exception):
    """Base class for every error raised by influx_assets."""


class TransientInfluxError(InfluxAssetsError):
    """A failure that a retry may heal (connection refused, timeouts, HTTP 429 and 5xx).

    Attributes:
        retry_after: seconds the server asked us to wait (``Retry-After``), if it said.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TerminalInfluxError(InfluxAssetsError):
    """A failure that a retry cannot heal; fix the input or the configuration."""


class ServerUnreachableError(TransientInfluxError):
    """The server did not answer (connection refused, DNS failure, timeout, reset)."""


class ServerBusyError(TransientInfluxError):
    """The server answered 429 or a 5xx status."""


class AuthenticationError(TerminalInfluxError):
    """The server rejected the credentials (401) or the token lacks permission (403)."""


class DatabaseNotFoundError(TerminalInfluxError):
    """The database (1.x) or bucket (2.x) does not exist."""


class BadRequestError(TerminalInfluxError):
    """The server rejected the request as malformed (400/422)."""


class PartialWriteError(BadRequestError):
    """The server wrote some lines of a batch and rejected others.

    Attributes:
        points_dropped: how many points the server says it rejected (``None`` if it did not say).
        reason: the server's explanation, with secrets redacted.
    """

    def __init__(self, message: str, points_dropped: int | None, reason: str) -> None:
        super().__init__(message)
        self.points_dropped = points_dropped
        self.reason = reason


class FieldTypeConflictError(BadRequestError):
    """A field was written with a type different from the one already stored in its shard.

    Attributes:
        points_dropped: how many points the server says it rejected (``None`` if it did not say).
        reason: the server's explanation, with secrets redacted.
    """

    def __init__(self, message: str, points_dropped: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.points_dropped = points_dropped
        self.reason = reason


class UnsupportedServerError(TerminalInfluxError):
    """The server lacks an API this operation needs (e.g. ``/api/v2/delete`` on InfluxDB 3)."""


class UnsupportedPartitionsError(TerminalInfluxError):
    """The asset's partitioning cannot be stored without deleting points other partitions own."""


class InvalidFrameError(TerminalInfluxError):
    """A DataFrame cannot be stored as asked (rows outside the window, non-finite values, bad tags)."""


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Return ``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
