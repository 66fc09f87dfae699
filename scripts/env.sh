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
cp -f dagster.yaml "$DAGSTER_HOME/dagster.yaml"
