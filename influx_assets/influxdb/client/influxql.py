"""Pure InfluxQL builders. Every identifier and value is quoted and escaped here, nowhere else.

Identifiers go in double quotes, string literals in single quotes; in both a backslash escapes the
next character, so ``\\`` and the quote character are escaped. Times are integer ns literals, and
windows are always half-open ``time >= start AND time < end`` (never ``BETWEEN``).
"""

from __future__ import annotations

from influx_assets.influxdb.client.slice import MeasurementSlice


def quote_ident(name: str) -> str:
    """Quote an identifier (database, measurement, tag or field key)."""
    if "\n" in name or "\r" in name or "\x00" in name:
        raise ValueError(f"identifier {name!r} contains a newline or NUL, which InfluxQL cannot express")
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(value: str) -> str:
    """Quote a string literal (tag value)."""
    if "\n" in value or "\r" in value or "\x00" in value:
        raise ValueError(f"string literal {value!r} contains a newline or NUL, which InfluxQL cannot express")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def where_clause(s: MeasurementSlice) -> str:
    """``WHERE`` with the half-open time window and the tag filters of the slice."""
    terms = [f"time >= {int(s.start_ns)}", f"time < {int(s.end_ns)}"]
    terms += [f"{quote_ident(tag)} = {quote_literal(value)}" for tag, value in s.tag_filters]
    return "WHERE " + " AND ".join(terms)


def select_window(s: MeasurementSlice, tag_keys: list[str] | None = None) -> str:
    """``SELECT`` the slice's points; with ``columns`` set, only those fields plus ``tag_keys``."""
    if s.columns is None:
        projection = "*"
    else:
        projection = ", ".join(quote_ident(c) for c in [*s.columns, *(tag_keys or [])])
    return f"SELECT {projection} FROM {quote_ident(s.measurement)} {where_clause(s)}"


def first_point(s: MeasurementSlice) -> str:
    """``SELECT`` at most one point of the slice: does the window hold anything?"""
    return f"SELECT * FROM {quote_ident(s.measurement)} {where_clause(s)} LIMIT 1"


def delete_window(s: MeasurementSlice) -> str:
    """``DELETE`` the slice's points (all fields of the matching series within the window)."""
    return f"DELETE FROM {quote_ident(s.measurement)} {where_clause(s)}"


def show_field_keys(measurement: str) -> str:
    """``SHOW FIELD KEYS`` of one measurement."""
    return f"SHOW FIELD KEYS FROM {quote_ident(measurement)}"


def show_tag_keys(measurement: str) -> str:
    """``SHOW TAG KEYS`` of one measurement."""
    return f"SHOW TAG KEYS FROM {quote_ident(measurement)}"


def create_database(database: str) -> str:
    """``CREATE DATABASE`` (idempotent on the server)."""
    return f"CREATE DATABASE {quote_ident(database)}"


