"""The v2 transport's promises that hold on any InfluxDB 2.x: run on the 2.7 contract fake, or on a real server.

By default these run against ``fake_influxdb2`` (which answers as the v2.7.12 source does). Set
``INFLUX_ASSETS_V2_URL``, ``INFLUX_ASSETS_V2_TOKEN`` (an all-access token) and ``INFLUX_ASSETS_V2_ORG``
to run the very same tests against a real 2.x server or Cloud; they create and delete their own
buckets (named ``influx_assets_test_*``). Request counts are asserted only on the fake, which records them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest

from influx_assets.influxdb import (
    AuthenticationError,
    DatabaseNotFoundError,
    InvalidFrameError,
    MeasurementSlice,
    encode_frame,
)
from influx_assets.influxdb.client.retries import RetrySettings
from influx_assets.influxdb.client.v2 import V2Transport
from influx_assets_tests.fake_influxdb2 import ORG, FakeInfluxDB2, start_fake_influxdb2

TOKEN = "all-access-token-for-the-fake"


@dataclass
class V2Target:
    """Where the tests run: a real server (``fake`` is None) or the fake."""

    url: str
    token: str
    org: str
    fake: FakeInfluxDB2 | None

    def transport(self, token: str | None = None, attempts: int = 3) -> V2Transport:
        return V2Transport(url=self.url, token=token or self.token, org=self.org, timeout=10.0,
                           retry=RetrySettings(max_attempts=attempts, initial_delay=0.01, jitter=0.0))

    def requests_to(self, path: str) -> int | None:
        return None if self.fake is None else len(self.fake.on(path))


@pytest.fixture
def target() -> Iterator[V2Target]:
    url = os.environ.get("INFLUX_ASSETS_V2_URL")
    if url:
        yield V2Target(url, os.environ["INFLUX_ASSETS_V2_TOKEN"], os.environ["INFLUX_ASSETS_V2_ORG"], None)
        return
    fake, server = start_fake_influxdb2(token=TOKEN)
    yield V2Target(fake.url, TOKEN, ORG, fake)
    server.shutdown()
    server.server_close()


@pytest.fixture
def bucket(target: V2Target) -> Iterator[str]:
    name = f"influx_assets_test_{uuid.uuid4().hex[:10]}"
    yield name
    if target.fake is None:  # tidy a real server
        client = target.transport()._client
        found = client.buckets_api().find_bucket_by_name(name)
        if found is not None:
            client.buckets_api().delete_bucket(found)


def points() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.to_datetime(["2024-01-01T00:00:00Z"]), "site": ["a"], "v": [1.5]})


def test_the_server_says_it_is_2x(target: V2Target) -> None:
    assert target.transport().ping().major == 2


def test_a_missing_bucket_is_created_once_and_then_written(target: V2Target, bucket: str) -> None:
    made = target.transport()
    made.ensure_database(bucket)
    made.ensure_database(bucket)
    assert made.write(bucket, encode_frame(points(), "m", ["site"])).points == 1
    assert target.requests_to("/api/v2/buckets") in (None, 3)  # lookup (404), create, lookup (found)


def test_a_write_to_a_missing_bucket_is_not_found_and_not_retried(target: V2Target, bucket: str) -> None:
    with pytest.raises(DatabaseNotFoundError, match=bucket):
        target.transport().write(bucket, encode_frame(points(), "m", ["site"]))
    assert target.requests_to("/api/v2/write") in (None, 1)


def test_a_delete_in_a_missing_bucket_is_not_found_and_not_retried(target: V2Target, bucket: str) -> None:
    with pytest.raises(DatabaseNotFoundError, match=bucket):
        target.transport().delete(MeasurementSlice(bucket, "m", 0, 1))
    assert target.requests_to("/api/v2/delete") in (None, 1)


def test_a_wrong_token_is_an_authentication_error_that_does_not_show_it(target: V2Target) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    with pytest.raises(AuthenticationError) as caught:
        target.transport(token=wrong).write("any", encode_frame(points(), "m", ["site"]))
    assert wrong not in str(caught.value)


def test_names_that_2x_cannot_store_or_read_are_refused_before_sending(target: V2Target, bucket: str) -> None:
    with pytest.raises(InvalidFrameError):
        target.transport().write(bucket, encode_frame(points().rename(columns={"v": "_value"}), "m", ["site"]))
    with pytest.raises(InvalidFrameError):
        encode_frame(points().rename(columns={"site": "_measurement"}), "m", ["_measurement"])
    assert target.requests_to("/api/v2/write") in (None, 0)


def test_the_servers_query_counters_grow_by_the_queries_we_run(target: V2Target, bucket: str) -> None:
    made = target.transport()
    made.ensure_database(bucket)
    made.write(bucket, encode_frame(points(), "m", ["site"]))
    before, sent_before = made.server_counters(), target.requests_to("/api/v2/query")
    for _ in range(2):
        made.read(MeasurementSlice(bucket, "m", 0, 2**62))
    cost = made.server_counters().since(before)
    sent = None if sent_before is None else target.requests_to("/api/v2/query") - sent_before
    # every Flux request we sent is counted (a real server may be running others too)
    assert cost.queries == sent if sent is not None else cost.queries >= 2
    assert cost.query_seconds > 0 and cost.points_written is None
