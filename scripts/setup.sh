#!/usr/bin/env bash
# Idempotent setup: Debian packages (influxdb server, chromium for the UI test, Node.js, postgresql and
# redis-server for the tests), a virtualenv in .venv with this project installed. Safe to run any
# number of times; a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
if [ -z "${INFLUXDB_URL:-}" ] && ! command -v influxd >/dev/null 2>&1; then need_apt+=(influxdb); fi
if [ "${INFLUX_ASSETS_WITH_BROWSER:-0}" = "1" ] && ! command -v chromium >/dev/null 2>&1; then
  need_apt+=(chromium)
fi
if [ "${INFLUX_ASSETS_FOR_TESTS:-0}" = "1" ] && ! command -v npm >/dev/null 2>&1; then
  need_apt+=(nodejs npm)  # the real Flux parser (WebAssembly) that checks generated Flux runs under Node.js
fi
# The tests run Dagster instances on a private PostgreSQL cluster (influx_assets_tests/postgres_server.py).
# Debian keeps initdb off PATH, in /usr/lib/postgresql/<version>/bin.
if [ "${INFLUX_ASSETS_FOR_TESTS:-0}" = "1" ] && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  need_apt+=(postgresql)
fi
# ... and a private Redis as the Celery broker of the distributed-executor tests (influx_assets_tests/redis_server.py).
if [ "${INFLUX_ASSETS_FOR_TESTS:-0}" = "1" ] && ! command -v redis-server >/dev/null 2>&1; then
  need_apt+=(redis-server)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian's packages may start system services (:8086, :5432, :6379); the tests run their own servers, so stop them.
  if command -v service >/dev/null 2>&1; then
    for service in influxdb postgresql redis-server; do $SUDO service "$service" stop >/dev/null 2>&1 || true; done
  fi
fi

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"                 # scripts/test.sh builds .venv-floor with CONSTRAINTS too
CONSTRAINTS="${CONSTRAINTS:-}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.influx-assets-$(cat pyproject.toml ${CONSTRAINTS:+"$CONSTRAINTS"} | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python dependencies into $VENV${CONSTRAINTS:+ (constrained by $CONSTRAINTS)}"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q ${CONSTRAINTS:+-c "$CONSTRAINTS"} -e '.[test]'
  rm -f "$VENV"/.influx-assets-*
  touch "$stamp"
fi

# Test-only: the real Flux parser (npm @influxdata/flux-lsp-browser, pinned by its lock file).
if [ "${INFLUX_ASSETS_FOR_TESTS:-0}" = "1" ]; then
  parser=influx_assets_tests/flux_parser
  parser_stamp="$parser/node_modules/.stamp-$(sha256sum "$parser/package-lock.json" | cut -c1-16)"
  if [ ! -f "$parser_stamp" ]; then
    echo "setup: installing the Flux parser for the tests (npm ci)"
    npm ci --prefix "$parser" --no-audit --no-fund --loglevel=error >/dev/null
    touch "$parser_stamp"
  fi
fi
