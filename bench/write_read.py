"""P1, P1b, P2: the data path of the IO manager against the fastest way to move the same bytes.

* P1  — ``InfluxDBIOManager.handle_output`` (called with ``dagster.build_output_context`` for one daily
  partition: encode, window check, ``prepare_database``, ``delete_window``, write, metadata) against
  POSTing the same points, encoded beforehand outside the timer, with urllib3 in batches of the same
  size. Goal: IO-manager rate / pre-encoded rate >= 0.85.
* P1b — the same IO-manager call against influxdb-client's ``DataframeSerializer`` (the serializer
  behind ``write_api.write(record=df, ...)``) plus the POST of its lines to ``/write`` (1.x has no
  ``/api/v2/write``), both timed. Goal >= 2.0.
* P2  — ``InfluxDBIOManager.load_input`` (``build_input_context``: schema queries, CSV fetch, typed
  DataFrame) against a plain urllib3 POST of the same InfluxQL with ``Accept: application/csv``,
  keeping only the bytes. Goal >= 0.85.

All contenders share one server and batch size; P1/P1b contenders write to a fresh database per trial.
"""

from __future__ import annotations

import gc
import json
import logging

import numpy as np
import pandas as pd
from dagster import DailyPartitionsDefinition, OutputContext, build_input_context, build_output_context

from influx_assets.influxdb.client import influxql
from influx_assets.influxdb.io_manager import InfluxDBIOManager
from influx_assets.influxdb.client.line_protocol import encode_frame
from influx_assets.influxdb.client.slice import MeasurementSlice

from bench.common import BenchContext, Timing, cpu_summary, interleaved_trials, timed
from bench.figures import Figure, Goal, median

DAY = "2024-01-01"
PARTITIONS = DailyPartitionsDefinition(start_date=DAY, timezone="UTC")
MEASUREMENT = "sensor_readings"
TAGS = ["site", "sensor_id"]
BATCH_SIZE = 10_000  # the resource's default write_batch_size, used by every contender
SENSORS = 500


def sizes(quick: bool) -> dict[str, int]:
    """Points written and read: 100k for ``--quick``, 500k for the full run."""
    points = 100_000 if quick else 500_000
    return {"points": points, "sensors": SENSORS, "tags": len(TAGS), "fields": 3, "batch_size": BATCH_SIZE}


