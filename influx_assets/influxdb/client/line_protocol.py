"""A vectorized InfluxDB line-protocol encoder for pandas DataFrames.

Why our own: influxdb-client's DataFrame serializer corrupts data silently (null tags become escaped
strings, ``''`` tags become ``nan``, ``inf`` passes through and fails the batch) and is slower than the
server. This encoder works column by column: escaping (and float formatting, when values repeat)
runs once per *distinct* value (``factorize``), and lines are joined with Arrow string kernels.
:func:`encode_frame` validates everything up front; the text is rendered batch by batch as
:meth:`EncodedFrame.batches` is iterated, so a transport can send one batch while rendering the next.

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

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from influx_assets.influxdb.client.errors import InvalidFrameError
from influx_assets.influxdb.client.line_text import TEXT, Distinct, Numbers, body, by_distinct_value, float_renderer, scalar

# InfluxDB's line-protocol parser (1.x/2.x, verified on 1.6.7) treats a backslash as an escape only
# before the separator characters; any other backslash is literal. So we escape the separators only,
# and refuse names that end in a backslash (it would escape the separator that follows).
_MEASUREMENT_ESCAPES = ((",", "\\,"), (" ", "\\ "))
_KEY_ESCAPES = ((",", "\\,"), ("=", "\\="), (" ", "\\ "))
_STRING_FIELD_ESCAPES = (("\\", "\\\\"), ('"', '\\"'))
_BACKSLASH_BEFORE_SEPARATOR = re.compile(r"\\[, =]")


def _escape(text: str, escapes: tuple[tuple[str, str], ...], what: str) -> str:
    if "\n" in text or "\r" in text:
        raise InvalidFrameError(f"{what} {text!r} contains a newline, which line protocol cannot carry")
    if "\x00" in text:
        raise InvalidFrameError(f"{what} {text!r} contains a NUL character, which InfluxQL cannot query")
    if text.endswith("\\"):
        raise InvalidFrameError(f"{what} {text!r} ends with a backslash, which line protocol cannot carry")
    for old, new in escapes:
        text = text.replace(old, new)
    return text


def escape_measurement(name: str) -> str:
    """Escape a measurement name (comma, space).

    Refused (verified on 1.6.7): a leading ``#`` (the server reads the line as a comment and drops it
    without an error) and a backslash before a comma, space or ``=`` (1.x unescapes measurement names
    twice, so ``a\\,b`` would be stored as ``a,b``).
    """
    if name.startswith("#"):
        raise InvalidFrameError(
            f"measurement {name!r} starts with '#': line protocol reads the line as a comment and the "
            "server would drop every point silently"
        )
    if _BACKSLASH_BEFORE_SEPARATOR.search(name):
        raise InvalidFrameError(
            f"measurement {name!r} has a backslash before a comma, space or '=', which InfluxDB 1.x "
            "would not store verbatim"
        )
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
    """The points of a frame, validated, and what could not be encoded.

    Encoding is split in two: :func:`encode_frame` validates every value and counts what cannot be
    stored (so nothing is sent if anything is invalid); the text of the lines is rendered per batch
    when :meth:`batches` is iterated, so a transport can send one batch while the next is rendered.

    Attributes:
        written: boolean mask over the frame's rows: True where the row became a point.
        rows_without_fields: rows dropped because every field was null.
        empty_tag_values: tag values that were null or empty and so omitted.
    """

    written: np.ndarray
    rows_without_fields: int
    empty_tag_values: int
    _render: Callable[[np.ndarray], pa.Array] = field(repr=False, compare=False)
    tag_keys: tuple[str, ...] = ()
    field_keys: tuple[str, ...] = ()

    @cached_property
    def _rows(self) -> np.ndarray:
        return np.flatnonzero(self.written)

    @property
    def points(self) -> int:
        """Number of points that will be written."""
        return len(self._rows)

    @cached_property
    def lines(self) -> np.ndarray:
        """One ``str`` per written point (object ndarray), in frame order."""
        if not self.points:
            return np.empty(0, dtype=object)
        rendered = self._render(self._rows)
        return pc.utf8_slice_codeunits(rendered, 0, -1).to_numpy(zero_copy_only=False).astype(object)

    def batches(self, batch_size: int) -> Iterator[bytes]:
        """Yield newline-joined UTF-8 bodies of at most ``batch_size`` lines, rendered one at a time."""
        rows = self._rows
        for offset in range(0, len(rows), batch_size):
            yield body(self._render(rows[offset : offset + batch_size]))


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


def _tag_codes(values: pd.Series, key: str) -> tuple[np.ndarray, list[str], int]:
    """Codes per row (-1: null or empty, so omitted), the ``,key=value`` text per code, the empty count."""
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        as_text = values.astype("object").where(values.notna(), None)
        values = as_text.map(lambda v: v if v is None or isinstance(v, str) else str(v))
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    uniques = list(uniques)
    if "" in uniques:
        codes = np.where(codes == uniques.index(""), -1, codes)
    prefix = "," + escape_key(key) + "="
    texts = [prefix + escape_key(v) if v != "" else "" for v in uniques]
    return codes, texts, int((codes < 0).sum())


def _series(frame: pd.DataFrame, head: str, tag_columns: Sequence[str]) -> tuple[Distinct, int]:
    """The measurement plus sorted tags of every row, rendered once per distinct tag set."""
    series_codes = np.zeros(len(frame), dtype=np.int64)
    series_texts = [head]
    empty_tags = 0
    for tag in sorted(tag_columns):  # sorted tag keys are what the server stores anyway
        codes, texts, empty = _tag_codes(frame[tag], str(tag))
        empty_tags += empty
        pieces = [*texts, ""]  # code -1 (null or empty) picks the trailing ''
        width = len(pieces)
        series_codes, combined = pd.factorize(series_codes * width + codes % width)
        series_texts = [series_texts[c // width] + pieces[c % width] for c in combined.tolist()]
    return Distinct(series_codes, pa.array(series_texts, type=TEXT)), empty_tags


def _field(values: pd.Series, key: str) -> tuple[Distinct | Numbers | None, np.ndarray]:
    """How to render one field column (None when all null) and where it has a value."""
    prefix = "," + escape_key(key) + "="
    present = values.notna().to_numpy()
    if not present.any():
        return None, present
    dtype = values.dtype
    if dtype == object:
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        if inferred in ("boolean", "integer", "floating", "mixed-integer-float"):
            cast = {"boolean": "boolean", "integer": "Int64"}.get(inferred, "float64")
            return _field(values.astype(cast), key)
    if pd.api.types.is_bool_dtype(dtype):
        flags = np.zeros(len(values), dtype=bool)
        flags[present] = values[present].astype(bool).to_numpy()
        return Numbers(prefix, flags, present, "boolean"), present
    if pd.api.types.is_integer_dtype(dtype):
        ints = values[present]
        if pd.api.types.is_unsigned_integer_dtype(dtype) and ints.max() > np.iinfo(np.int64).max:
            raise InvalidFrameError(f"field {key!r} holds unsigned values above 2**63-1")
        full = np.zeros(len(values), dtype=np.int64)
        full[present] = ints.astype("int64").to_numpy()
        return Numbers(prefix, full, present, "integer"), present
    if pd.api.types.is_float_dtype(dtype):
        floats = values[present].astype("float64").to_numpy()
        bad = ~np.isfinite(floats)
        if bad.any():
            raise InvalidFrameError(
                f"field {key!r} holds {int(bad.sum())} infinite value(s); InfluxDB rejects them. "
                "Replace or quarantine them before writing."
            )
        full = np.zeros(len(values), dtype=np.float64)
        full[present] = floats
        return float_renderer(prefix, full, present), present
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.infer_dtype(values, skipna=True) == "string":
        return by_distinct_value(values, lambda v: prefix + escape_string_field(v)), present  # type: ignore[arg-type]
    kind = pd.api.types.infer_dtype(values, skipna=True)
    raise InvalidFrameError(
        f"field {key!r} has dtype {dtype} (inferred {kind!r}); cast it to float, int, bool or str"
    )


#: Tag keys InfluxDB 2.x refuses (models/points.go ``reservedTagKeys``: the whole batch is rejected with
#: 400); ``time`` is refused by 1.x too.
RESERVED_TAG_KEYS = frozenset({"time", "_field", "_measurement"})


def encode_frame(
    frame: pd.DataFrame,
    measurement: str,
    tag_columns: Sequence[str],
    time_column: str = "time",
    field_columns: Sequence[str] | None = None,
) -> EncodedFrame:
    """Validate ``frame`` for line protocol, one point per row with at least one non-null field.

    Every check runs here, before anything can be sent; the lines are rendered by
    :meth:`EncodedFrame.batches` (or :attr:`EncodedFrame.lines`).

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
    reserved = [str(t) for t in tag_columns if t in RESERVED_TAG_KEYS]
    if reserved:
        raise InvalidFrameError(
            f"tag key(s) {reserved} are reserved (InfluxDB 2.x rejects the whole batch); rename the column(s)"
        )
    names = {"tag_keys": tuple(map(str, tag_columns)), "field_keys": tuple(map(str, field_columns))}
    head = escape_measurement(measurement)
    if len(frame) == 0:
        return EncodedFrame(np.zeros(0, dtype=bool), 0, 0, _render=lambda rows: pa.array([], type=TEXT), **names)
    times = time_column_to_ns(frame[time_column], time_column).copy()  # a snapshot: lines render later
    series, empty_tags = _series(frame, head, tag_columns)
    fields = []
    has_fields = np.zeros(len(frame), dtype=bool)
    for column in field_columns:
        renderer, present = _field(frame[column], str(column))
        if renderer is not None:
            fields.append(renderer)
            has_fields |= present

    def render(rows: np.ndarray) -> pa.Array:
        pieces = [f.render(rows) for f in fields]
        joined = pc.binary_join_element_wise(
            *pieces, scalar(""), null_handling="replace", null_replacement=""  # absent fields: ''
        )
        return pc.binary_join_element_wise(
            series.render(rows), scalar(" "), pc.utf8_slice_codeunits(joined, 1),  # drop the first ','
            scalar(" "), pc.cast(pa.array(times[rows]), TEXT), scalar("\n"), scalar(""),
        )

    dropped = int((~has_fields).sum())
    return EncodedFrame(has_fields, dropped, empty_tags, _render=render, **names)
