"""Pipeline benchmarks P3 and P4: a multi-day backfill against a plain loop, and end-to-end vs ingest.

* P3 — simulated raw telemetry over ``days`` days, then every stage backfilled as production does it
  (``BackfillPolicy.multi_run``: the hourly stages one range run per day, the daily stages one range
  run per 7 days; ``dagster.materialize`` with ``dagster/asset_partition_range_start|end`` and the
  stages' asset checks included) against a plain Python loop over the same ranges that reads the same
  windows with ``InfluxDBResource.read_window``, calls the same pure stage functions and replaces each
  window with ``delete_window`` + ``write_frame`` — no Dagster, no checks. The ratio (Dagster / loop,
  goal <= 1.3) therefore includes Dagster's overhead *and* the quality checks.
* P4 — end-to-end rate of the pipeline (raw points / time of the hourly range run(s) + the daily run,
  checks included) against the raw ingest rate of the same points (pre-encoded line protocol POSTed
  with urllib3, encoding outside the timer). Both measured in the same trial on the same database:
  the timed ingest *is* the pipeline's input.

Each side gets its own fresh database (and a fresh ephemeral Dagster instance); stored point counts of
every stage are compared after each trial and a difference is reported (``WARNING_stored_points_differ``,
see the DELETE caveat of InfluxDB 1.6.7 in ``bench/README.md``), not raised.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from dagster import AssetSelection, DagsterInstance, materialize

from influx_assets.devtools.feed import write_simulation
from influx_assets.influxdb import InfluxDBResource
from influx_assets.influxdb.client.influxql import quote_ident
from influx_assets.influxdb.client.line_protocol import encode_frame
from influx_assets.telemetry import ColdStorage, daily_assets, hourly_assets, pipeline_assets, pipeline_checks
from influx_assets.telemetry.aggregate import aggregate_5m
from influx_assets.telemetry.archive import archive_path, days_of, write_day
from influx_assets.telemetry.contract import (
    FEATURES_MEASUREMENT,
    FIVE_MINUTE_MEASUREMENT,
    HOURLY_MEASUREMENT,
    NORMALIZED_MEASUREMENT,
    QUARANTINED_MEASUREMENT,
    RAW_MEASUREMENT,
    RAW_TAGS,
    SERIES_TAGS,
    SLIDING_MEASUREMENT,
    VALIDATED_MEASUREMENT,
)
from influx_assets.telemetry.downsample import downsample_1h
from influx_assets.telemetry.features import features_by_sensor
from influx_assets.telemetry.normalize import normalize_window
from influx_assets.telemetry.sliding import sliding_15m
from influx_assets.telemetry.validate import validate_window
from influx_assets.telemetry.stage import DAILY_BACKFILL, HOURLY_BACKFILL
from influx_assets.resources import resources_for
from influx_assets.devtools.simulate import Simulation, SimulationConfig, simulate

from bench.common import BenchContext, Timing, cpu_summary, interleaved_trials
from bench.figures import Figure, Goal, median

START = pd.Timestamp("2025-03-03T00:00:00Z")  # a Monday: 7 days = one daily range run
DAY = pd.Timedelta(days=1)
HOUR = pd.Timedelta(hours=1)
STORED = (
    VALIDATED_MEASUREMENT, QUARANTINED_MEASUREMENT, NORMALIZED_MEASUREMENT, FIVE_MINUTE_MEASUREMENT,
    SLIDING_MEASUREMENT, HOURLY_MEASUREMENT, FEATURES_MEASUREMENT,
)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DEFINITIONS = [*pipeline_assets, *pipeline_checks]
#: As in production (``influx_assets_tests/test_pipeline_end_to_end.py::run``): the stages with checks.
HOURLY_SELECTION = AssetSelection.assets(*[k for a in hourly_assets for k in a.keys])
DAILY_SELECTION = AssetSelection.assets(*[k for a in daily_assets for k in a.keys])


def p3_sizes(quick: bool) -> dict[str, object]:
    """1 day x 20 sensors (``--quick``) or 7 days x 20 sensors, one reading a minute each."""
    return {"days": 1 if quick else 7, "sensors": 20, "cadence_seconds": 60.0}


def p4_sizes(quick: bool) -> dict[str, object]:
    """100 sensors x 10 s x 6 h (``--quick``, 218k points) or x 24 h (864k points).

    The goal's own size, 1,000 sensors x 10 s x 24 h (8.64 M points), runs with ``BENCH_P4_FULL=1``:
    ~6 min of pipeline per trial on the 2-core machine; the runs are cut as the backfill policy says
    (``INFLUX_ASSETS_HOURS_PER_RUN``), and the figure records the peak RSS.
    """
    if quick:
        return {"hours": 6, "sensors": 100, "cadence_seconds": 10.0}
    return {"hours": 24, "sensors": 1000 if os.environ.get("BENCH_P4_FULL") == "1" else 100,
            "cadence_seconds": 10.0}


def _key(stamp: pd.Timestamp, daily: bool = False) -> str:
    return stamp.strftime("%Y-%m-%d" if daily else "%Y-%m-%d-%H:%M")


def hourly_ranges(start: pd.Timestamp, end: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The hourly stages' backfill runs: ``HOURLY_BACKFILL``'s windows per run (default 24: one day)."""
    hours = HOURLY_BACKFILL.max_partitions_per_run or 24
    bounds = list(pd.date_range(start, end, freq=f"{hours}h", inclusive="left")) + [end]
    return list(itertools.pairwise(bounds))


