#!/usr/bin/env bash
# Set everything up and run the test suite against a real InfluxDB.
# Without INFLUXDB_URL the tests start their own influxd (Debian's, installed by setup.sh) on a free
# loopback port with a temporary data directory. With INFLUXDB_URL set they use that server instead.
#
# Run without arguments (as CI does), it then runs the suite a second time in .venv-floor, built at
# the lowest versions pyproject.toml admits (.ci/floor-constraints.txt): what the project promises
# must hold at every version it allows. With arguments, only the first run, with those arguments.
# INFLUX_ASSETS_FLOOR=0 skips the floor run.
set -euo pipefail
cd "$(dirname "$0")/.."
INFLUX_ASSETS_WITH_BROWSER=1 INFLUX_ASSETS_FOR_TESTS=1 bash scripts/setup.sh
if [ "$#" -gt 0 ] || [ "${INFLUX_ASSETS_FLOOR:-1}" = "0" ]; then
  exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest
echo "test: the same suite at the declared dependency floors (.venv-floor; browser test excluded)"
VENV=.venv-floor CONSTRAINTS=.ci/floor-constraints.txt bash scripts/setup.sh
exec .venv-floor/bin/python -m pytest -m "not browser" -p no:cacheprovider
