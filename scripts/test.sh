#!/usr/bin/env bash
# Set everything up and run the test suite against a real InfluxDB.
# Without INFLUXDB_URL the tests start their own influxd (Debian's, installed by setup.sh) on a free
# loopback port with a temporary data directory. With INFLUXDB_URL set they use that server instead.
#
# Run without arguments (as CI does), it then runs the tests of everything that depends on library
# versions (encoder, parsers, query builders, IO manager, ledger, v2 transport, the pipeline's stages
# end to end) a second time in .venv-floor, built at the lowest versions pyproject.toml admits
# (.ci/floor-constraints.txt): what the project promises must hold at every version it allows.
# With arguments, only the first run, with those arguments. INFLUX_ASSETS_FLOOR=0 skips the floor run.
set -euo pipefail
cd "$(dirname "$0")/.."
INFLUX_ASSETS_WITH_BROWSER=1 INFLUX_ASSETS_FOR_TESTS=1 bash scripts/setup.sh
if [ "$#" -gt 0 ] || [ "${INFLUX_ASSETS_FLOOR:-1}" = "0" ]; then
  exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest
FLOOR_TESTS=(
  test_line_protocol test_influxql test_influxql_csv test_flux_builders test_flux_parser
  test_v2_contract test_v2_server test_io_manager test_window_ledger test_read_cache test_injection test_environment
  test_validate test_normalize test_aggregate test_simulate test_fingerprint test_archive
  test_pipeline_end_to_end test_dependency_floors test_partitions
)
echo "test: the version-sensitive tests again at the declared dependency floors (.venv-floor)"
VENV=.venv-floor CONSTRAINTS=.ci/floor-constraints.txt bash scripts/setup.sh
floor_paths=()
for name in "${FLOOR_TESTS[@]}"; do floor_paths+=("influx_assets_tests/$name.py"); done
exec .venv-floor/bin/python -m pytest -p no:cacheprovider "${floor_paths[@]}"
