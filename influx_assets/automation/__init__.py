"""What runs the telemetry pipeline by itself: jobs and schedules, the late-data sensor, the run-failure
sensor and the per-stage writer pools."""
