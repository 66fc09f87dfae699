"""``influx-assets`` command line: demo data and (later) the simulator."""

from __future__ import annotations

import argparse
import os
import sys


def _demo_data(args: argparse.Namespace) -> int:
    from .influxdb import InfluxDBResource

    resource = InfluxDBResource(
        url=os.environ.get("INFLUXDB_URL", "http://127.0.0.1:8086"),
        database=os.environ.get("INFLUXDB_DATABASE") or "telemetry",
        token=os.environ.get("INFLUXDB_TOKEN") or None,
        org=os.environ.get("INFLUXDB_ORG") or None,
        username=os.environ.get("INFLUXDB_USERNAME") or None,
        password=os.environ.get("INFLUXDB_PASSWORD") or None,
    )
    info = resource.wait_until_ready()
    resource.ensure_database()
    print(f"demo-data: InfluxDB {info.version} at {resource.public_url}, database {resource.database!r} ready")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``influx-assets`` console script."""
    parser = argparse.ArgumentParser(prog="influx-assets")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo-data", help="prepare the demo database")
    demo.set_defaults(run=_demo_data)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
