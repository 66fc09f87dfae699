#!/usr/bin/env bash
# Stop what scripts/demo.sh started: the Dagster UI/daemon (and its children), the live feed, and the
# project-local InfluxDB. Harmless when nothing runs.
set -uo pipefail
cd "$(dirname "$0")/.."

descendants() { local child; for child in $(pgrep -P "$1"); do descendants "$child"; echo "$child"; done; }

if [ -f .run/dagster.pid ]; then
  pid="$(cat .run/dagster.pid)"
  if kill -0 "$pid" 2>/dev/null; then
    tree="$(descendants "$pid")"
    kill -INT "$pid" 2>/dev/null  # dagster dev shuts its children down on SIGINT...
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    # ...unless it was started in the background, where SIGINT is ignored: end the tree
    for p in $tree $pid; do kill -TERM "$p" 2>/dev/null; done
    sleep 1
    for p in $tree $pid; do kill -KILL "$p" 2>/dev/null; done
    echo "stopped Dagster"
  fi
  rm -f .run/dagster.pid
fi
if [ -f .run/live-feed.pid ]; then
  kill "$(cat .run/live-feed.pid)" 2>/dev/null && echo "stopped live feed"
  rm -f .run/live-feed.pid
fi
if [ -x .venv/bin/python ]; then .venv/bin/python -m influx_assets.devtools.local_server stop --dir .influxdb; fi
