"""A vectorized InfluxDB line-protocol encoder for pandas DataFrames.

Why our own: influxdb-client's DataFrame serializer corrupts data silently (null tags become escaped
strings, ``''`` tags become ``nan``, ``inf`` passes through and fails the batch) and is slower than the
server. This encoder works column by column; escaping runs once per *distinct* value (``factorize``).

Documented choices:
    * ``NaN``/null fields are omitted for that row. A row whose fields are all null cannot be stored;
      it is counted in :attr:`EncodedFrame.rows_without_fields` (and logged by the caller), never
      silently lost.
    * ``inf``/``-inf`` fields raise :class:`InvalidFrameError` (InfluxDB rejects them; dropping them
      would lose data without a trace). Validate or replace them before writing.
    * Null and empty tag values: InfluxDB has no empty tag, so the tag is omitted for that row and reads
      back as null. The count is :attr:`EncodedFrame.empty_tag_values`.
    * Tag values, tag keys, field keys and measurements containing a newline or ending in a backslash
      are rejected: line protocol cannot carry them. String *fields* may hold anything.
    * Integers are written with the ``i`` suffix (1.x OSS rejects ``u``); unsigned values above
      2**63-1 are rejected.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import InvalidFrameError

# InfluxDB's line-protocol parser (1.x/2.x, verified on 1.6.7) treats a backslash as an escape only
# before the separator characters; any other backslash is literal. So we escape the separators only,
# and refuse names that end in a backslash (it would escape the separator that follows).
_MEASUREMENT_ESCAPES = ((",", "\\,"), (" ", "\\ "))
_KEY_ESCAPES = ((",", "\\,"), ("=", "\\="), (" ", "\\ "))
_STRING_FIELD_ESCAPES = (("\\", "\\\\"), ('"', '\\"'))


def _escape(text: str, escapes: tuple[tuple[str, str], ...], what: str) -> str:
    if "\n" in text or "\r" in text:
        raise InvalidFrameError(f"{what} {text!r} contains a newline, which line protocol cannot carry")
    if text.endswith("\\"):
        raise InvalidFrameError(f"{what} {text!r} ends with a backslash, which line protocol cannot carry")
    for old, new in escapes:
        text = text.replace(old, new)
    return text


def escape_measurement(name: str) -> str:
    """Escape a measurement name (comma, space)."""
    return _escape(name, _MEASUREMENT_ESCAPES, "measurement")


def escape_key(key: str) -> str:
    """Escape a tag key, tag value or field key (comma, ``=``, space)."""
    return _escape(key, _KEY_ESCAPES, "key or tag value")


def escape_string_field(value: str) -> str:
    """Quote and escape a string field value (``"`` and backslash)."""
    for old, new in _STRING_FIELD_ESCAPES:
        value = value.replace(old, new)
    return f'"{value}"'


@dataclass(frozen=True)
class EncodedFrame:
    """The line-protocol lines of a frame and what could not be encoded.

    Attributes:
        lines: one ``str`` per written point (object ndarray), in frame order.
        written: boolean mask over the frame's rows: True where the row became a point.
        rows_without_fields: rows dropped because every field was null.
        empty_tag_values: tag values that were null or empty and so omitted.
    """

    lines: np.ndarray
    written: np.ndarray
    rows_without_fields: int
    empty_tag_values: int

    @property
    def points(self) -> int:
        """Number of points that will be written."""
        return len(self.lines)

    def batches(self, batch_size: int) -> Iterator[bytes]:
        """Yield newline-joined UTF-8 bodies of at most ``batch_size`` lines."""
        for offset in range(0, len(self.lines), batch_size):
            yield "\n".join(self.lines[offset : offset + batch_size]).encode("utf-8")


def time_column_to_ns(values: pd.Series, column: str) -> np.ndarray:
    """Return a datetime column as int64 ns since the epoch; naive or non-datetime columns are refused."""
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        raise InvalidFrameError(
            f"time column {column!r} must be tz-aware datetimes (got {values.dtype}); "
            "use pd.to_datetime(..., utc=True)"
        )
    if values.isna().any():
        raise InvalidFrameError(f"time column {column!r} holds {int(values.isna().sum())} null timestamps")
    return values.dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").to_numpy()


def _by_distinct_value(values: pd.Series, render: object) -> np.ndarray:
    """Apply ``render`` once per distinct non-null value; null positions become ``''``."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    rendered = np.array([render(u) for u in uniques] + [""], dtype=object)  # type: ignore[operator]
    return rendered[codes]  # code -1 picks the trailing ''


def _tag_pieces(values: pd.Series, key: str) -> tuple[np.ndarray, int]:
    as_text = values.astype("object").where(values.notna(), None)
    as_text = as_text.map(lambda v: v if v is None or isinstance(v, str) else str(v))
    as_text = as_text.where(as_text != "", None)
    empty = int(as_text.isna().sum())
    prefix = "," + escape_key(key) + "="
    return _by_distinct_value(as_text, lambda v: prefix + escape_key(v)), empty


def _format_floats(values: np.ndarray) -> np.ndarray:
    # numpy's str() of float64 is the shortest repr that round-trips, like Go's strconv 'g' -1.
    return values.astype(str).astype(object)


def _field_pieces(values: pd.Series, key: str) -> np.ndarray:
    """Return ``,key=value`` per row, ``''`` where the value is null."""
    prefix = "," + escape_key(key) + "="
    present = values.notna().to_numpy()
    out = np.full(len(values), "", dtype=object)
    if not present.any():
        return out
    dtype = values.dtype
    if dtype == object:
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        if inferred in ("boolean", "integer", "floating", "mixed-integer-float"):
            cast = {"boolean": "boolean", "integer": "Int64"}.get(inferred, "float64")
            return _field_pieces(values.astype(cast), key)
    if pd.api.types.is_bool_dtype(dtype):
        out[present] = np.where(values[present].astype(bool).to_numpy(), prefix + "true", prefix + "false")
    elif pd.api.types.is_integer_dtype(dtype):
        ints = values[present]
        if pd.api.types.is_unsigned_integer_dtype(dtype) and ints.max() > np.iinfo(np.int64).max:
            raise InvalidFrameError(f"field {key!r} holds unsigned values above 2**63-1")
        out[present] = prefix + ints.astype("int64").to_numpy().astype(str).astype(object) + "i"
    elif pd.api.types.is_float_dtype(dtype):
        floats = values[present].astype("float64").to_numpy()
        bad = ~np.isfinite(floats)
        if bad.any():
            raise InvalidFrameError(
                f"field {key!r} holds {int(bad.sum())} infinite value(s); InfluxDB rejects them. "
                "Replace or quarantine them before writing."
            )
        out[present] = prefix + _format_floats(floats)
    elif pd.api.types.is_string_dtype(dtype) or pd.api.types.infer_dtype(values, skipna=True) == "string":
        out[:] = _by_distinct_value(values, lambda v: prefix + escape_string_field(v))
    else:
        kind = pd.api.types.infer_dtype(values, skipna=True)
        raise InvalidFrameError(
            f"field {key!r} has dtype {dtype} (inferred {kind!r}); cast it to float, int, bool or str"
        )
    return out


def encode_frame(
    frame: pd.DataFrame,
    measurement: str,
    tag_columns: Sequence[str],
    time_column: str = "time",
    field_columns: Sequence[str] | None = None,
) -> EncodedFrame:
    """Encode ``frame`` as line protocol, one point per row with at least one non-null field.

    Args:
        frame: the rows to encode.
        measurement: target measurement.
        tag_columns: columns stored as tags (values are converted to ``str``).
        time_column: tz-aware datetime column holding each point's timestamp.
        field_columns: columns stored as fields; default every column that is not a tag or the time.

    Raises:
        InvalidFrameError: missing columns, naive timestamps, infinite values, newlines in names or
            tags, or a field whose dtype cannot be stored.
    """
    missing = [c for c in [time_column, *tag_columns] if c not in frame.columns]
    if missing:
        raise InvalidFrameError(f"columns {missing} are declared but missing from the frame")
    if field_columns is None:
        field_columns = [c for c in frame.columns if c != time_column and c not in set(tag_columns)]
    if "time" in [*tag_columns, *field_columns]:
        raise InvalidFrameError("'time' cannot be a tag or field name in InfluxDB; rename the column")
    head = escape_measurement(measurement)
    if len(frame) == 0:
        return EncodedFrame(np.empty(0, dtype=object), np.zeros(0, dtype=bool), 0, 0)
    times = time_column_to_ns(frame[time_column], time_column)

    series_part = np.full(len(frame), head, dtype=object)
    empty_tags = 0
    for tag in sorted(tag_columns):  # sorted tag keys are what the server stores anyway
        pieces, empty = _tag_pieces(frame[tag], str(tag))
        series_part = series_part + pieces
        empty_tags += empty

    fields_part = np.full(len(frame), "", dtype=object)
    for column in field_columns:
        fields_part = fields_part + _field_pieces(frame[column], str(column))
    has_fields = fields_part != ""
    dropped = int((~has_fields).sum())
    lines = (
        series_part[has_fields]
        + " "
        + np.array([f[1:] for f in fields_part[has_fields]], dtype=object)
        + " "
        + times[has_fields].astype(str).astype(object)
    )
    return EncodedFrame(lines=lines, written=has_fields, rows_without_fields=dropped, empty_tag_values=empty_tags)
