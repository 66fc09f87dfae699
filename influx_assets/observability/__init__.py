"""Stage metrics: what each stage reports (latency, rows, retries, queue depth) and where it is exported
(OpenTelemetry, the ``pipeline_metrics`` measurement)."""
