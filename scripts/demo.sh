#!/usr/bin/env bash
# Set everything up, start a project-local InfluxDB (unless INFLUXDB_URL is set), load demo telemetry
# and start the Dagster UI with its daemon on http://127.0.0.1:${DAGSTER_PORT:-3000}.
# Running it again while the demo runs is harmless: it reports the running UI and exits. Restarting it
# later changes no window already loaded (see influx_assets/devtools/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
source scripts/pids.sh
DAGSTER_PORT="${DAGSTER_PORT:-3000}"
mkdir -p .run
# The demo's windows start near its data (not at the library default, 2024-01-01): the day before the
# first demo, kept in .run/pipeline-start so a restart shows the same partitions. An exported
# INFLUX_ASSETS_START wins.
if [ -z "${INFLUX_ASSETS_START:-}" ]; then
  [ -s .run/pipeline-start ] || date -u -d "1 day ago" +%Y-%m-%d > .run/pipeline-start
  INFLUX_ASSETS_START="$(cat .run/pipeline-start)"
fi
export INFLUX_ASSETS_START
echo "demo: hourly and daily windows start at $INFLUX_ASSETS_START (INFLUX_ASSETS_START)"

if [ -z "${INFLUXDB_URL:-}" ]; then
  INFLUXDB_URL="$(.venv/bin/python -m influx_assets.devtools.local_server start --dir .influxdb --port "${INFLUXDB_PORT:-8086}")"
  echo "demo: InfluxDB at $INFLUXDB_URL (data in .influxdb/)"
fi
export INFLUXDB_URL

if dagster_pid="$(running_pid .run/dagster.pid "-m dagster dev")"; then
  echo "demo: already running (pid $dagster_pid) — Dagster UI at http://127.0.0.1:$DAGSTER_PORT (stop: bash scripts/stop.sh)"
  exit 0
fi
rm -f .run/dagster.pid
if feed_pid="$(running_pid .run/live-feed.pid "influx-assets live-feed")"; then
  end_process "$feed_pid"
  echo "demo: stopped the live feed of an earlier demo (pid $feed_pid)"
fi
rm -f .run/live-feed.pid

.venv/bin/influx-assets init-pools  # before any run: Dagster creates pools lazily, racily on SQLite
# runs an earlier demo left "in progress" when it was stopped hold their pool slots for ever: fail them
# (the backfill below re-launches the windows they did not finish)
.venv/bin/influx-assets fail-orphaned-runs
.venv/bin/influx-assets demo-data --no-progress || echo "demo: could not load demo telemetry (see above); the UI starts anyway"
# A small live feed, so the schedules have fresh windows to process while the demo runs. It rides out
# an InfluxDB outage (log: .run/live-feed.log) and stops by itself when the Dagster process, which
# replaces this shell below, ends. Both background jobs start from a subshell that exits at once, so
# they are not children of `dagster dev`: it never reaps them, and an ended child would linger as a zombie.
( nohup .venv/bin/influx-assets live-feed --while-pid $$ >> .run/live-feed.log 2>&1 & echo $! > .run/live-feed.pid )
# the main job: once the UI answers, backfill the hourly stages over the simulated windows that no run
# has processed yet (tagged influx_assets/launched_by=demo, as are its runs)
( (.venv/bin/influx-assets demo-backfill --webserver "http://127.0.0.1:$DAGSTER_PORT" --hours 6 \
  || echo "demo: could not launch the demo backfill; launch it from the UI (see README)") & )

echo "demo: starting Dagster UI + daemon at http://127.0.0.1:$DAGSTER_PORT (Ctrl-C or bash scripts/stop.sh to stop)"
echo $$ > .run/dagster.pid
# `dagster dev` on this code location (workspace.yaml), started in DAGSTER_HOME with the project's
# virtualenv active. Not `dg dev`: that always runs in the project root, where Dagster warns that the
# repo's dagster.yaml (the template env.sh copies into DAGSTER_HOME) "will not be used". Dagster 1.13
# also warns that `dagster dev` is superseded by `dg dev`; that one warning is silenced here.
repo="$PWD"
export VIRTUAL_ENV="$repo/.venv" PATH="$repo/.venv/bin:$PATH"
cd "$DAGSTER_HOME"
exec "$repo/.venv/bin/python" -W "ignore:Function \`dev_command\` is superseded" -m dagster dev \
  -w "$repo/workspace.yaml" -h 127.0.0.1 -p "$DAGSTER_PORT"
