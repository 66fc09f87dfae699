"""Exponential backoff with jitter for transient InfluxDB errors, honouring ``Retry-After``."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from influx_assets.influxdb.client.errors import TransientInfluxError

T = TypeVar("T")
log = logging.getLogger("influx_assets.influxdb")


@dataclass(frozen=True)
class RetrySettings:
    """How often and how long to retry a transient failure.

    The n-th retry waits ``min(max_delay, initial_delay * multiplier**n)`` scaled by a random factor in
    ``[1 - jitter, 1 + jitter]``; if the server sent ``Retry-After``, we wait at least that long —
    unless it asks for more than ``max_retry_after``: then we give up at once instead of holding a
    run (and its pool slot) for that long, and the step's own retry policy decides what comes next.
    Terminal errors (400, 401, 404, ...) are never retried.
    """

    max_attempts: int = 5
    initial_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.25
    max_retry_after: float = 300.0

    def delay(self, retry_number: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry ``retry_number`` (0-based)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier**retry_number)
        jittered = base * (1.0 + rng.uniform(-self.jitter, self.jitter))
        return max(jittered, retry_after or 0.0)


def call_with_retries(
    operation: Callable[[], T],
    settings: RetrySettings,
    description: str,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, float, TransientInfluxError], None] | None = None,
) -> T:
    """Run ``operation``; on :class:`TransientInfluxError` wait and try again, up to ``max_attempts``.

    The last transient error is re-raised with the number of attempts added to its message.
    """
    rng = rng or random.Random()
    for attempt in range(settings.max_attempts):
        try:
            return operation()
        except TransientInfluxError as error:
            if attempt + 1 >= settings.max_attempts:
                error.args = (f"{error.args[0]} (gave up after {settings.max_attempts} attempts)",)
                raise
            if error.retry_after is not None and error.retry_after > settings.max_retry_after:
                too_long = (
                    f"the server asked to retry after {error.retry_after:.0f} s, more than the "
                    f"{settings.max_retry_after:g} s allowed by max_retry_after_seconds"
                )
                error.args = (f"{error.args[0]} ({too_long}; gave up after {attempt + 1} attempt(s))",)
                raise
            wait = settings.delay(attempt, error.retry_after, rng)
            log.warning("%s failed (%s); retry %d in %.2fs", description, error, attempt + 1, wait)
            if on_retry is not None:
                on_retry(attempt + 1, wait, error)
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
