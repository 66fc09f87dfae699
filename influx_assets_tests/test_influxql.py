"""The InfluxQL builders: exact text, escaping, half-open windows."""

import pytest

from influx_assets.influxdb import MeasurementSlice
from influx_assets.influxdb.client.influxql import (
    create_database,
    delete_window,
    first_point,
    quote_ident,
    quote_literal,
    select_window,
    show_field_keys,
)


@pytest.mark.parametrize(
    ("name", "quoted"),
    [("m", '"m"'), ('x" OR 1=1', '"x\\" OR 1=1"'), ("a\\b", '"a\\\\b"'), ("it's", '"it\'s"'), ("ü m", '"ü m"')],
)
def test_identifiers_are_double_quoted_and_escaped(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


@pytest.mark.parametrize(
    ("value", "quoted"),
    [("a", "'a'"), ("x'; DROP MEASUREMENT sensor_raw", "'x\\'; DROP MEASUREMENT sensor_raw'"), ("a\\", "'a\\\\'")],
)
def test_string_literals_are_single_quoted_and_escaped(value: str, quoted: str) -> None:
    assert quote_literal(value) == quoted


@pytest.mark.parametrize("bad", ["a\nb", "a\rb"])
def test_newlines_cannot_enter_a_statement(bad: str) -> None:
    with pytest.raises(ValueError, match="newline"):
        quote_literal(bad)
    with pytest.raises(ValueError, match="newline"):
        quote_ident(bad)


def test_select_uses_a_half_open_window_and_escaped_tag_filters() -> None:
    where = MeasurementSlice("db", "sensor raw", 100, 200, tag_filters=(("site", "x' OR '1'='1"),))
    assert select_window(where) == (
        'SELECT * FROM "sensor raw" WHERE time >= 100 AND time < 200 AND "site" = \'x\\\' OR \\\'1\\\'=\\\'1\''
    )


def test_select_with_columns_projects_fields_and_tags() -> None:
    where = MeasurementSlice("db", "m", 0, 10, columns=("value", 'we"ird'))
    assert select_window(where, ["site"]) == 'SELECT "value", "we\\"ird", "site" FROM "m" WHERE time >= 0 AND time < 10'


def test_delete_covers_exactly_the_window() -> None:
    assert delete_window(MeasurementSlice("db", "m", 5, 7)) == 'DELETE FROM "m" WHERE time >= 5 AND time < 7'
    assert first_point(MeasurementSlice("db", "m", 5, 7)) == 'SELECT * FROM "m" WHERE time >= 5 AND time < 7 LIMIT 1'

def test_schema_and_admin_statements() -> None:
    assert show_field_keys('a"b') == 'SHOW FIELD KEYS FROM "a\\"b"'
    assert create_database("tele metry") == 'CREATE DATABASE "tele metry"'


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="empty window"):
        MeasurementSlice("db", "m", 10, 10)
