"""A canonical, order-independent sha256 of a DataFrame: the same points give the same fingerprint.

Used to prove that what a stage wrote is what reads back, that an archive file holds exactly its source
window, and to notice that a raw window changed after it was processed.

Canonical form (so that a frame and its InfluxDB read-back compare equal):
    * columns are taken in name order; a column that is null in every row is left out (InfluxDB does
      not store a field or tag that no point of the window has);
    * ``""`` and null are the same value (InfluxDB has no empty tag; an empty string field reads back
      as null);
    * each value is hashed to 64 bits by kind, never through text: times as integer ns since the
      epoch (UTC) and integers as int64 (so ``int32`` and ``Int64`` columns agree), floats by their
      float64 bits (``40.0`` stays a float, distinct from the integer ``40``), booleans, and anything
      else as its ``str`` (pandas' fixed-key SipHash); the kind salts the hash;
    * a row's hash combines its column hashes in name order; rows form a multiset: the row hashes are
      sorted, and sha256 runs over the column header, the row count and the sorted hashes.

Everything is vectorized (no Python object per value for numeric columns), because every stage
fingerprints its output and every read-back check its window.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

#: Hash of a null (or empty-string) value, whatever the column's kind.
_NULL_HASH = np.uint64(0x9E3779B97F4A7C15)
#: XORed into a value's hash so that equal bits of different kinds (int 1, float bits 1) differ.
_KIND_SALT = {
    "integer": np.uint64(0x243F6A8885A308D3),
    "float": np.uint64(0x13198A2E03707344),
    "bool": np.uint64(0xA4093822299F31D0),
    "text": np.uint64(0x082EFA98EC4E6C89),
}
_ROW_MULTIPLIER = np.uint64(0x100000001B3)  # FNV-1a 64-bit prime: mixes each column into the row hash


def _kind_and_values(values: pd.Series) -> tuple[str, np.ndarray]:
    """The non-null values of a column as a numpy array of their canonical kind."""
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return "integer", pd.to_datetime(values, utc=True).dt.as_unit("ns").astype("int64").to_numpy()
    if pd.api.types.is_bool_dtype(dtype):
        return "bool", values.astype(bool).to_numpy()
    if pd.api.types.is_integer_dtype(dtype):
        return "integer", values.astype("int64").to_numpy()
    if pd.api.types.is_float_dtype(dtype):
        return "float", values.astype("float64").to_numpy()
    return "text", values.astype(str).to_numpy(dtype=object)


def _column_hashes(column: pd.Series) -> np.ndarray | None:
    """64-bit hash per row of one column, or None when every value is null (or ``""``)."""
    present = column.notna().to_numpy()
    if not present.any():
        return None
    kind, values = _kind_and_values(column[present])
    hashes = pd.util.hash_array(values, categorize=kind == "text") ^ _KIND_SALT[kind]
    if kind == "text":
        empty = values == ""
        if empty.all():
            return None
        hashes[empty] = _NULL_HASH
    out = np.full(len(column), _NULL_HASH, dtype="uint64")
    out[present] = hashes
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
    names = {str(c): c for c in frame.columns}
    present: dict[str, np.ndarray] = {}
    for name in sorted(names):
        hashes = _column_hashes(frame[names[name]])
        if hashes is not None:
            present[name] = hashes
    digest = hashlib.sha256()
    digest.update(("\x1f".join(present) + f"\n{len(frame)}\n").encode("utf-8"))
    if present and len(frame):
        rows = np.zeros(len(frame), dtype="uint64")
        for hashes in present.values():
            rows = (rows ^ hashes) * _ROW_MULTIPLIER
        digest.update(np.sort(rows).tobytes())
    return "sha256:" + digest.hexdigest()