def daily_ranges(start: pd.Timestamp, end: pd.Timestamp) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The daily stages' backfill runs: ``DAILY_BACKFILL``'s days per run (default 7); whole days."""
    days = DAILY_BACKFILL.max_partitions_per_run or 7
    first, last = start.floor("1D"), (end - pd.Timedelta(1)).floor("1D") + DAY
    bounds = list(pd.date_range(first, last, freq=f"{days}D", inclusive="left")) + [last]
    return list(itertools.pairwise(bounds))


# --- the two contenders ------------------------------------------------------------------------------
def dagster_backfill(
    resources: dict[str, object], start: pd.Timestamp, end: pd.Timestamp, outcomes: list[bool]
) -> Callable[[], None]:
    """Range runs as the backfill policy cuts them, checks included, on a fresh ephemeral instance."""
    instance = DagsterInstance.ephemeral()

    def run(selection: AssetSelection, first: str, last: str) -> None:
        tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
        result = materialize(
            DEFINITIONS, selection=selection, tags=tags, resources=resources, instance=instance,
            run_config=QUIET, raise_on_error=False,
        )
        outcomes.append(result.success)

    def backfill() -> None:
        for lo, hi in hourly_ranges(start, end):
            run(HOURLY_SELECTION, _key(lo), _key(hi - HOUR))
        for lo, hi in daily_ranges(start, end):
            run(DAILY_SELECTION, _key(lo, True), _key(hi - DAY, True))

    return backfill


def _replace(influxdb: InfluxDBResource, frame: pd.DataFrame, measurement: str, tags: Sequence[str],
             lo: pd.Timestamp, hi: pd.Timestamp) -> None:
    """What the IO manager does with a stage's output: delete the window, write the frame."""
    influxdb.prepare_database()
    influxdb.delete_window(influxdb.slice(measurement, lo, hi))
    influxdb.write_frame(frame, measurement, list(tags))