def telemetry_frame(points: int, sensors: int = SENSORS) -> pd.DataFrame:
    """One day of readings: ``sensors`` series (2 tags), 3 float fields, evenly spaced timestamps.

    Two fields carry sensor precision (2 and 1 decimals), one full double precision (a computed value),
    so float formatting sees both short and 17-digit numbers.
    """
    rng = np.random.default_rng(7)
    per_sensor = points // sensors
    steps = np.repeat(np.arange(per_sensor, dtype="int64"), sensors) * (86_400_000_000_000 // per_sensor)
    ids = np.arange(sensors)
    return pd.DataFrame(
        {
            "time": pd.Timestamp(DAY, tz="UTC") + pd.to_timedelta(steps, unit="ns"),
            "site": np.tile(np.array([f"site-{i % 10:02d}" for i in ids]), per_sensor),
            "sensor_id": np.tile(np.array([f"sensor-{i:04d}" for i in ids]), per_sensor),
            "temperature": rng.normal(21.0, 4.0, per_sensor * sensors).round(2),
            "humidity": rng.uniform(20.0, 80.0, per_sensor * sensors).round(1),
            "pressure": rng.normal(1013.25, 3.0, per_sensor * sensors),
        }
    )


def _output_context(database: str) -> OutputContext:
    context = build_output_context(
        asset_key=[MEASUREMENT],
        partition_key=DAY,
        asset_partitions_def=PARTITIONS,
        definition_metadata={"influxdb/tags": TAGS, "influxdb/database": database},
    )
    context.log.setLevel(logging.INFO)  # the IO manager's debug line would bury the figures
    return context


def _count(ctx: BenchContext, database: str) -> int:
    statement = f"SELECT count(pressure) FROM {influxql.quote_ident(MEASUREMENT)}"
    body = ctx.raw_client().query(statement, database)
    series = json.loads(body)["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


def write_benchmarks(ctx: BenchContext) -> list[Figure]:
    """P1 and P1b from one set of interleaved trials (IO manager, pre-encoded POST, influxdb-client)."""
    from influxdb_client.client.write.dataframe_serializer import DataframeSerializer
    from influxdb_client.client.write_api import PointSettings

    size = sizes(ctx.quick)
    frame = telemetry_frame(size["points"])
    points = len(frame)
    bodies = list(encode_frame(frame, MEASUREMENT, TAGS).batches(BATCH_SIZE))  # the baseline's bytes
    raw = ctx.raw_client()
    counts: dict[str, list[int]] = {}
    timings: dict[str, list[Timing]] = {}

    def checked(name: str, database: str, timing: Timing) -> float:
        """Record the timing and the points the server really holds, drop the database, give the rate."""
        counts.setdefault(name, []).append(_count(ctx, database))
        timings.setdefault(name, []).append(timing)
        ctx.drop_database(database)
        return points / timing.wall

    def io_manager(trial: int) -> float:
        database = ctx.fresh_database(f"bench_p1_{trial}_io")
        manager = InfluxDBIOManager(influxdb=ctx.resource(database, write_batch_size=BATCH_SIZE))
        context = _output_context(database)
        gc.collect()
        return checked("io_manager", database, ctx.measure(lambda: manager.handle_output(context, frame)))

    def pre_encoded(trial: int) -> float:
        database = ctx.fresh_database(f"bench_p1_{trial}_raw")
        params = {"db": database, "precision": "ns"}
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        gc.collect()
        timing = ctx.measure(lambda: [raw.post("/write", params, body, headers) for body in bodies])
        return checked("pre_encoded_post", database, timing)

    def influxdb_client(trial: int) -> float:
        database = ctx.fresh_database(f"bench_p1_{trial}_client")
        params = {"db": database, "precision": "ns"}

        def serialize_and_post() -> None:
            serializer = DataframeSerializer(
                frame, PointSettings(), precision="ns", chunk_size=BATCH_SIZE,
                data_frame_measurement_name=MEASUREMENT, data_frame_tag_columns=TAGS,
                data_frame_timestamp_column="time",
            )
            for chunk in range(serializer.number_of_chunks):
                lines = serializer.serialize(chunk)
                raw.post("/write", params, "\n".join(lines).encode("utf-8"))

        gc.collect()
        return checked("influxdb_client_post", database, ctx.measure(serialize_and_post))

    def encode_only(trial: int) -> float:
        return points / timed(lambda: list(encode_frame(frame, MEASUREMENT, TAGS).batches(BATCH_SIZE)))

    contenders = {
        "io_manager": io_manager, "pre_encoded_post": pre_encoded, "influxdb_client_post": influxdb_client,
    }
    io_manager(-1)  # warm-up: imports, connection pool, first shard creation
    pre_encoded(-1)
    counts.clear()
    timings.clear()
    trials = interleaved_trials(contenders, ctx.trials)
    encode_rates = [encode_only(t) for t in range(ctx.trials)]
    notes = {
        "points_stored_per_trial": counts,
        "encode_frame_rate_points_per_s (alone, not in any ratio)": round(median(encode_rates)),
        "median_seconds": cpu_summary(timings),
        "timed_path": "InfluxDBIOManager.handle_output(build_output_context(daily partition), frame)",
    }
    p1 = Figure.from_trials(
        "P1", "IO-manager write rate / pre-encoded POST rate", "io_manager", "pre_encoded_post",
        "points/s", trials, Goal(0.9), size, notes,
    )
    p1b = Figure.from_trials(
        "P1b", "IO-manager write rate / influxdb-client serializer + POST", "io_manager",
        "influxdb_client_post", "points/s", trials, Goal(2.0), size,
        {"points_stored_per_trial": counts, "median_seconds": cpu_summary(timings)},
    )
    return [p1, p1b]


def read_benchmark(ctx: BenchContext) -> list[Figure]:
    """P2: ``load_input`` of one daily window against the raw CSV bytes of the same query."""
    size = sizes(ctx.quick)
    database = ctx.fresh_database("bench_p2")
    resource = ctx.resource(database)
    frame = telemetry_frame(size["points"])
    resource.write_frame(frame, MEASUREMENT, TAGS)
    manager = InfluxDBIOManager(influxdb=resource)
    window = PARTITIONS.time_window_for_partition_key(DAY)
    where = MeasurementSlice.for_window(database, MEASUREMENT, window.start, window.end)
    transport = resource.get_transport()
    params = {
        "db": database, "epoch": "ns", "chunked": "true", "chunk_size": str(transport.chunk_size),  # type: ignore[attr-defined]
        "q": influxql.select_window(where, sorted(TAGS)),
    }
    raw = ctx.raw_client()
    rows: dict[str, list[int]] = {}
    timings: dict[str, list[Timing]] = {}

    def io_manager(trial: int) -> float:
        context = build_input_context(
            upstream_output=_output_context(database), asset_key=[f"{MEASUREMENT}_reader"],
            partition_key=DAY, asset_partitions_def=PARTITIONS,
        )
        context.log.setLevel(logging.INFO)
        gc.collect()
        loaded: list[pd.DataFrame] = []
        timing = ctx.measure(lambda: loaded.append(manager.load_input(context)))
        rows.setdefault("io_manager", []).append(len(loaded[0]))
        timings.setdefault("io_manager", []).append(timing)
        return len(loaded[0]) / timing.wall

    def raw_fetch(trial: int) -> float:
        gc.collect()
        body: list[bytes] = []
        csv = {"Accept": "application/csv"}
        timing = ctx.measure(lambda: body.append(raw.post("/query", params, headers=csv)))
        rows.setdefault("raw_fetch_csv", []).append(body[0].count(b"\n") - 1)
        timings.setdefault("raw_fetch_csv", []).append(timing)
        return size["points"] / timing.wall

    io_manager(-1)
    raw_fetch(-1)
    rows.clear()
    timings.clear()
    trials = interleaved_trials({"io_manager": io_manager, "raw_fetch_csv": raw_fetch}, ctx.trials)
    ctx.drop_database(database)
    notes = {
        "rows_per_trial": rows, "median_seconds": cpu_summary(timings),
        "timed_path": "InfluxDBIOManager.load_input(build_input_context)",
    }
    return [
        Figure.from_trials(
            "P2", "IO-manager read rate (DataFrame ready) / raw CSV fetch of the same window", "io_manager",
            "raw_fetch_csv", "rows/s", trials, Goal(0.85), size, notes,
        )
    ]
