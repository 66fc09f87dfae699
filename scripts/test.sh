#!/usr/bin/env bash
# Set everything up and run the test suite against a real InfluxDB.
# Without INFLUXDB_URL the tests start their own influxd (Debian's, installed by setup.sh) on a free
# loopback port with a temporary data directory. With INFLUXDB_URL set they use that server instead.
set -euo pipefail
cd "$(dirname "$0")/.."
INFLUX_ASSETS_WITH_BROWSER=1 INFLUX_ASSETS_FOR_TESTS=1 bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
