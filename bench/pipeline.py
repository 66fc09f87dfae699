"""Pipeline benchmark P5 (P3 and P4 live in :mod:`bench.pipeline_rates`).

* P5 — 168 hourly windows of the first two stages (``validate_telemetry``, which writes
  ``validated_telemetry`` + ``quarantined_telemetry``, and ``normalized_telemetry``): 168 in-process
  ``dagster.materialize`` calls, one per window, against one single-run backfill (``materialize``
  with the tags ``dagster/asset_partition_range_start|end``). Goal: speed-up >= 10.

Both sides read the same simulated raw window data (written outside the timer into a fresh database
per trial), use a fresh ephemeral Dagster instance and run the stages without their asset checks.
The point counts each side stored are compared after every trial; a difference is printed and kept
in the JSON (``WARNING_stored_points_differ``). In-process ``materialize`` is the cheapest way to run
one window; a daemon-launched run per window costs seconds more, so the speed-up measured here is a
lower bound for real backfills.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
from dagster import AssetSelection, DagsterInstance, PartitionKeyRange, materialize

from influx_assets.devtools.feed import write_simulation
from influx_assets.influxdb.client.influxql import quote_ident
from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry import (
    ColdStorage,
    normalized_telemetry,
    pipeline_assets,
    pipeline_checks,
    validate_telemetry,
)
from influx_assets.resources import resources_for
from influx_assets.devtools.simulate import SimulationConfig, simulate

from bench.common import BenchContext, Timing, cpu_summary, interleaved_trials
from bench.figures import Figure, Goal

START = pd.Timestamp("2025-03-03T00:00:00Z")
WINDOWS = 168
MEASUREMENTS = ("validated_telemetry", "quarantined_telemetry", "normalized_telemetry")
#: Console logs at WARNING: Dagster's per-event DEBUG lines would bury the figures (and cost time).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def p5_sizes(quick: bool) -> dict[str, object]:
    """168 windows either way; 5 sensors (``--quick``) or 20, one reading a minute each."""
    return {"windows": WINDOWS, "sensors": 5 if quick else 20, "cadence_seconds": 60.0, "stages": 2}


def _stored_counts(ctx: BenchContext, database: str) -> dict[str, int]:
    counts = {}
    for measurement in MEASUREMENTS:
        body = ctx.raw_client().query(f"SELECT count(*) FROM {quote_ident(measurement)}", database)
        series = json.loads(body)["results"][0].get("series", [])
        counts[measurement] = max(series[0]["values"][0][1:], default=0) if series else 0
    return counts


def per_window_vs_range(ctx: BenchContext) -> list[Figure]:
    """P5: 168 single-window runs against one range run of the same two stages."""
    size = p5_sizes(ctx.quick)
    simulation = simulate(
        SimulationConfig(
            start=START, end=START + pd.Timedelta(hours=WINDOWS), sensors=int(size["sensors"]),  # type: ignore[arg-type]
            cadence_seconds=float(size["cadence_seconds"]), seed=11,  # type: ignore[arg-type]
        )
    )
    size["raw_points"] = len(simulation.points)
    last = START + pd.Timedelta(hours=WINDOWS - 1)
    keys = hourly_windows.get_partition_keys_in_range(
        PartitionKeyRange(START.strftime("%Y-%m-%d-%H:%M"), last.strftime("%Y-%m-%d-%H:%M"))
    )
    assert len(keys) == WINDOWS
    selection = AssetSelection.assets(*validate_telemetry.keys, *normalized_telemetry.keys).without_checks()
    definitions = [*pipeline_assets, *pipeline_checks]
    cold = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    stored: dict[str, list[dict[str, int]]] = {}
    timings: dict[str, list[Timing]] = {}

    def prepared(name: str, trial: int) -> tuple[str, dict[str, object]]:
        database = ctx.fresh_database(f"bench_p5_{trial}_{name}")
        influxdb = ctx.resource(database)
        write_simulation(simulation, influxdb, "all")
        return database, resources_for(influxdb, ColdStorage(base_url=str(cold / name)))

    def finished(name: str, database: str, timing: Timing, ok: bool) -> float:
        if not ok:
            raise RuntimeError(f"P5 {name}: a run failed")
        stored.setdefault(name, []).append(_stored_counts(ctx, database))
        timings.setdefault(name, []).append(timing)
        ctx.drop_database(database)
        return timing.wall

    def per_window(trial: int) -> float:
        database, resources = prepared("per_window", trial)
        instance = DagsterInstance.ephemeral()
        outcomes: list[bool] = []

        def run_each() -> None:
            for key in keys:
                result = materialize(
                    definitions, selection=selection, partition_key=key, resources=resources,
                    instance=instance, run_config=QUIET, raise_on_error=False,
                )
                outcomes.append(result.success)

        return finished("per_window_runs", database, ctx.measure(run_each), all(outcomes))

    def single_run(trial: int) -> float:
        database, resources = prepared("range", trial)
        instance = DagsterInstance.ephemeral()
        outcomes: list[bool] = []
        tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}

        def run_range() -> None:
            result = materialize(
                definitions, selection=selection, tags=tags, resources=resources, instance=instance,
                run_config=QUIET, raise_on_error=False,
            )
            outcomes.append(result.success)

        return finished("single_run_backfill", database, ctx.measure(run_range), all(outcomes))

    contenders = {"per_window_runs": per_window, "single_run_backfill": single_run}
    trials = interleaved_trials(contenders, ctx.trials)
    notes: dict[str, object] = {}
    if any(counts != stored["single_run_backfill"][0] for runs in stored.values() for counts in runs):
        # Seen on InfluxDB 1.6.7: a window's DELETE can drop series that live only in the server's
        # cache from the index (influxdata/influxdb#10503, fixed in 1.7), hiding points of *other*
        # windows. Reported, not raised: the timing is still worth having.
        notes["WARNING_stored_points_differ"] = stored
        print(f"  WARNING: the runs stored different point counts: {stored}")
    return [
        Figure.from_trials(
            "P5", "single-run backfill speed-up over per-window runs (168 windows, 2 stages)",
            "per_window_runs", "single_run_backfill", "s", trials, Goal(10.0), size,
            {**notes, "stored_points_per_measurement": stored["single_run_backfill"][0],
             "median_seconds": cpu_summary(timings),
             "timed_path": "dagster.materialize in-process, ephemeral instance, stages without checks"},
        )
    ]
