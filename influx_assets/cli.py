"""``influx-assets`` command line: ``simulate`` raw telemetry, and ``demo-data`` for the demo UI."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd


def _resource(args: argparse.Namespace):  # noqa: ANN202 - InfluxDBResource, imported lazily
    from .influxdb import InfluxDBResource

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
    from .feed import write_simulation
    from .manifest import build_manifest, write_manifest
    from .simulate import DEFECT_KINDS, SimulationConfig, simulate

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
    args.start = args.end = None
    args.rate, args.defect_rate, args.skip_late = [], None, False
    args.manifest = args.manifest or ".run/demo-manifest.json"
    return _simulate(args)


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
        description="Deterministic from --seed. Defect kinds: see influx_assets.simulate.",
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

    demo = commands.add_parser("demo-data", help="simulate the last 6 hours of 20 sensors for the demo UI")
    demo.add_argument("--sensors", type=int, default=20)
    demo.add_argument("--hours", type=float, default=6.0)
    demo.add_argument("--cadence", type=float, default=60.0)
    demo.add_argument("--seed", type=int, default=0)
    _add_target(demo)
    demo.set_defaults(run=_demo_data)

    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
