#!/usr/bin/env bash
# Stop what scripts/demo.sh started: the Dagster UI/daemon and the project-local InfluxDB.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -f .run/dagster.pid ]; then
  pid="$(cat .run/dagster.pid)"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    echo "stopped Dagster"
  fi
  rm -f .run/dagster.pid
fi
if [ -f .run/live-feed.pid ]; then kill "$(cat .run/live-feed.pid)" 2>/dev/null && echo "stopped live feed"; rm -f .run/live-feed.pid; fi
if [ -x .venv/bin/python ]; then .venv/bin/python -m influx_assets.local_server stop --dir .influxdb; fi
