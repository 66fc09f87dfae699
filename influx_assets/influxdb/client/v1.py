"""The v1 transport: InfluxDB 1.x (and 3.x through its v1 compatibility API) over plain HTTP.

Writes go to ``POST /write?precision=ns`` (gzip optional); reads are InfluxQL ``POST /query`` with
``epoch=ns``. Schema queries use JSON (statement errors are visible there), data queries use CSV
(about 5x faster to parse, but a CSV response hides statement errors — which is why the schema query
runs first and fails loudly on a missing database).
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from influx_assets.influxdb.client import influxql
from influx_assets.influxdb.client.server_stats import ServerCounters, counters_from_show_stats
from influx_assets.influxdb.client.errors import BadRequestError, DatabaseNotFoundError, redact
from influx_assets.influxdb.client.http import HttpSession
from influx_assets.influxdb.client.influxql_csv import parse_influxql_csv_stream
from influx_assets.influxdb.client.line_protocol import EncodedFrame
from influx_assets.influxdb.client.schema import TIME_COLUMN, empty_frame, finish_frame, merge_field_types
from influx_assets.influxdb.client.slice import MeasurementSlice
from influx_assets.influxdb.client.transport import Capabilities, KnownSchema, ServerInfo, WriteStats

_CSV = {"Accept": "application/csv"}


@dataclass
class V1Transport:
    """InfluxQL + line protocol over :class:`HttpSession`.

    Args:
        http: the session (URL, credentials, timeouts, retries).
        batch_size: points per ``/write`` request (1.x accepts bodies up to 25 MB).
        gzip_level: 0 disables compression; compression helps over networks, not on loopback.
        chunk_size: rows per chunk of a streamed (``chunked=true``) query response.
    """

    http: HttpSession
    batch_size: int = 10_000
    gzip_level: int = 0
    chunk_size: int = 100_000
    _info: ServerInfo | None = field(default=None, init=False)

    def ping(self) -> ServerInfo:
        """``GET /ping``: the server's version (which decides :attr:`capabilities`)."""
        response = self.http.request("GET", "/ping", description="ping")
        info = ServerInfo(
            version=response.headers.get("X-Influxdb-Version", "unknown"),
            build=response.headers.get("X-Influxdb-Build", ""),
        )
        self._info = info
        return info

    def query_json(self, database: str | None, statement: str) -> list[dict]:
        """Run InfluxQL with a JSON response; statement errors raise. Returns the ``series`` list."""
        params = {"q": statement, "epoch": "ns"}
        if database is not None:
            params["db"] = database
        response = self.http.request("POST", "/query", params=params, description="InfluxQL query")
        payload = json.loads(response.data or b"{}")
        if "error" in payload:
            raise self._statement_error(payload["error"], database)
        series: list[dict] = []
        for result in payload.get("results", []):
            if "error" in result:
                raise self._statement_error(result["error"], database)
            series.extend(result.get("series", []))
        return series

    def server_counters(self) -> ServerCounters:
        """The server's cumulative query and write counters (``SHOW STATS``)."""
        return counters_from_show_stats(self.query_json(None, "SHOW STATS"))

    def _statement_error(self, message: str, database: str | None) -> Exception:
        text = redact(str(message), self.http.secrets)
        if "database not found" in text:
            return DatabaseNotFoundError(
                f"InfluxDB at {self.http.where}: database {database!r} not found — create it "
                "(InfluxDBResource.ensure_database) or set INFLUXDB_DATABASE"
            )
        return BadRequestError(f"InfluxDB at {self.http.where} rejected an InfluxQL statement: {text}")

    def ensure_database(self, database: str) -> None:
        """``CREATE DATABASE`` (a no-op when it exists)."""
        self.query_json(None, influxql.create_database(database))

    def write(self, database: str, encoded: EncodedFrame) -> WriteStats:
        """POST the points in batches; the first rejected batch raises (nothing is silently dropped).

        With several batches, a worker thread sends batch k while this thread renders (and
        compresses) batch k+1, so the server ingests while the next body is built. Batches still go
        out one at a time and in order, each only after the previous one succeeded.
        """
        started = time.perf_counter()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.gzip_level:
            headers["Content-Encoding"] = "gzip"
        payloads = (
            gzip.compress(body, self.gzip_level) if self.gzip_level else body
            for body in encoded.batches(self.batch_size)
        )

        def post(payload: bytes) -> int:
            self.http.request(
                "POST", "/write", params={"db": database, "precision": "ns"}, body=payload,
                headers=headers, description="write",
            )
            return len(payload)

        if encoded.points <= self.batch_size:  # one batch: nothing to overlap
            sizes = [post(payload) for payload in payloads]
        else:
            sizes = _post_while_rendering(payloads, post)
        return WriteStats(encoded.points, len(sizes), sum(sizes), time.perf_counter() - started)

    def field_types(self, database: str, measurement: str) -> dict[str, str]:
        """``SHOW FIELD KEYS``; a field with several types per shard gets one merged type."""
        seen: dict[str, list[str]] = {}
        for series in self.query_json(database, influxql.show_field_keys(measurement)):
            for name, kind in series.get("values", []):
                seen.setdefault(name, []).append(kind)
        return {name: merge_field_types(kinds) for name, kinds in seen.items()}

    def tag_keys(self, database: str, measurement: str) -> list[str]:
        """``SHOW TAG KEYS`` of the measurement."""
        keys: list[str] = []
        for series in self.query_json(database, influxql.show_tag_keys(measurement)):
            keys.extend(value[0] for value in series.get("values", []))
        return keys

    def read(self, where: MeasurementSlice, schema: KnownSchema | None = None) -> pd.DataFrame:
        """Read the slice into a typed frame: ``time`` (UTC), tags (str), fields (server types).

        With ``schema`` (small measurements this package owns, such as the window ledger) the types
        are taken from it and only the ``SELECT`` is sent, answered as JSON: unlike CSV, a JSON answer
        carries statement errors (a killed or timed-out query, a missing database), which raise.
        """
        if schema is not None:
            tag_keys, field_types = list(schema.tags), schema.field_types
        else:
            field_types = self.field_types(where.database, where.measurement)
            tag_keys = self.tag_keys(where.database, where.measurement) if field_types else []
        if where.columns is not None:
            field_types = {k: v for k, v in field_types.items() if k in where.columns}
        if not field_types:
            return empty_frame(tag_keys, {})
        if schema is not None:
            return self._read_json(where, tag_keys, field_types)
        frame = self.http.stream(
            "POST", "/query", lambda blocks: parse_influxql_csv_stream(blocks, tag_keys, field_types),
            params=self._select_params(where, tag_keys), headers=_CSV, description="read",
        )
        return empty_frame(tag_keys, field_types) if frame is None else frame

    def _read_json(self, where: MeasurementSlice, tag_keys: list[str], field_types: dict[str, str]) -> pd.DataFrame:
        series = self.query_json(where.database, influxql.select_window(where, tag_keys))
        rows = [
            dict(zip(part["columns"], values, strict=True)) for part in series for values in part.get("values", [])
        ]
        if not rows:
            return empty_frame(tag_keys, field_types)
        return finish_frame(pd.DataFrame(rows), TIME_COLUMN, tag_keys, field_types)

    def _select_params(self, where: MeasurementSlice, tag_keys: list[str]) -> dict[str, str]:
        return {
            "db": where.database, "epoch": "ns", "chunked": "true", "chunk_size": str(self.chunk_size),
            "q": influxql.select_window(where, tag_keys),
        }

    def delete(self, where: MeasurementSlice) -> bool:
        """``DELETE FROM m WHERE time >= start AND time < end [AND tag = 'v' ...]`` if the window holds points.

        An empty window is not deleted: on InfluxDB 1.6 a ``DELETE`` can drop recently written series of
        *other* windows from the index (influxdata/influxdb#10503, fixed in 1.7.5), so we issue one only
        when there is something to replace. Returns whether a ``DELETE`` was sent.
        """
        if self._info is None:
            self.ping()  # whether the server can delete at all (not 3.x), and has the DELETE bug (1.6)
        if not self.capabilities.delete_time_range or not self.query_json(where.database, influxql.first_point(where)):
            return False
        self.query_json(where.database, influxql.delete_window(where))
        return True

    @property
    def server(self) -> ServerInfo | None:
        """What the last ``ping`` said (None before the first one)."""
        return self._info

    @property
    def capabilities(self) -> Capabilities:
        """InfluxQL reads; a time range can be deleted except on InfluxDB 3."""
        return Capabilities.of("v1", self._info)

    def close(self) -> None:
        """Release pooled connections."""
        self.http.close()


def _post_while_rendering(payloads: Iterator[bytes], post: Callable[[bytes], int]) -> list[int]:
    """Send ``payloads`` in order on one worker thread while the iterator renders the next one.

    A payload is submitted only after the previous one succeeded: the first failure is raised here
    and nothing after it is sent. Returns the size of every payload sent.
    """
    sizes: list[int] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="influx-write") as sender:
        in_flight: Future[int] | None = None
        for payload in payloads:
            if in_flight is not None:
                sizes.append(in_flight.result())
            in_flight = sender.submit(post, payload)
        if in_flight is not None:
            sizes.append(in_flight.result())
    return sizes
