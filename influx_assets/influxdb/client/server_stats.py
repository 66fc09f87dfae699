"""What the server says it has done: cumulative query and write counters, for cost attribution.

A caller takes :class:`ServerCounters` before and after a piece of work; the difference is what the
server did meanwhile (everyone's work: exact only while nothing else uses the server, see
``observability.server_cost``). The counters come from the server's own statistics:

- **InfluxDB 1.x**: ``SHOW STATS`` (the same numbers the ``_internal`` database records):
  ``queryExecutor.queriesExecuted`` and ``queryDurationNs``, ``write.pointReq``,
  ``httpd.queryRespBytes``. The ``SHOW STATS`` statement itself is a query; :data:`OWN_QUERIES` of it
  are subtracted from a difference.
- **InfluxDB 2.x**: ``GET /metrics`` (Prometheus text, documented at
  https://docs.influxdata.com/influxdb/v2/reference/internals/metrics/): ``qc_requests_total``
  (Flux queries), ``qc_executing_duration_seconds_sum``, ``http_query_response_bytes``; 2.x exposes
  no points-written counter there, so ``points_written`` is None.
"""

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Queries one snapshot costs the server itself (1.x: the ``SHOW STATS`` statement).
OWN_QUERIES = 1

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


@dataclass(frozen=True)
class ServerCounters:
    """Cumulative counters of one server at one moment (None: the server does not expose it)."""

    queries: int
    query_seconds: float
    points_written: int | None
    response_bytes: int | None

    def since(self, before: "ServerCounters", own_queries: int = 0) -> "ServerCounters":
        """What happened between ``before`` and this snapshot (counters reset by a restart: zero).

        ``own_queries``: queries the snapshots themselves caused in between, taken off the count.
        """

        def delta(now: float | None, then: float | None) -> float | None:
            if now is None or then is None:
                return None
            return max(0.0, now - then)

        queries = max(0, self.queries - before.queries - own_queries)
        points = delta(self.points_written, before.points_written)
        sent = delta(self.response_bytes, before.response_bytes)
        return ServerCounters(
            queries=int(queries),
            query_seconds=float(delta(self.query_seconds, before.query_seconds) or 0.0),
            points_written=None if points is None else int(points),
            response_bytes=None if sent is None else int(sent),
        )


def _module_values(series: Iterable[Mapping]) -> dict[str, dict[str, float]]:
    """``{module: {column: value}}`` of ``SHOW STATS`` series (values of a module summed over tags)."""
    modules: dict[str, dict[str, float]] = {}
    for one in series:
        values = (one.get("values") or [[]])[0]
        found = modules.setdefault(str(one.get("name")), {})
        for column, value in zip(one.get("columns") or [], values, strict=False):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found[column] = found.get(column, 0.0) + float(value)
    return modules


def counters_from_show_stats(series: Iterable[Mapping]) -> ServerCounters:
    """Counters from the series of an InfluxDB 1.x ``SHOW STATS`` result."""
    modules = _module_values(series)
    executor, write, httpd = modules.get("queryExecutor", {}), modules.get("write", {}), modules.get("httpd", {})
    return ServerCounters(
        queries=int(executor.get("queriesExecuted", 0)),
        query_seconds=executor.get("queryDurationNs", 0.0) / 1e9,
        points_written=int(write["pointReq"]) if "pointReq" in write else None,
        response_bytes=int(httpd["queryRespBytes"]) if "queryRespBytes" in httpd else None,
    )


def prometheus_sums(text: str) -> dict[str, float]:
    """Each metric name of a Prometheus text exposition with its samples summed over labels."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line.strip())
        if not match:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if math.isfinite(value):
            sums[match.group(1)] = sums.get(match.group(1), 0.0) + value
    return sums


def counters_from_prometheus(text: str) -> ServerCounters:
    """Counters from an InfluxDB 2.x ``/metrics`` body."""
    sums = prometheus_sums(text)
    sent = sums.get("http_query_response_bytes")
    return ServerCounters(
        queries=int(sums.get("qc_requests_total", 0)),
        query_seconds=sums.get("qc_executing_duration_seconds_sum", 0.0),
        points_written=None,
        response_bytes=None if sent is None else int(sent),
    )
