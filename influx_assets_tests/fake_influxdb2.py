"""A recording stand-in for InfluxDB 2.7 OSS (and, as a flavour, InfluxDB 3 Core), for the v2 contract tests.

No InfluxDB 2.x or 3.x can be installed on these machines. This stdlib ``http.server`` on 127.0.0.1
answers the endpoints influxdb-client uses the way the server's source does, records every request,
and plays scripted replies per path. **Every reply says which server source file or doc page it
reproduces** (``Reply.source``); paths are at tag v2.7.12 of influxdata/influxdb unless stated. Two
error encoders exist in 2.7 and the byte layout depends on the route:

- ``compact``: kit/transport/http/error_handler.go ``HandleHTTPError`` (auth middleware, /api/v2/write,
  /query, /delete): ``{"code":"...","message":"..."}``, no trailing newline.
- ``pretty``: kit/transport/http/api.go ``API.Err``/``Respond`` (tenant handlers: /api/v2/buckets,
  /orgs, and the router's "path not found"): ``json.MarshalIndent(v, "", "\\t")``, no trailing newline.

Both set ``Content-Type: application/json; charset=utf-8`` and ``X-Platform-Error-Code``; every 2.7
response carries ``X-Influxdb-Build: OSS`` and ``X-Influxdb-Version: v2.7.12`` (http/handler.go
``NewRootHandler``).
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
JSON = "application/json; charset=utf-8"
VERSION_HEADERS = {"X-Influxdb-Build": "OSS", "X-Influxdb-Version": "v2.7.12"}


@dataclass(frozen=True)
class Reply:
    """One HTTP answer and the server behaviour it reproduces."""

    status: int
    body: bytes
    headers: dict[str, str]
    source: str


def compact_error(status: int, code: str, message: str, source: str) -> Reply:
    """An error as kit/transport/http/error_handler.go writes it (write, query, delete, auth)."""
    body = json.dumps({"code": code, "message": message}, separators=(",", ":"))
    return Reply(status, body.encode(), {"Content-Type": JSON, "X-Platform-Error-Code": code}, source)


def pretty(status: int, payload: dict, source: str, code: str | None = None) -> Reply:
    """A body as kit/transport/http/api.go ``Respond`` writes it: tab-indented JSON (tenant handlers)."""
    headers = {"Content-Type": JSON} | ({"X-Platform-Error-Code": code} if code else {})
    return Reply(status, json.dumps(payload, indent="\t").encode(), headers, source)


def pretty_error(status: int, code: str, message: str, source: str) -> Reply:
    """An error as kit/transport/http/api.go ``API.Err`` writes it (buckets, orgs, unknown paths)."""
    return pretty(status, {"code": code, "message": message}, source, code)


UNAUTHORIZED = compact_error(
    401, "unauthorized", "unauthorized access",
    "http/authentication_middleware.go unauthorized(): same body for a missing, malformed or wrong token",
)
EMPTY_QUERY_RESULT = Reply(
    200, b"\r\n", {"Content-Type": "text/csv; charset=utf-8"},
    "flux csv/result.go MultiResultEncoder: a query without tables writes the CRLF result delimiter only",
)


def bucket_not_found(name: str) -> Reply:
    return pretty_error(
        404, "not found", f'bucket "{name}" not found',
        "tenant/service_bucket.go FindBuckets -> storage_bucket.go GetBucketByName: ErrBucketNotFoundByName",
    )


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
    """Answers like InfluxDB 2.7 OSS; ``script`` queues replies per path, otherwise the defaults apply.

    Attributes:
        token: when set, requests to /api/v2/* without ``Token <token>`` get the real 401.
        buckets: bucket name -> ID in the one org; the write/delete/buckets handlers use it.
        token_reads_buckets: False models a write-only token: lookups of existing buckets return [].
        token_reads_orgs: False models a token without read:orgs: /api/v2/orgs?org=NAME returns [].
        token_creates_buckets: False models a token without write:orgs/<id>/buckets: creation is refused.
        flavour: "2.7" or "3-core" (InfluxDB 3 Core v3.10.1: no /api/v2/query|delete|buckets).
    """

    requests: list[Recorded] = field(default_factory=list)
    scripted: dict[str, list[Reply]] = field(default_factory=lambda: defaultdict(list))
    buckets: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    token_reads_buckets: bool = True
    token_reads_orgs: bool = True
    token_creates_buckets: bool = True
    flavour: str = "2.7"
    url: str = ""

    def script(self, path: str, reply: Reply) -> None:
        """Answer the next request to ``path`` with ``reply`` (which names the behaviour it reproduces)."""
        assert reply.source, "every canned reply must say which server behaviour it reproduces"
        self.scripted[path].append(reply)

    def on(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def answer(self, method: str, path: str, params: dict[str, str], headers: dict[str, str], body: bytes) -> Reply:
        if self.flavour == "3-core":
            return self._answer_3_core(method, path)
        if self.scripted.get(path):
            return self.scripted[path].pop(0)
        if path.startswith("/moved/"):  # behind a proxy that redirected the client here
            path = path[len("/moved"):]
        if path == "/ping":
            return Reply(204, b"", {}, "http/legacy/ping_handler.go pingHandler: 204, no body, no auth")
        if path == "/metrics":
            return self._metrics()
        if self.token and path.startswith("/api/v2/") and headers.get("Authorization") != f"Token {self.token}":
            return UNAUTHORIZED
        if path == "/api/v2/write":
            if params.get("bucket") not in self.buckets:
                return compact_error(404, "not found", f'bucket "{params.get("bucket")}" not found',
                                     "http/write_handler.go -> tenant ErrBucketNotFoundByName (compact encoder)")
            return Reply(204, b"", {}, "http/write_handler.go handleWrite: 204 on success")
        if path == "/api/v2/delete":
            if params.get("bucket") not in self.buckets:
                return compact_error(404, "not found", f'bucket "{params.get("bucket")}" not found',
                                     "http/delete_handler.go decodeDeleteRequest -> queryBucket")
            return Reply(204, b"", {}, "http/delete_handler.go handleDelete: 204 on success")
        if path == "/api/v2/query":
            return EMPTY_QUERY_RESULT
        if path == "/api/v2/orgs":
            return self._orgs(params)
        if path == "/api/v2/buckets" and method == "GET":
            return self._find_buckets(params)
        if path == "/api/v2/buckets" and method == "POST":
            return self._create_bucket(json.loads(body))
        return pretty_error(404, "not found", "path not found", "http/router.go NewBaseChiRouter NotFound")

    def _metrics(self) -> Reply:
        """``GET /metrics``: the Prometheus text of the query controller and query endpoint counters.

        Names, labels and types as documented at
        https://docs.influxdata.com/influxdb/v2/reference/internals/metrics/ (``qc_requests_total``
        counter by org and result, ``qc_executing_duration_seconds`` histogram, ``http_query_response_bytes``
        counter by endpoint/org_id/status); values grow with the queries this fake has answered.
        """
        queries = len(self.on("/api/v2/query"))
        lines = [
            "# HELP go_goroutines Number of goroutines that currently exist.",
            "# TYPE go_goroutines gauge",
            "go_goroutines 61",
            "# HELP qc_requests_total Count of the query requests",
            "# TYPE qc_requests_total counter",
            f'qc_requests_total{{org="{ORG_ID}",result="success"}} {queries}',
            f'qc_requests_total{{org="{ORG_ID}",result="compile_error"}} 0',
            "# HELP qc_executing_duration_seconds Histogram of times spent executing queries",
            "# TYPE qc_executing_duration_seconds histogram",
            f'qc_executing_duration_seconds_bucket{{org="{ORG_ID}",le="0.001"}} 0',
            f'qc_executing_duration_seconds_bucket{{org="{ORG_ID}",le="+Inf"}} {queries}',
            f'qc_executing_duration_seconds_sum{{org="{ORG_ID}"}} {0.0025 * queries}',
            f'qc_executing_duration_seconds_count{{org="{ORG_ID}"}} {queries}',
            "# HELP http_query_response_bytes Count of bytes returned",
            "# TYPE http_query_response_bytes counter",
            f'http_query_response_bytes{{endpoint="/api/v2/query",org_id="{ORG_ID}",status="200"}} {2 * queries}',
        ]
        return Reply(
            200, ("\n".join(lines) + "\n").encode(), {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
            "docs.influxdata.com/influxdb/v2/reference/internals/metrics/ (metric names, labels, types); "
            "served by the Prometheus handler without authentication (kit/prom registry, http/handler.go)",
        )

    # --- tenant handlers (tenant/http_server_bucket.go, tenant/http_server_org.go) ----------------
    def _orgs(self, params: dict[str, str]) -> Reply:
        name = params.get("org")
        if name is not None and name != ORG:
            return pretty_error(404, "not found", f'organization name "{name}" not found',
                                "tenant/service_org.go FindOrganizations: ErrOrgNotFoundByName")
        orgs = [{"id": ORG_ID, "name": ORG}] if self.token_reads_orgs else []
        return pretty(200, {"links": {"self": "/api/v2/orgs"}, "orgs": orgs},
                      "tenant/middleware_org_auth.go FindOrganizations: filtered by read:orgs/<id>")

    def _find_buckets(self, params: dict[str, str]) -> Reply:
        name, org, org_id = params.get("name"), params.get("org"), params.get("orgID")
        if org is not None and org != ORG:  # org= is always a name (a 16-hex ID given there is not found)
            return pretty_error(404, "not found", f'organization name "{org}" not found',
                                "tenant/service_bucket.go FindBuckets: FindOrganization{Name}")
        scoped = org is not None or org_id is not None
        if name is not None and scoped and name not in self.buckets:
            return bucket_not_found(name)
        found = [self._bucket(n) for n in self.buckets if name in (None, n)] if self.token_reads_buckets else []
        return pretty(200, {"links": {"self": "/api/v2/buckets"}, "buckets": found},
                      "tenant/middleware_bucket_auth.go FindBuckets: results filtered by read permission")

    def _create_bucket(self, request: dict) -> Reply:
        org_id = request.get("orgID")
        if not org_id:
            return pretty_error(400, "invalid", "organization id must be provided",
                                "tenant/http_server_bucket.go postBucketRequest.OK")
        if len(org_id) != 16:
            return pretty_error(400, "invalid", "failed to unmarshal json: id must have a length of 16 bytes",
                                "tenant/http_server_bucket.go decodePostBucketRequest -> platform.ID.UnmarshalText")
        if not self.token_creates_buckets:
            return pretty_error(401, "unauthorized", f"write:orgs/{org_id}/buckets is unauthorized",
                                "tenant/middleware_bucket_auth.go CreateBucket -> authorizer/authorize.go "
                                "AuthorizeCreate (checked before the name)")
        name = request["name"]
        if name in self.buckets:
            return pretty_error(422, "conflict", f"bucket with name {name} already exists",
                                "tenant/storage_bucket.go uniqueBucketName: BucketAlreadyExistsError (conflict -> 422)")
        self.buckets[name] = f"{len(self.buckets) + 1:016x}"
        return pretty(201, self._bucket(name), "tenant/http_server_bucket.go handlePostBucket: 201 + the bucket")

    def _bucket(self, name: str) -> dict:
        return {"id": self.buckets[name], "orgID": ORG_ID, "type": "user", "name": name, "retentionRules": []}

    # --- InfluxDB 3 Core, influxdb3_server/src/http.rs at tag v3.10.1 -----------------------------------
    def _answer_3_core(self, method: str, path: str) -> Reply:
        if path == "/ping":
            body = {"product_name": "InfluxDB 3 Core", "version": "3.10.1", "revision": "abc1234",
                    "process_id": "0199a3d2-7c3e-7b1e-9f00-000000000000"}
            return Reply(200, json.dumps(body, separators=(",", ":")).encode(),
                         {"Content-Type": "application/json", "X-Influxdb-Build": "Core", "X-Influxdb-Version": "3.10.1"},
                         "influxdb3_server/src/http.rs HttpApi::ping (v3.10.1): 200 JSON, no leading v")
        if path in ("/api/v2/write", "/write"):
            return Reply(204, b"", {}, "influxdb3_server/src/http.rs write_lp: 204")
        return Reply(404, b"Not found", {}, "influxdb3_server/src/http.rs route_request: RoutingError::NotFound")


def _handler(fake: FakeInfluxDB2) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            headers = dict(self.headers)
            fake.requests.append(Recorded(self.command, parts.path, params, headers, body, time.monotonic()))
            reply = fake.answer(self.command, parts.path, params, headers, body)
            self.send_response(reply.status)
            extra = VERSION_HEADERS if fake.flavour == "2.7" else {}
            for name, value in {**extra, **reply.headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def start_fake_influxdb2(**settings: object) -> tuple[FakeInfluxDB2, ThreadingHTTPServer]:
    """Serve a fresh fake on a free loopback port (stop: ``server.shutdown()``, ``server.server_close()``)."""
    fake = FakeInfluxDB2(**settings)  # type: ignore[arg-type]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return fake, server
