"""Pure Flux and delete-predicate builders for the v2 transport. Every name and value is escaped here.

Flux string literals (Flux spec, "String literals") know the escapes ``\\\\``, ``\\"``, ``\\n``, ``\\r``,
``\\t``, ``\\xNN`` (one byte) and ``\\${``. Every ``$`` is written as ``\\x24``: an unescaped ``${`` would
start string interpolation, and Flux's scanner lets a ``$`` swallow the character after it
(``dollar_value = "$" (any_count_line - [{"])``), so ``\\"`` or ``\\\\`` right after a bare ``$`` would lose
its backslash and end the literal early (a way to inject Flux). The tests check every builder's output
with the real Flux parser (influx_assets_tests/flux_parser). Times go
in as ``time(v: "<RFC3339Nano>")``; windows are half-open exactly like Flux ``range`` (start inclusive,
stop exclusive).

The ``/api/v2/delete`` predicate is parsed by InfluxDB 2.x with the InfluxQL scanner: a double-quoted
token is an identifier in which ``\\\\``, ``\\"`` and ``\\n`` are the escapes and a raw newline is an
error. Only ``=`` joined by ``AND`` is supported, and ``_field`` cannot be used. The delete stop is
*inclusive*, so the transport passes ``end - 1 ns``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from influx_assets.influxdb.client.slice import MeasurementSlice

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_FLUX_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("$", "\\x24"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
_PREDICATE_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"))

#: Columns Flux adds that are neither tags nor fields.
FLUX_META_COLUMNS = frozenset({"", "result", "table", "_start", "_stop", "_measurement", "_field"})


def flux_string(value: str) -> str:
    """A Flux string literal (double-quoted) holding exactly ``value``, never interpolated."""
    text = str(value)
    for old, new in _FLUX_ESCAPES:
        text = text.replace(old, new)
    return f'"{text}"'


def rfc3339_nano(epoch_ns: int) -> str:
    """Format ns since the epoch like Go's ``time.RFC3339Nano`` in UTC (trailing fraction zeros trimmed).

    Examples:
        >>> rfc3339_nano(1_704_067_199_999_999_999)
        '2023-12-31T23:59:59.999999999Z'
        >>> rfc3339_nano(0)
        '1970-01-01T00:00:00Z'
    """
    seconds, fraction = divmod(int(epoch_ns), 1_000_000_000)
    moment = _EPOCH + timedelta(seconds=seconds)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def flux_time(epoch_ns: int) -> str:
    """A Flux time expression for an exact ns timestamp."""
    return f"time(v: {flux_string(rfc3339_nano(epoch_ns))})"


def _member(key: str) -> str:
    return f"r[{flux_string(key)}]"


def window_source(s: MeasurementSlice) -> str:
    """``from |> range |> filter`` for the slice's bucket, window, measurement and tag filters."""
    lines = [
        f"from(bucket: {flux_string(s.database)})",
        f"  |> range(start: {flux_time(s.start_ns)}, stop: {flux_time(s.end_ns)})",
        f"  |> filter(fn: (r) => r._measurement == {flux_string(s.measurement)})",
    ]
    if s.tag_filters:
        terms = " and ".join(f"{_member(tag)} == {flux_string(value)}" for tag, value in s.tag_filters)
        lines.append(f"  |> filter(fn: (r) => {terms})")
    return "\n".join(lines)


def select_window(s: MeasurementSlice) -> str:
    """Flux that returns the slice's points one row per series and timestamp, fields as columns.

    ``pivot`` keeps the group key (the tags) as columns; ``_start``, ``_stop`` and ``_measurement``
    are dropped. With ``columns`` set, only those fields are read; an empty ``columns`` is refused
    (there is nothing to ask the server for).
    """
    lines = [window_source(s)]
    if s.columns is not None:
        if not s.columns:
            raise ValueError("select_window needs at least one column (columns=() selects nothing)")
        terms = " or ".join(f"r._field == {flux_string(name)}" for name in s.columns)
        lines.append(f"  |> filter(fn: (r) => {terms})")
    lines.append('  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")')
    lines.append('  |> drop(columns: ["_start", "_stop", "_measurement"])')
    return "\n".join(lines)


def first_per_series(s: MeasurementSlice) -> str:
    """Flux returning the first point of every series and field of the slice (schema discovery).

    Each table's ``#datatype`` annotation gives the field's type and its group key the tag keys.
    ``first()`` right after ``range``/``filter`` is pushed down to storage on InfluxDB 2.x.
    """
    return window_source(s) + "\n  |> first()"


def _predicate_quote(text: str) -> str:
    for old, new in _PREDICATE_ESCAPES:
        text = text.replace(old, new)
    return f'"{text}"'


def delete_predicate(s: MeasurementSlice) -> str:
    """The ``/api/v2/delete`` predicate: ``_measurement="m" AND "tag"="v" ...`` (AND only, no ``_field``)."""
    terms = [f"_measurement={_predicate_quote(s.measurement)}"]
    for tag, value in s.tag_filters:
        if tag in ("_field", "_measurement"):
            raise ValueError(f"the v2 delete predicate cannot filter on {tag!r}")
        terms.append(f"{_predicate_quote(tag)}={_predicate_quote(value)}")
    return " AND ".join(terms)


def delete_bounds(s: MeasurementSlice) -> tuple[str, str]:
    """``(start, stop)`` for ``/api/v2/delete``: its stop is inclusive, so ``end - 1 ns``."""
    return rfc3339_nano(s.start_ns), rfc3339_nano(s.end_ns - 1)
