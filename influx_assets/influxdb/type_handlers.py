"""Frame types the IO manager stores and loads, one handler each (like Dagster's ``DbTypeHandler``).

The storage core speaks pandas (the encoder and the parsers); a handler converts its frame type to and
from it, through Arrow where it can. The IO manager picks the handler by the output object's type, and
on load by the input's type annotation (pandas when there is none).

- :class:`PandasHandler`: ``pandas.DataFrame`` as is.
- :class:`PolarsHandler`: ``polars.DataFrame`` (optional extra ``influx-assets[polars]``), converted
  with ``to_pandas()`` / ``polars.from_pandas()`` over Arrow; a time column must be a tz-aware
  ``Datetime`` (``time_zone="UTC"``), as for pandas.
"""

from __future__ import annotations

from typing import Any, Protocol

import pandas as pd
import pyarrow as pa

from influx_assets.influxdb.client.errors import InvalidFrameError


class FrameHandler(Protocol):
    """Converts one frame type to and from the pandas frames the storage core speaks."""

    name: str

    def handles(self, frame_type: Any) -> bool:
        """Whether this handler stores ``frame_type`` (a class or a type annotation)."""
        ...

    def to_pandas(self, frame: Any) -> pd.DataFrame:
        """The frame as pandas (for writing)."""
        ...

    def from_pandas(self, frame: pd.DataFrame) -> Any:
        """A loaded pandas frame as this type."""
        ...


class PandasHandler:
    """``pandas.DataFrame``: stored and loaded as is."""

    name = "pandas"

    def handles(self, frame_type: Any) -> bool:  # noqa: D102
        return isinstance(frame_type, type) and issubclass(frame_type, pd.DataFrame)

    def to_pandas(self, frame: pd.DataFrame) -> pd.DataFrame:  # noqa: D102
        return frame

    def from_pandas(self, frame: pd.DataFrame) -> pd.DataFrame:  # noqa: D102
        return frame


_NULLABLE = {
    pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(), pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(), pa.bool_(): pd.BooleanDtype(),
}


class PolarsHandler:
    """``polars.DataFrame`` (needs the ``polars`` package; import it only when used)."""

    name = "polars"

    def handles(self, frame_type: Any) -> bool:  # noqa: D102
        module = getattr(frame_type, "__module__", "") or ""
        return isinstance(frame_type, type) and module.startswith("polars") and frame_type.__name__ == "DataFrame"

    def to_pandas(self, frame: Any) -> pd.DataFrame:  # noqa: D102
        # nullable pandas dtypes: a polars Int64 column with a null must stay integer (not float64)
        return frame.to_pandas(types_mapper=_NULLABLE.get)

    def from_pandas(self, frame: pd.DataFrame) -> Any:  # noqa: D102
        import polars

        return polars.from_pandas(frame)


#: Handlers in the order they are tried.
HANDLERS: tuple[FrameHandler, ...] = (PandasHandler(), PolarsHandler())


def handler_for_output(obj: object) -> FrameHandler:
    """The handler of a returned object; refuses anything else with the supported types named."""
    for handler in HANDLERS:
        if handler.handles(type(obj)):
            return handler
    raise InvalidFrameError(
        f"InfluxDBIOManager stores pandas or polars DataFrames, got {type(obj).__name__}"
    )


def handler_for_input(annotation: Any) -> FrameHandler:
    """The handler for an input annotated ``annotation`` (pandas when unannotated or ``Any``)."""
    for handler in HANDLERS:
        if handler.handles(annotation):
            return handler
    return HANDLERS[0]
