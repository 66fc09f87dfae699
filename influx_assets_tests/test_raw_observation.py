"""raw_telemetry is observed automatically: a sensor records each recent window's count and version."""

import pandas as pd
from dagster import DagsterInstance, DefaultSensorStatus, build_sensor_context

from influx_assets.automation.raw_observation import raw_telemetry_observer, recent_windows
from influx_assets.definitions import defs
from influx_assets.influxdb import InfluxDBResource
from influx_assets.telemetry.contract import RAW_MEASUREMENT, RAW_TAGS
from influx_assets.telemetry.keys import RAW_TELEMETRY
from influx_assets.telemetry.partitions import hourly_windows
from influx_assets.telemetry.raw import DATA_VERSION_TAG


def raw_points(start: pd.Timestamp, count: int, sensor: str = "s-1") -> pd.DataFrame:
    return pd.DataFrame({
        "time": [start + pd.Timedelta(seconds=10 * i) for i in range(count)],
        "site": "plant-a", "sensor_id": sensor, "kind": "temperature", "gateway": "gw-1",
        "value": [20.0 + i for i in range(count)], "unit": "C", "battery": 90.0,
        "received_ns": [int((start + pd.Timedelta(seconds=10 * i)).value) for i in range(count)],
    })


def tick(instance: DagsterInstance, influxdb: InfluxDBResource, cursor: str | None):
    with build_sensor_context(instance=instance, resources={"influxdb": influxdb}, cursor=cursor) as context:
        return raw_telemetry_observer(context)


def test_the_observer_is_on_by_default_and_observes_the_open_and_the_closed_windows() -> None:
    sensor = defs.get_sensor_def("raw_telemetry_observer")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    windows = recent_windows(pd.Timestamp("2026-12-02T05:20Z"), closed=2)
    assert windows == ["2026-12-02-03:00", "2026-12-02-04:00", "2026-12-02-05:00"]


def test_each_tick_records_exactly_the_windows_whose_content_changed(influxdb: InfluxDBResource) -> None:
    now = pd.Timestamp.now(tz="UTC")
    current = now.floor("1h")
    closed = current - pd.Timedelta(hours=3)
    influxdb.write_frame(raw_points(closed, 12), RAW_MEASUREMENT, RAW_TAGS)
    influxdb.write_frame(raw_points(current, 3), RAW_MEASUREMENT, RAW_TAGS)
    closed_key, current_key = (hourly_windows.get_partition_key_for_timestamp(t.timestamp()) for t in (closed, current))

    with DagsterInstance.ephemeral() as instance:
        first = tick(instance, influxdb, None)
        observed = {e.partition: e for e in first.asset_events}
        assert set(observed) == set(recent_windows(pd.Timestamp.now(tz="UTC")))  # every window once, at first
        assert {e.asset_key for e in first.asset_events} == {RAW_TELEMETRY}
        assert observed[closed_key].metadata["points"].value == 12
        assert observed[current_key].metadata["points"].value == 3
        assert observed[closed_key].tags[DATA_VERSION_TAG].startswith("points-12-")

        unchanged = tick(instance, influxdb, first.cursor)
        assert unchanged.asset_events == []

        influxdb.write_frame(raw_points(closed + pd.Timedelta(minutes=30), 1, sensor="late-1"), RAW_MEASUREMENT, RAW_TAGS)
        late = tick(instance, influxdb, unchanged.cursor)
        assert [(e.partition, e.metadata["points"].value) for e in late.asset_events] == [(closed_key, 13)]
