"""A small HTTP layer on urllib3: auth headers, timeouts, error classification, retries.

Status codes map to the error hierarchy in :mod:`.errors`; connection failures become
:class:`ServerUnreachableError`. Nothing here ever puts a credential into a message.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import urllib3

from influx_assets.influxdb.client.errors import (
    AuthenticationError,
    BadRequestError,
    DatabaseNotFoundError,
    FieldTypeConflictError,
    InfluxAssetsError,
    PartialWriteError,
    ServerBusyError,
    ServerUnreachableError,
    TransientInfluxError,
    redact,
)
from influx_assets.influxdb.client.retries import RetrySettings, call_with_retries

T = TypeVar("T")
#: Bytes per block handed to a streaming consumer.
STREAM_BLOCK = 1 << 20

_DROPPED = re.compile(r"dropped=(\d+)")
_ECHOED_LINE = re.compile(r"unable to parse '(.{120}).*?': ", re.S)  # keeps 120 characters of a line


def public_url(url: str) -> str:
    """The URL without any ``user:password@`` part, safe to print."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def retry_after_seconds(response: urllib3.BaseHTTPResponse) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP-date (RFC 9110), None if absent or bad."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: fall back to our own backoff
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


def _server_message(text: str) -> str:
    """The ``error`` string of a JSON error body (1.x/2.x send one); otherwise the text itself."""
    try:
        payload = json.loads(text)
    except ValueError:
        return text
    if isinstance(payload, dict) and isinstance(payload.get("error") or payload.get("message"), str):
        return str(payload.get("error") or payload.get("message"))
    return text


def _shorten_echoed_lines(body: str) -> str:
    """Shorten the lines a server echoes in ``unable to parse '<line>': reason`` so reasons survive."""
    return _ECHOED_LINE.sub(lambda m: f"unable to parse '{m.group(1)}…': ", body)


#: What Flux says when it ran out of query slots or memory (flux ``codes.ResourceExhausted``). InfluxDB 2.7
#: maps that code to ``invalid`` and answers 400 (query/control/controller.go ``handleFluxError``), or
#: puts it in an in-band error table, but a later retry can succeed.
FLUX_RESOURCE_EXHAUSTED = ("queue length exceeded", "memory allocation limit reached")


def is_resource_exhausted(message: str) -> bool:
    """True when a Flux error says the server ran out of query slots or memory (transient)."""
    lowered = message.lower()
    return any(marker in lowered for marker in FLUX_RESOURCE_EXHAUSTED)


def classify_response(status: int, body: str, where: str, retry_after: float | None = None) -> InfluxAssetsError:
    """Turn a non-2xx response into the matching error (``body`` must already be redacted)."""
    body = _shorten_echoed_lines(body)
    lowered = body.lower()
    if status == 400 and is_resource_exhausted(body):
        return ServerBusyError(
            f"InfluxDB at {where} is out of Flux query capacity (HTTP 400): {body[:500]}", retry_after
        )
    if status == 501:  # "not implemented" (e.g. a 2.x delete by _field): no retry can change it
        return BadRequestError(f"InfluxDB at {where} does not support this request (HTTP 501): {body[:500]}")
    if status == 429 or status >= 500:
        return ServerBusyError(f"InfluxDB at {where} is busy or failing (HTTP {status}): {body[:500]}", retry_after)
    if status in (401, 403):
        return AuthenticationError(
            f"InfluxDB at {where} rejected the credentials (HTTP {status}): check INFLUXDB_TOKEN or "
            "INFLUXDB_USERNAME/INFLUXDB_PASSWORD and the user's permissions"
        )
    if "database not found" in lowered or "bucket" in lowered and "not found" in lowered:
        return DatabaseNotFoundError(
            f"InfluxDB at {where}: {body[:300]} — create it (the resource's ensure_database) or fix "
            "INFLUXDB_DATABASE"
        )
    if "partial write" in lowered:
        match = _DROPPED.search(body)
        dropped = int(match.group(1)) + lowered.count("unable to parse") if match else None
        if "field type conflict" in lowered:
            return FieldTypeConflictError(
                f"InfluxDB at {where} rejected points ({dropped} points dropped): {body[:800]}",
                points_dropped=dropped,
                reason=body[:2000],
            )
        return PartialWriteError(
            f"InfluxDB at {where} wrote only part of a batch ({dropped} points dropped): {body[:800]}",
            points_dropped=dropped,
            reason=body[:2000],
        )
    if "field type conflict" in lowered or status == 422:
        return FieldTypeConflictError(
            f"InfluxDB at {where} rejected points: {body[:800]}", reason=body[:2000]
        )
    return BadRequestError(f"InfluxDB at {where} rejected the request (HTTP {status}): {body[:800]}")


