"""``influx-assets`` command line: ``simulate`` raw telemetry, and ``demo-data`` for the demo UI."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd


def _resource(args: argparse.Namespace):  # noqa: ANN202 - InfluxDBResource, imported lazily
    from influx_assets.influxdb import InfluxDBResource

    return InfluxDBResource(
        url=args.url or os.environ.get("INFLUXDB_URL") or "http://127.0.0.1:8086",
        database=args.database or os.environ.get("INFLUXDB_DATABASE") or "telemetry",
        token=os.environ.get("INFLUXDB_TOKEN") or None,
        org=os.environ.get("INFLUXDB_ORG") or None,
        username=os.environ.get("INFLUXDB_USERNAME") or None,
        password=os.environ.get("INFLUXDB_PASSWORD") or None,
        api=os.environ.get("INFLUXDB_API") or "auto",
    )


def _range(args: argparse.Namespace) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``--start``/``--end``, or the last ``--hours`` complete hours."""
    end = pd.Timestamp(args.end) if args.end else pd.Timestamp.now(tz="UTC").floor("1h")
    end = end.tz_localize("UTC") if end.tzinfo is None else end
    start = pd.Timestamp(args.start) if args.start else end - pd.Timedelta(hours=args.hours)
    return (start.tz_localize("UTC") if start.tzinfo is None else start), end


def _rates(pairs: list[str]) -> dict[str, float]:
    rates: dict[str, float] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if not value:
            raise SystemExit(f"--rate expects KIND=RATE, got {pair!r}")
        rates[name.strip()] = float(value)
    return rates


def _simulate(args: argparse.Namespace) -> int:
    from influx_assets.devtools.feed import write_simulation
    from influx_assets.devtools.manifest import build_manifest, write_manifest
    from influx_assets.devtools.simulate import DEFECT_KINDS, SimulationConfig, simulate

    start, end = _range(args)
    rates = {kind: args.defect_rate for kind in DEFECT_KINDS if args.defect_rate is not None}
    rates |= _rates(args.rate)
    config = SimulationConfig(
        start=start, end=end, sensors=args.sensors, cadence_seconds=args.cadence, seed=args.seed, rates=rates
    )
    simulation = simulate(config)
    manifest = build_manifest(simulation)
    resource = _resource(args)
    info = resource.wait_until_ready()
    progress = not args.no_progress
    written = write_simulation(simulation, resource, "on_time", progress=progress).points_written
    if not args.skip_late:
        written += write_simulation(simulation, resource, "late", progress=progress).points_written
    if args.manifest:
        write_manifest(manifest, Path(args.manifest))
    totals = manifest["totals"]
    quarantined = sum(totals["quarantined"].values())
    print(
        f"simulate: {written} points for {args.sensors} sensors, {start.isoformat()} to {end.isoformat()}, "
        f"into {resource.database!r} at {resource.public_url} (InfluxDB {info.version}); expected "
        f"{totals['validated']} valid, {quarantined} quarantined, {totals['normalized']} normalized"
        + (f"; manifest: {args.manifest}" if args.manifest else "")
    )
    return 0


def _demo_data(args: argparse.Namespace) -> int:
    """Load the demo windows that hold no raw points yet (deterministic by window: see devtools.demo)."""
    from influx_assets.devtools.demo import load_demo_data
    from influx_assets.devtools.manifest import build_manifest, write_manifest

    resource = _resource(args)
    info = resource.wait_until_ready()
    load = load_demo_data(
        resource, hours=args.hours, sensors=args.sensors, cadence_seconds=args.cadence, seed=args.seed,
        progress=not args.no_progress,
    )
    manifest = Path(args.manifest or ".run/demo-manifest.json")
    if load.simulation is not None:
        write_manifest(build_manifest(load.simulation), manifest)
    loaded = f"{load.points_written} points into {len(load.loaded)} window(s)"
    if load.loaded:
        loaded += f" {load.loaded[0]}...{load.loaded[-1]} (manifest of these: {manifest})"
    print(
        f"demo-data: {loaded}; {len(load.already_present)} window(s) already held raw points and were left "
        f"alone; {resource.database!r} at {resource.public_url} (InfluxDB {info.version})"
    )
    return 0


def _live_feed(args: argparse.Namespace) -> int:
    """Write the readings of each passing interval, like devices would, riding out outages, until stopped."""
    from influx_assets.devtools.feed import LiveFeedSettings, run_live_feed
    from influx_assets.devtools.local_server import pid_alive

    settings = LiveFeedSettings(
        sensors=args.sensors, interval_seconds=args.interval, cadence_seconds=args.cadence, seed=args.seed,
        iterations=args.iterations, max_backoff_seconds=args.max_backoff,
    )

    def keep_running() -> bool:
        if args.while_pid and not pid_alive(args.while_pid):
            print(f"live-feed: process {args.while_pid} ended; stopping", flush=True)
            return False
        return True

    run_live_feed(_resource(args), settings, keep_running)
    return 0


