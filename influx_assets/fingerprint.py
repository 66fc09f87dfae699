"""A canonical, order-independent sha256 of a DataFrame: the same points give the same fingerprint.

Used to prove that what a stage wrote is what reads back, that an archive file holds exactly its source
window, and to notice that a raw window changed after it was processed.

Canonical form (so that a frame and its InfluxDB read-back compare equal):
    * columns are taken in name order; a column that is null in every row is left out (InfluxDB does
      not store a field or tag that no point of the window has);
    * ``""`` and null are the same value (InfluxDB has no empty tag; an empty string field reads back
      as null);
    * times become integer ns since the epoch (UTC), integers their decimal text, floats the shortest
      text that round-trips (``40.0`` stays a float), booleans ``true``/``false``;
    * rows form a multiset: each row is hashed to 64 bits (pandas' fixed-key SipHash), the row hashes
      are sorted, and sha256 runs over the column header, the row count and the sorted hashes.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

_NULL = "\x00null"


def _canonical_text(column: pd.Series) -> np.ndarray:
    """One column as an object array of canonical strings (nulls become a sentinel)."""
    dtype = column.dtype
    present = column.notna().to_numpy()
    out = np.full(len(column), _NULL, dtype=object)
    if not present.any():
        return out
    values = column[present]
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        stamps = pd.to_datetime(values, utc=True).dt.as_unit("ns").astype("int64")
        out[present] = stamps.to_numpy().astype(str).astype(object)
    elif pd.api.types.is_bool_dtype(dtype):
        out[present] = np.where(values.astype(bool).to_numpy(), "true", "false")
    elif pd.api.types.is_integer_dtype(dtype):
        out[present] = values.astype("int64").to_numpy().astype(str).astype(object)
    elif pd.api.types.is_float_dtype(dtype):
        out[present] = values.astype("float64").to_numpy().astype(str).astype(object)
    else:
        text = values.astype(str).to_numpy().astype(object)
        text[text == ""] = _NULL
        out[present] = text
    return out


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """Return ``"sha256:<hex>"`` of ``frame``'s canonical form (see the module docstring).

    Row order, column order, dtype width (``int32`` vs ``int64``) and the index do not matter; every
    value, the set of non-empty columns and the number of rows do.

    Examples:
        >>> import pandas as pd
        >>> a = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
        >>> frame_fingerprint(a) == frame_fingerprint(a.iloc[::-1][["y", "x"]])
        True
    """
    columns = sorted(str(c) for c in frame.columns)
    canonical: dict[str, np.ndarray] = {}
    for name in columns:
        text = _canonical_text(frame[name])
        if (text != _NULL).any():
            canonical[name] = text
    digest = hashlib.sha256()
    digest.update(("\x1f".join(canonical) + f"\n{len(frame)}\n").encode("utf-8"))
    if canonical and len(frame):
        row_hashes = pd.util.hash_pandas_object(pd.DataFrame(canonical, dtype=object), index=False)
        digest.update(np.sort(row_hashes.to_numpy(dtype="uint64")).tobytes())
    return "sha256:" + digest.hexdigest()
