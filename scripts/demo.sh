#!/usr/bin/env bash
# Set everything up, start a project-local InfluxDB (unless INFLUXDB_URL is set), load demo telemetry
# and start the Dagster UI with its daemon on http://127.0.0.1:${DAGSTER_PORT:-3000}.
# Running it again while the demo runs is harmless: it reports the running UI and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
DAGSTER_PORT="${DAGSTER_PORT:-3000}"
mkdir -p .run

if [ -z "${INFLUXDB_URL:-}" ]; then
  INFLUXDB_URL="$(.venv/bin/python -m influx_assets.devtools.local_server start --dir .influxdb --port "${INFLUXDB_PORT:-8086}")"
  echo "demo: InfluxDB at $INFLUXDB_URL (data in .influxdb/)"
fi
export INFLUXDB_URL

if [ -f .run/dagster.pid ] && kill -0 "$(cat .run/dagster.pid)" 2>/dev/null; then
  echo "demo: already running — Dagster UI at http://127.0.0.1:$DAGSTER_PORT (stop: bash scripts/stop.sh)"
  exit 0
fi

.venv/bin/influx-assets init-pools  # before any run: Dagster creates pools lazily, racily on SQLite
.venv/bin/influx-assets demo-data --no-progress || echo "demo: could not load demo telemetry (see above); the UI starts anyway"
# a small live feed, so the schedules have fresh windows to process while the demo runs
# (it stops by itself when the Dagster process, which replaces this shell below, ends)
nohup .venv/bin/influx-assets live-feed --while-pid $$ > .run/live-feed.log 2>&1 &
echo $! > .run/live-feed.pid
# the main job: once the UI answers, backfill the hourly stages over the simulated windows
(.venv/bin/influx-assets demo-backfill --webserver "http://127.0.0.1:$DAGSTER_PORT" --hours 6 \
  || echo "demo: could not launch the demo backfill; launch it from the UI (see README)") &

echo "demo: starting Dagster UI + daemon at http://127.0.0.1:$DAGSTER_PORT (Ctrl-C or bash scripts/stop.sh to stop)"
echo $$ > .run/dagster.pid
exec .venv/bin/dg dev -h 127.0.0.1 -p "$DAGSTER_PORT"
