"""Developer tools, never imported by the code location: the telemetry simulator and its manifest, the
defect catalogue, the live feed, the demo launcher, a local ``influxd`` and the ``influx-assets`` CLI."""