def plain_loop(influxdb: InfluxDBResource, cold: ColdStorage, start: pd.Timestamp,
               end: pd.Timestamp) -> Callable[[], None]:
    """The same ranges, reads, stage functions and writes as the backfill; no Dagster, no checks."""
    def read(measurement: str, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
        return influxdb.read_window(influxdb.slice(measurement, lo, hi))

    def loop() -> None:
        for lo, hi in hourly_ranges(start, end):
            validated, quarantined = validate_window(read(RAW_MEASUREMENT, lo, hi))
            _replace(influxdb, validated, VALIDATED_MEASUREMENT, RAW_TAGS, lo, hi)
            _replace(influxdb, quarantined, QUARANTINED_MEASUREMENT, [*RAW_TAGS, "reason"], lo, hi)
            normalized = normalize_window(read(VALIDATED_MEASUREMENT, lo, hi))
            _replace(influxdb, normalized, NORMALIZED_MEASUREMENT, SERIES_TAGS, lo, hi)
            five = aggregate_5m(read(NORMALIZED_MEASUREMENT, lo, hi))
            _replace(influxdb, five, FIVE_MINUTE_MEASUREMENT, SERIES_TAGS, lo, hi)
            sliding = sliding_15m(read(FIVE_MINUTE_MEASUREMENT, lo - HOUR, hi), lo, hi)
            _replace(influxdb, sliding, SLIDING_MEASUREMENT, SERIES_TAGS, lo, hi)
        filesystem, base = cold.location()
        for lo, hi in daily_ranges(start, end):
            hourly = downsample_1h(read(FIVE_MINUTE_MEASUREMENT, lo, hi))
            _replace(influxdb, hourly, HOURLY_MEASUREMENT, SERIES_TAGS, lo, hi)
            normalized = read(NORMALIZED_MEASUREMENT, lo, hi)  # telemetry_archive's own load_input
            for day in days_of(lo, hi):
                rows = normalized[(normalized["time"] >= day) & (normalized["time"] < day + DAY)]
                write_day(filesystem, archive_path(base, day), rows)
            features = features_by_sensor(read(NORMALIZED_MEASUREMENT, lo, hi), lo, hi)
            _replace(influxdb, features, FEATURES_MEASUREMENT, SERIES_TAGS, lo, hi)

    return loop


# --- shared bookkeeping ------------------------------------------------------------------------------
def stored_counts(ctx: BenchContext, database: str) -> dict[str, int]:
    """Points stored per stage measurement (the largest field count of ``count(*)``)."""
    counts = {}
    for measurement in STORED:
        body = ctx.raw_client().query(f"SELECT count(*) FROM {quote_ident(measurement)}", database)
        series = json.loads(body)["results"][0].get("series", [])
        counts[measurement] = max(series[0]["values"][0][1:], default=0) if series else 0
    return counts


def _simulation(sensors: int, cadence: float, end: pd.Timestamp) -> Simulation:
    return simulate(SimulationConfig(start=START, end=end, sensors=sensors, cadence_seconds=cadence, seed=13))


def simulated_pipeline(
    ctx: BenchContext, database: str, sensors: int, cadence_seconds: float, hours: int, cold: Path
) -> tuple[int, Callable[[], None], list[bool]]:
    """A simulated fleet's raw points written into a fresh ``database`` (untimed), and P4's pipeline over them.

    Returns the raw point count, the backfill to run (hourly range runs + daily run, checks included)
    and the list its runs append their outcomes to. For the diagnostics that run one pipeline
    (:mod:`bench.io_by_caller`, :mod:`bench.profile_pipeline`).
    """
    end = START + HOUR * hours
    simulation = _simulation(sensors, cadence_seconds, end)
    influxdb = ctx.resource(ctx.fresh_database(database), timeout_seconds=300.0)
    write_simulation(simulation, influxdb, "all")
    outcomes: list[bool] = []
    backfill = dagster_backfill(resources_for(influxdb, ColdStorage(base_url=str(cold))), START, end, outcomes)
    return len(simulation.raw_points("all")), backfill, outcomes


def _differences(stored: dict[str, list[dict[str, int]]], reference: str) -> dict[str, object]:
    if any(counts != stored[reference][0] for runs in stored.values() for counts in runs):
        print(f"  WARNING: the runs stored different point counts: {stored}")
        return {"WARNING_stored_points_differ": stored}
    return {}


def backfill_vs_loop(ctx: BenchContext) -> list[Figure]:
    """P3: the production-shaped backfill of every stage against a plain loop (same reads and writes)."""
    size = p3_sizes(ctx.quick)
    end = START + DAY * int(size["days"])  # type: ignore[call-overload]
    simulation = _simulation(int(size["sensors"]), float(size["cadence_seconds"]), end)  # type: ignore[call-overload, arg-type]
    size |= {"raw_points": len(simulation.points), "hourly_runs": len(hourly_ranges(START, end)),
             "daily_runs": len(daily_ranges(START, end))}
    cold = Path(tempfile.mkdtemp(prefix="bench-p3-cold-"))
    stored: dict[str, list[dict[str, int]]] = {}
    timings: dict[str, list[Timing]] = {}

    def prepared(name: str, trial: int) -> tuple[str, InfluxDBResource, ColdStorage]:
        database = ctx.fresh_database(f"bench_p3_{trial}_{name}")
        influxdb = ctx.resource(database)
        write_simulation(simulation, influxdb, "all")
        return database, influxdb, ColdStorage(base_url=str(cold / f"{name}_{trial}"))

    def finished(name: str, database: str, timing: Timing) -> float:
        stored.setdefault(name, []).append(stored_counts(ctx, database))
        timings.setdefault(name, []).append(timing)
        ctx.drop_database(database)
        return timing.wall

    def with_dagster(trial: int) -> float:
        database, influxdb, storage = prepared("dagster", trial)
        outcomes: list[bool] = []
        timing = ctx.measure(dagster_backfill(resources_for(influxdb, storage), START, end, outcomes))
        if not all(outcomes):
            raise RuntimeError(f"P3: a backfill run failed ({outcomes})")
        return finished("dagster_backfill", database, timing)

    def with_loop(trial: int) -> float:
        database, influxdb, storage = prepared("loop", trial)
        return finished("plain_loop", database, ctx.measure(plain_loop(influxdb, storage, START, end)))

    try:
        trials = interleaved_trials({"dagster_backfill": with_dagster, "plain_loop": with_loop}, ctx.trials)
    finally:
        shutil.rmtree(cold, ignore_errors=True)
    return [
        Figure.from_trials(
            "P3", f"{size['days']}-day backfill of all stages (range runs + checks) / plain loop",
            "dagster_backfill", "plain_loop", "s", trials, Goal(1.3, at_least=False), size,
            {**_differences(stored, "plain_loop"), "stored_points_per_measurement": stored["plain_loop"][0],
             "median_seconds": cpu_summary(timings),
             "timed_path": "Dagster: materialize per backfill-policy range, checks included; loop: "
                           "read_window + pure stage functions + delete_window/write_frame, no checks"},
        )
    ]


def _poster(ctx: BenchContext, database: str, bodies: Sequence[bytes]) -> Callable[[], None]:
    """The ingest baseline: POST pre-encoded line-protocol batches to ``/write``, one after another."""
    client = ctx.raw_client()

    def post_all() -> None:
        for body in bodies:
            client.post("/write", {"db": database, "precision": "ns"}, body)

    return post_all


def end_to_end(ctx: BenchContext) -> list[Figure]:
    """P4: raw points per second through every stage against raw points per second ingested."""
    size = p4_sizes(ctx.quick)
    end = START + HOUR * int(size["hours"])  # type: ignore[call-overload]
    simulation = _simulation(int(size["sensors"]), float(size["cadence_seconds"]), end)  # type: ignore[call-overload, arg-type]
    raw = simulation.raw_points("all")
    points = len(raw)
    size["raw_points"] = points
    encoded = encode_frame(raw, RAW_MEASUREMENT, list(RAW_TAGS))
    bodies = list(encoded.batches(10_000))  # rendered outside the timer
    cold = Path(tempfile.mkdtemp(prefix="bench-p4-cold-"))
    stored: list[dict[str, int]] = []
    timings: dict[str, list[Timing]] = {"ingest": [], "pipeline": []}
    rates: dict[str, list[float]] = {"pipeline": [], "raw_ingest": []}

    server_work: dict[str, list[float]] = {"pipeline_server_cpu": [], "ingest_server_cpu": []}
    amplification: list[dict[str, float]] = []
    for trial in range(ctx.trials):
        database = ctx.fresh_database(f"bench_p4_{trial}")
        influxdb = ctx.resource(database)
        counters = influxdb.connection.server_counters
        ingest_before = counters()
        ingest_timing = ctx.measure(_poster(ctx, database, bodies))
        ingest_counted = counters().since(ingest_before)
        timings["ingest"].append(ingest_timing)
        outcomes: list[bool] = []
        storage = ColdStorage(base_url=str(cold / str(trial)))
        before = counters()
        timing = ctx.measure(dagster_backfill(resources_for(influxdb, storage), START, end, outcomes))
        counted = counters().since(before)
        if timing.server_cpu is not None and ingest_timing.server_cpu:
            server_work["pipeline_server_cpu"].append(timing.server_cpu)
            server_work["ingest_server_cpu"].append(ingest_timing.server_cpu)
        amplification.append({
            "points_written_per_raw_point": round((counted.points_written or 0) / points, 3),
            "response_bytes_per_raw_point": round((counted.response_bytes or 0) / points, 1),
            "ingest_request_bytes_per_raw_point": round(sum(map(len, bodies)) / points, 1),
            "queries": counted.queries,
            "query_seconds": round(counted.query_seconds, 2),
            "ingest_points_written": ingest_counted.points_written or 0,
        })
        if not all(outcomes):
            raise RuntimeError(f"P4: a pipeline run failed ({outcomes})")
        timings["pipeline"].append(timing)
        stored.append(stored_counts(ctx, database))
        ctx.drop_database(database)
        # context, not the figure: the same stages as a plain loop (no Dagster, no checks), same input
        database = ctx.fresh_database(f"bench_p4_{trial}_loop")
        influxdb = ctx.resource(database)
        write_simulation(simulation, influxdb, "all")
        loop = ctx.measure(plain_loop(influxdb, ColdStorage(base_url=str(cold / f"loop{trial}")), START, end))
        timings.setdefault("plain_loop", []).append(loop)
        ctx.drop_database(database)
        rates["pipeline"].append(points / timing.wall)
        rates["raw_ingest"].append(points / ingest_timing.wall)
        print(f"  trial {trial}: ingest {ingest_timing.wall:.2f} s, pipeline {timing.wall:.2f} s, "
              f"plain loop {loop.wall:.2f} s")
    shutil.rmtree(cold, ignore_errors=True)
    peaks = [t.peak_rss_kib for t in timings["pipeline"] if t.peak_rss_kib]
    notes: dict[str, object] = {
        # resident memory of this process during the pipeline runs; at its start it already holds the
        # benchmark's own copies of the raw points (the simulation, its frame and the encoded bodies)
        "pipeline_peak_rss_mib": round(max(peaks) / 1024) if peaks else None,
        "hours_per_run": HOURLY_BACKFILL.max_partitions_per_run, "days_per_run": DAILY_BACKFILL.max_partitions_per_run,
        "rss_at_pipeline_start_mib": round(max(t.rss_before_kib or 0 for t in timings["pipeline"]) / 1024),
        "plain_loop_rate_points_per_s": round(points / median([t.wall for t in timings["plain_loop"]])),
        "plain_loop_rate_over_ingest": round(
            median([t.wall for t in timings["ingest"]]) / median([t.wall for t in timings["plain_loop"]]), 3
        ),
    }
    if any(s != stored[0] for s in stored):
        notes["WARNING_stored_points_differ"] = stored
    figures = []
    if server_work["pipeline_server_cpu"]:
        figures.append(Figure.from_trials(
            "P6", f"influxd CPU of the whole pipeline / influxd CPU of ingesting the same {points:,} raw points",
            "pipeline_server_cpu", "ingest_server_cpu", "s", server_work, Goal(3.0, at_least=False), size,
            {"io_amplification_per_trial": amplification,
             "measured_how": "user+system CPU seconds of the local influxd (/proc) around each side; "
                             "points written and response bytes from the server's SHOW STATS"},
        ))
    return figures + [
        Figure.from_trials(
            "P4", f"end-to-end pipeline rate / raw ingest rate ({points:,} raw points)",
            "pipeline", "raw_ingest", "points/s", rates, Goal(0.4), size,
            {**notes, "stored_points_per_measurement": stored[0], "median_seconds": cpu_summary(timings),
             "timed_path": "pipeline: hourly range run(s) + daily range run via materialize, checks included; "
                           "ingest: pre-encoded line protocol POSTed in 10k-point batches (urllib3)"},
        )
    ]