def _demo_backfill(args: argparse.Namespace) -> int:
    """Backfill the hourly stages over the recent windows no run has processed, unless a demo backfill runs."""
    from dagster import DagsterInstance

    from influx_assets.automation.schedules import HOURLY_STAGES
    from influx_assets.definitions import defs
    from influx_assets.devtools.demo import DEMO_TAGS, launch_hourly_backfill, recent_windows, wait_for_webserver
    from influx_assets.devtools.orphans import unfinished_backfills, windows_not_processed

    wait_for_webserver(args.webserver)
    recent = recent_windows(args.hours)
    if args.all_windows:
        windows = recent
    else:
        with DagsterInstance.get() as instance:
            earlier = unfinished_backfills(instance, DEMO_TAGS)
            if earlier:
                print(f"demo-backfill: the demo backfill {', '.join(earlier)} of an earlier start is still in "
                      "progress (its runs and their retries finish its windows); not launching another")
                return 0
            windows = windows_not_processed(instance, sorted(HOURLY_STAGES.resolve(defs.resolve_asset_graph())), recent)
    if not windows:
        print(f"demo-backfill: every window of {recent[0]}...{recent[-1]} is already processed; nothing to backfill")
        return 0
    backfill = launch_hourly_backfill(args.webserver, windows)
    print(f"demo-backfill: backfill {backfill} of the hourly stages over {windows[0]}...{windows[-1]} "
          f"({len(windows)} of the last {len(recent)} windows)")
    return 0


def _fail_orphaned_runs(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from influx_assets.devtools.orphans import fail_orphaned_runs

    with DagsterInstance.get() as instance:
        orphans = fail_orphaned_runs(instance)
    for orphan in orphans:
        print(f"fail-orphaned-runs: run {orphan.run_id} was in progress without a worker; marked failed")
    print(f"fail-orphaned-runs: {len(orphans)} run(s) marked failed")
    return 0


def _init_pools(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from influx_assets.automation.pools import initialize_writer_pools, writer_pools

    with DagsterInstance.get() as instance:
        created = initialize_writer_pools(instance)
    print(f"init-pools: {len(created)} created, {len(writer_pools()) - len(created)} already there")
    return 0


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="InfluxDB URL (default $INFLUXDB_URL or http://127.0.0.1:8086)")
    parser.add_argument("--database", help="database/bucket (default $INFLUXDB_DATABASE or telemetry)")
    parser.add_argument(
        "--manifest", help="write the expected counts per window and reason to this JSON file"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``influx-assets`` console script."""
    parser = argparse.ArgumentParser(prog="influx-assets")
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser(
        "simulate",
        help="write realistic raw telemetry (with defects) to sensor_raw",
        description="Deterministic from --seed. Defect kinds: see influx_assets.devtools.simulate.",
    )
    sim.add_argument("--sensors", type=int, default=50, help="number of sensors (default 50)")
    sim.add_argument("--start", help="first timestamp, ISO 8601 (default: --hours before --end)")
    sim.add_argument("--end", help="end (exclusive), ISO 8601 (default: the current hour)")
    sim.add_argument("--hours", type=float, default=2.0, help="length when --start is not given (default 2)")
    sim.add_argument("--cadence", type=float, default=60.0, help="seconds between readings (default 60)")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sim.add_argument("--defect-rate", type=float, help="one rate for every defect kind")
    sim.add_argument(
        "--rate", action="append", default=[], metavar="KIND=RATE", help="rate of one defect kind"
    )
    sim.add_argument("--skip-late", action="store_true", help="do not write the late arrivals")
    _add_target(sim)
    sim.set_defaults(run=_simulate)

    demo = commands.add_parser(
        "demo-data",
        help="simulate the last 6 hours of 20 sensors for the demo UI",
        description="Writes only closed hourly windows that hold no raw points yet; a window's points "
        "depend only on --seed, --sensors, --cadence and the window, so a restart changes no window.",
    )
    demo.add_argument("--sensors", type=int, default=20)
    demo.add_argument("--hours", type=int, default=6, help="closed hourly windows back from now (default 6)")
    demo.add_argument("--cadence", type=float, default=60.0)
    demo.add_argument("--seed", type=int, default=0)
    _add_target(demo)
    demo.set_defaults(run=_demo_data)

    live = commands.add_parser("live-feed", help="keep writing current readings (the demo's live feed)")
    live.add_argument("--sensors", type=int, default=20)
    live.add_argument("--interval", type=float, default=60.0, help="seconds between writes (default 60)")
    live.add_argument("--cadence", type=float, default=30.0, help="seconds between readings (default 30)")
    live.add_argument("--seed", type=int, default=1000)
    live.add_argument("--iterations", type=int, default=0, help="stop after N writes (default: never)")
    live.add_argument("--while-pid", type=int, default=0, help="stop when this process has ended")
    live.add_argument(
        "--max-backoff", type=float, default=60.0, help="longest wait between retries while InfluxDB is down (s)"
    )
    _add_target(live)
    live.set_defaults(run=_live_feed)

    backfill = commands.add_parser("demo-backfill", help="backfill the hourly stages over the last hours via the UI")
    backfill.add_argument("--webserver", default="http://127.0.0.1:3000")
    backfill.add_argument("--hours", type=int, default=6)
    backfill.add_argument(
        "--all-windows", action="store_true",
        help="backfill every recent window, also those already processed or in an earlier demo backfill"
    )
    backfill.set_defaults(run=_demo_backfill)

    orphans = commands.add_parser(
        "fail-orphaned-runs",
        help="mark failed the runs of $DAGSTER_HOME left in progress by a stopped Dagster (run it while Dagster is down)",
    )
    orphans.set_defaults(run=_fail_orphaned_runs)

    pools = commands.add_parser("init-pools", help="create the stages' writer pools in $DAGSTER_HOME's instance")
    pools.set_defaults(run=_init_pools)

    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