@dataclass
class HttpSession:
    """Requests against one InfluxDB base URL with auth, timeouts and retries.

    Args:
        url: base URL (``http://host:8086``); userinfo in it is ignored for printing.
        token: sent as ``Authorization: Token ...`` (1.8+, 2.x, 3.x).
        username/password: sent as HTTP basic auth (1.x) when no token is set.
        timeout: seconds for connect and for each read.
    """

    url: str
    token: str | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    retry: RetrySettings = field(default_factory=RetrySettings)
    on_retry: Callable[[int, float, TransientInfluxError], None] | None = None
    _pool: urllib3.PoolManager = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pool = urllib3.PoolManager(
            num_pools=2, maxsize=4, retries=False, timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout)
        )

    def close(self) -> None:
        """Close pooled connections (later requests open new ones)."""
        self._pool.clear()

    @property
    def secrets(self) -> tuple[str | None, ...]:
        """The values that must never be printed."""
        return (self.token, self.password)

    @property
    def where(self) -> str:
        """The printable base URL."""
        return public_url(self.url)

    def auth_headers(self) -> dict[str, str]:
        """Authorization headers for the configured credentials."""
        if self.token:
            return {"Authorization": f"Token {self.token}"}
        if self.username:
            raw = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        description: str = "request",
        retry: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request (retrying transient failures) and return the 2xx response, body preloaded."""

        def attempt() -> urllib3.BaseHTTPResponse:
            return self._attempt(method, path, params, body, headers)

        if not retry:
            return attempt()
        return call_with_retries(attempt, self.retry, f"{description} at {self.where}", on_retry=self.on_retry)

    def stream(
        self,
        method: str,
        path: str,
        consume: Callable[[Iterator[bytes]], T],
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        description: str = "request",
    ) -> T:
        """Send one request and hand its body to ``consume`` block by block, as it arrives.

        The consumer works while the server is still producing the rest (a parse overlaps the
        transfer). A connection that breaks mid-body is a transient error: the whole request and
        ``consume`` are retried from the start, so ``consume`` must not have side effects.
        """

        def attempt() -> T:
            response = self._attempt(method, path, params, None, headers, preload=False)
            try:
                result = consume(response.stream(STREAM_BLOCK))
            except (urllib3.exceptions.HTTPError, ConnectionError) as error:
                response.close()  # half read: never hand this connection to the next request
                detail = redact(type(error).__name__ + ": " + str(error), self.secrets)
                raise ServerUnreachableError(
                    f"the connection to InfluxDB at {self.where} broke while reading the response ({detail[:300]})"
                ) from None
            except BaseException:
                response.close()
                raise
            else:
                response.drain_conn()  # whatever the consumer left unread, so the connection is clean
                return result
            finally:
                response.release_conn()

        return call_with_retries(attempt, self.retry, f"{description} at {self.where}", on_retry=self.on_retry)

    def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        preload: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        target = self.url.rstrip("/") + path
        all_headers = {**self.auth_headers(), **(headers or {})}
        query = urlencode(dict(params or {}))
        try:
            response = self._pool.request(
                method, f"{target}?{query}" if query else target, body=body, headers=all_headers,
                preload_content=preload,
            )
        except ValueError as error:  # e.g. http.client refusing a header value: it would echo the token
            raise BadRequestError(
                f"cannot send the request to InfluxDB at {self.where}: "
                f"{redact(type(error).__name__ + ': ' + str(error), self.secrets)[:300]}"
            ) from None
        except urllib3.exceptions.HTTPError as error:
            detail = redact(type(error).__name__ + ": " + str(error), self.secrets)
            # NewConnectionError subclasses ConnectTimeoutError in urllib3 2.x: refused is not slow.
            if isinstance(error, urllib3.exceptions.TimeoutError) and not isinstance(
                error, urllib3.exceptions.NewConnectionError
            ):
                raise ServerUnreachableError(
                    f"InfluxDB at {self.where} did not answer within {self.timeout:g} s "
                    f"(timeout_seconds) — is it overloaded or unreachable? ({detail[:300]})"
                ) from None
            raise ServerUnreachableError(
                f"cannot reach InfluxDB at {self.where} — is it running? ({detail[:300]})"
            ) from None
        if response.status >= 300:
            text = redact(_server_message(response.data.decode("utf-8", errors="replace")), self.secrets)
            response.release_conn()
            raise classify_response(response.status, text.strip(), self.where, retry_after_seconds(response))
        return response
