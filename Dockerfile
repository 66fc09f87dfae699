# The influx_assets code location as a container: a Dagster gRPC code server on port 4000.
#
#   docker build -t influx-assets:0.1.0 .
#   docker run --rm -p 4000:4000 -e INFLUXDB_URL=http://influxdb:8086 influx-assets:0.1.0
#
# A webserver and a daemon (elsewhere: the official Helm chart, deploy/helm/values.yaml, or
# `dagster-webserver -w deploy/workspace.grpc.yaml`) load the location from this server. Runs launched
# by Kubernetes (K8sRunLauncher) start this same image with `dagster api execute_run`, so it carries
# what the chart's instance needs: dagster-postgres (extra `postgres`) and dagster-k8s.
# The CMD is what influx_assets_tests/test_code_server.py starts, and what the chart runs for
# `codeServerArgs` (dagster code-server start -h 0.0.0.0 -p <port> <codeServerArgs>).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home

# The package is installed (not run from a source checkout): the server's working directory holds no code.
COPY pyproject.toml README.md /tmp/influx-assets/
COPY influx_assets /tmp/influx-assets/influx_assets
RUN pip install "/tmp/influx-assets[postgres,celery]" "dagster-k8s>=0.29.27,<0.30" \
    && rm -rf /tmp/influx-assets

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin dagster \
    && mkdir -p "$DAGSTER_HOME" /opt/dagster/app \
    && chown dagster:dagster "$DAGSTER_HOME" /opt/dagster/app
USER 10001
WORKDIR /opt/dagster/app

EXPOSE 4000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s \
    CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]
# code-server start (not api grpc): the proxy keeps serving when the definitions fail to load (the UI
# shows the error) and reloads them on "Reload definitions" without restarting the container.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "influx_assets.definitions", "-a", "defs"]
