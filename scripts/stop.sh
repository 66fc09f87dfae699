#!/usr/bin/env bash
# Stop what scripts/demo.sh started: the live feed, the Dagster UI/daemon (and its children), and the
# project-local InfluxDB. Harmless when nothing runs. It reports only what it found: a pid file whose
# process has ended, is a zombie or is now another program's is reported as "was not running".
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/pids.sh

descendants() { local child; for child in $(pgrep -P "$1"); do descendants "$child"; echo "$child"; done; }

# the live feed first: once Dagster ends it stops by itself, and then nobody could say who stopped it
if pid="$(running_pid .run/live-feed.pid "influx-assets live-feed")"; then
  end_process "$pid"
  echo "stopped live feed (pid $pid)"
else
  echo "live feed was not running"
fi
rm -f .run/live-feed.pid

if pid="$(running_pid .run/dagster.pid "-m dagster dev")"; then
  tree="$(descendants "$pid")"
  kill -INT "$pid" 2>/dev/null  # dagster dev shuts its children down on SIGINT...
  wait_until_ended "$pid" 50
  # ...unless it was started in the background, where SIGINT is ignored: end the tree
  for p in $tree $pid; do process_alive "$p" && kill -TERM "$p" 2>/dev/null; done
  sleep 1
  for p in $tree $pid; do process_alive "$p" && kill -KILL "$p" 2>/dev/null; done
  echo "stopped Dagster (pid $pid)"
else
  echo "Dagster was not running"
fi
rm -f .run/dagster.pid
if [ -x .venv/bin/python ]; then .venv/bin/python -m influx_assets.devtools.local_server stop --dir .influxdb; fi
