#!/usr/bin/env bash
# Stop what scripts/demo.sh started: the Dagster UI/daemon and the project-local InfluxDB.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -f .run/dagster.pid ]; then
  pid="$(cat .run/dagster.pid)"
  if kill -0 "$pid" 2>/dev/null; then kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"; echo "stopped Dagster"; fi
  rm -f .run/dagster.pid
fi
pkill -f "influx_assets.cli live-feed" 2>/dev/null || true
if [ -x .venv/bin/python ]; then .venv/bin/python -m influx_assets.local_server stop --dir .influxdb; fi
