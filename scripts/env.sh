# Sourced by the scripts: the variables the code location reads (only INFLUXDB_URL is required; the
# others default as documented in influx_assets/influxdb/environment.py) and a project-local DAGSTER_HOME.
export INFLUXDB_DATABASE="${INFLUXDB_DATABASE:-telemetry}"
export INFLUXDB_TOKEN="${INFLUXDB_TOKEN:-}"
export INFLUXDB_ORG="${INFLUXDB_ORG:-}"
export INFLUXDB_USERNAME="${INFLUXDB_USERNAME:-}"
export INFLUXDB_PASSWORD="${INFLUXDB_PASSWORD:-}"
export INFLUXDB_API="${INFLUXDB_API:-auto}"
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
mkdir -p "$DAGSTER_HOME"
# The project's instance config where there is none, or where it is an older copy of the project's
# (its first line): an operator's own dagster.yaml (e.g. PostgreSQL storage) is never overwritten.
instance_config="$DAGSTER_HOME/dagster.yaml"
if [ ! -f "$instance_config" ] || [ "$(head -1 "$instance_config")" = "$(head -1 dagster.yaml)" ]; then
  cp -f dagster.yaml "$instance_config"
fi
