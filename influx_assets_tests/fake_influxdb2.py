"""A recording stand-in for an InfluxDB 2.x OSS server, for the v2 transport's HTTP-level contract tests.

No InfluxDB 2.x can be installed on these machines. This stdlib ``http.server`` on 127.0.0.1 answers
the endpoints influxdb-client uses (``/ping``, ``/api/v2/write|query|delete|buckets|orgs``) the way
InfluxDB 2.x does, records every request, and plays scripted replies (status, body, headers) per path.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

ORG, ORG_ID = "acme", "0123456789abcdef"


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class FakeInfluxDB2:
    """Answers like InfluxDB 2.x OSS; ``script`` queues replies per path, otherwise defaults apply."""

    requests: list[Recorded] = field(default_factory=list)
    scripted: dict[str, list[tuple[int, bytes, dict[str, str]]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    buckets: dict[str, str] = field(default_factory=dict)
    url: str = ""

    def script(self, path: str, status: int, body: bytes | str = b"", **headers: str) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.scripted[path].append((status, data, {k.replace("_", "-"): v for k, v in headers.items()}))

    def on(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def answer(self, method: str, path: str, params: dict[str, str], body: bytes) -> tuple[int, bytes, dict]:
        if self.scripted.get(path):
            return self.scripted[path].pop(0)
        if path == "/ping":
            return 204, b"", {"X-Influxdb-Version": "v2.7.11", "X-Influxdb-Build": "OSS"}
        if path in ("/api/v2/write", "/api/v2/delete"):
            return 204, b"", {}
        if path == "/api/v2/query":
            return 200, b"\r\n", {"Content-Type": "text/csv; charset=utf-8"}
        if path == "/api/v2/orgs":
            return 200, json.dumps({"orgs": [{"id": ORG_ID, "name": ORG}]}).encode(), {}
        if path == "/api/v2/buckets" and method == "GET":
            found = [self._bucket(n) for n in self.buckets if n == params.get("name")]
            return 200, json.dumps({"buckets": found}).encode(), {}
        if path == "/api/v2/buckets" and method == "POST":
            name = json.loads(body)["name"]
            self.buckets[name] = f"{len(self.buckets) + 1:016x}"
            return 201, json.dumps(self._bucket(name)).encode(), {}
        return 404, json.dumps({"code": "not found", "message": "path not found"}).encode(), {}

    def _bucket(self, name: str) -> dict:
        return {"id": self.buckets[name], "orgID": ORG_ID, "name": name, "type": "user", "retentionRules": []}


def _handler(fake: FakeInfluxDB2) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            fake.requests.append(
                Recorded(self.command, parts.path, params, dict(self.headers), body, time.monotonic())
            )
            status, payload, headers = fake.answer(self.command, parts.path, params, body)
            self.send_response(status)
            for name, value in {"Content-Type": "application/json; charset=utf-8", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def start_fake_influxdb2() -> tuple[FakeInfluxDB2, ThreadingHTTPServer]:
    """Serve a fresh fake on a free loopback port (stop: ``server.shutdown()``, ``server.server_close()``)."""
    fake = FakeInfluxDB2()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return fake, server
