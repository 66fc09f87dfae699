"""A fault-injecting HTTP proxy on loopback, put between the resource and a real ``influxd``.

Each request is matched against queued faults (by path prefix or a predicate); the first matching
fault is consumed and applied, every other request is passed through unchanged. The proxy records
every request it saw (method, path, query parameters, body, the fault applied, arrival time), so a
test can count attempts and measure the gaps between them.

Faults:
    * ``Fault.pass_through()`` — forward and relay the response.
    * ``Fault.respond(status, retry_after=None)`` — answer without contacting the server.
    * ``Fault.delay(seconds)`` — forward (the server applies the request), then hold the response
      for ``seconds`` — past the client's timeout — before sending it.
    * ``Fault.reset_request_body()`` — read half the request body, then reset the connection (RST);
      the server never sees the request.
    * ``Fault.reset_response_body()`` — forward, send the first half of the response bytes, then reset.
    * ``Fault.close_before_response()`` — forward (or not), then close the connection without a byte.

Every fault can run ``after_forward`` (e.g. SIGKILL the server) once the request was forwarded.
When the server itself cannot be reached, the proxy resets the client connection, as a dead server
would.

Examples:
    >>> proxy = FaultProxy("http://127.0.0.1:8086").start()  # doctest: +SKIP
    >>> proxy.inject(Fault.respond(503), Fault.respond(429, retry_after="1"))  # doctest: +SKIP
    >>> len(proxy.requests("/write"))  # doctest: +SKIP
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "proxy-connection"}


@dataclass(frozen=True)
class Fault:
    """What the proxy does with one request (build with the class methods)."""

    action: str = "pass"
    status: int = 0
    retry_after: str | None = None
    body: bytes = b""
    seconds: float = 0.0
    forward: bool = True
    after_forward: Callable[[], None] | None = None

    @classmethod
    def pass_through(cls, after_forward: Callable[[], None] | None = None) -> Fault:
        """Forward the request and relay the server's response."""
        return cls("pass", after_forward=after_forward)

    @classmethod
    def respond(cls, status: int, retry_after: str | None = None, body: bytes = b"") -> Fault:
        """Answer ``status`` (with ``Retry-After`` if given) without forwarding."""
        return cls("respond", status=status, retry_after=retry_after, body=body, forward=False)

    @classmethod
    def delay(cls, seconds: float, forward: bool = True) -> Fault:
        """Forward, then hold the response ``seconds`` before sending it (if the client still listens)."""
        return cls("delay", seconds=seconds, forward=forward)

    @classmethod
    def reset_request_body(cls) -> Fault:
        """Read half of the request body, then reset the connection; nothing reaches the server."""
        return cls("reset_request", forward=False)

    @classmethod
    def reset_response_body(cls) -> Fault:
        """Forward, relay the first half of the response bytes, then reset the connection."""
        return cls("reset_response")

    @classmethod
    def close_before_response(
        cls, forward: bool = True, after_forward: Callable[[], None] | None = None
    ) -> Fault:
        """Forward (optionally), then close the connection without sending a response."""
        return cls("close", forward=forward, after_forward=after_forward)


