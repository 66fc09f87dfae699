# Sourced by the scripts: the variables the code location reads (all of them must exist for Dagster's
# EnvVar, so unused ones are exported empty) and a project-local DAGSTER_HOME.
export INFLUXDB_DATABASE="${INFLUXDB_DATABASE:-telemetry}"
export INFLUXDB_TOKEN="${INFLUXDB_TOKEN:-}"
export INFLUXDB_ORG="${INFLUXDB_ORG:-}"
export INFLUXDB_USERNAME="${INFLUXDB_USERNAME:-}"
export INFLUXDB_PASSWORD="${INFLUXDB_PASSWORD:-}"
export INFLUXDB_API="${INFLUXDB_API:-auto}"
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
mkdir -p "$DAGSTER_HOME"
cp -f dagster.yaml "$DAGSTER_HOME/dagster.yaml"