@dataclass
class SeenRequest:
    """One request as the proxy received it."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    fault: str
    arrived: float
    upstream_status: int | None = None
    upstream_error: str | None = None

    @property
    def statement(self) -> str:
        """The InfluxQL ``q`` parameter (empty for writes)."""
        return self.params.get("q", "")


@dataclass
class _Rule:
    where: Callable[[SeenRequest], bool]
    faults: list[Fault] = field(default_factory=list)


def _matcher(where: str | Callable[[SeenRequest], bool]) -> Callable[[SeenRequest], bool]:
    if callable(where):
        return where
    return lambda request: request.path.startswith(where)


class FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1 that applies queued faults; see the module docstring.

    Args:
        upstream: base URL of the real server (``http://127.0.0.1:PORT``).
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.seen: list[SeenRequest] = []
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        """Listen on a free loopback port and serve in a background thread."""
        proxy = self

        class Handler(_ProxyHandler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; held (delayed) responses are abandoned."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL clients should use instead of the server's."""
        assert self._server is not None, "start() the proxy first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- faults and records ----------------------------------------------------------------------
    def inject(self, *faults: Fault, where: str | Callable[[SeenRequest], bool] = "/write") -> None:
        """Queue ``faults`` for the next requests matching ``where`` (a path prefix or a predicate)."""
        with self._lock:
            self._rules.append(_Rule(_matcher(where), list(faults)))

    def pending(self) -> int:
        """Faults queued but not yet applied."""
        with self._lock:
            return sum(len(rule.faults) for rule in self._rules)

    def requests(self, where: str | Callable[[SeenRequest], bool] | None = None) -> list[SeenRequest]:
        """The requests seen so far (all, or those matching ``where``), in arrival order."""
        with self._lock:
            seen = list(self.seen)
        return seen if where is None else [r for r in seen if _matcher(where)(r)]

    def _record_and_pick(self, request: SeenRequest) -> Fault:
        with self._lock:
            fault = Fault.pass_through()
            for rule in self._rules:
                if rule.faults and rule.where(request):
                    fault = rule.faults.pop(0)
                    break
            request.fault = fault.action
            self.seen.append(request)
            return fault


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Silence the per-request log lines."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle()

    do_POST = do_HEAD = do_PUT = do_DELETE = do_GET  # noqa: N815

    # --- one request -----------------------------------------------------------------------------
    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        parts = urlsplit(self.path)
        request = SeenRequest(
            method=self.command, path=parts.path, params=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k: v for k, v in self.headers.items()}, body=b"", fault="pass", arrived=time.monotonic(),
        )
        fault = self._pick_before_body(request, length)
        if fault is not None:
            self._apply(fault, request)

    def _pick_before_body(self, request: SeenRequest, length: int) -> Fault | None:
        """Pick the fault from the request line, so a request-body reset can stop half-way."""
        fault = self.owner._record_and_pick(request)
        if fault.action == "reset_request":
            request.body = self.rfile.read(max(1, length // 2))
            self._reset()
            return None
        request.body = self.rfile.read(length) if length else b""
        return fault

    def _apply(self, fault: Fault, request: SeenRequest) -> None:
        if fault.action == "respond":
            self._send_raw(self._compose(fault.status, {"Retry-After": fault.retry_after}, fault.body))
            return
        raw = b""
        if fault.forward:
            upstream = self._forward(request)
            if upstream is None:
                self._reset()  # the server is down: behave like it
                return
            raw = upstream
        if fault.after_forward is not None:
            fault.after_forward()
        if fault.action == "delay":
            self.owner._stopping.wait(fault.seconds)
            self._send_raw(raw, close=True)
        elif fault.action == "reset_response":
            self.wfile.write(raw[: max(1, len(raw) // 2)])
            self._reset()
        elif fault.action == "close":
            self.close_connection = True
        else:
            self._send_raw(raw)

    def _forward(self, request: SeenRequest) -> bytes | None:
        """Send the request to the real server; return the raw response, or None if it is down."""
        owner = self.owner
        connection = http.client.HTTPConnection(owner.upstream_host, owner.upstream_port, timeout=60)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            connection.request(request.method, self.path, body=request.body or None, headers=headers)
            response = connection.getresponse()
            body = response.read()
        except OSError as error:
            request.upstream_error = f"{type(error).__name__}: {error}"
            return None
        finally:
            connection.close()
        request.upstream_status = response.status
        relayed = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
        return self._compose(response.status, relayed, body, reason=response.reason)

    @staticmethod
    def _compose(status: int, headers: dict[str, str | None], body: bytes, reason: str = "") -> bytes:
        lines = [f"HTTP/1.1 {status} {reason or http.client.responses.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers.items() if v is not None]
        if status not in (204, 304) and not 100 <= status < 200:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def _send_raw(self, raw: bytes, close: bool = False) -> None:
        try:
            self.wfile.write(raw)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client gave up (it timed out) — expected
            return
        if close:
            self.close_connection = True

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), as a crashed peer does."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
