"""A canonical, order-independent sha256 of a DataFrame: the same points give the same fingerprint.

Used to prove that what a stage wrote is what reads back, that an archive file holds exactly its source
window, and to notice that a raw window changed after it was processed.

Canonical form (so that a frame and its InfluxDB read-back compare equal):
    * a column that is null in every row is left out (InfluxDB does not store a field or tag that no
      point of the window has); column order does not matter, column names do;
    * ``""`` and null are the same value (InfluxDB has no empty tag; an empty string field reads back
      as null);
    * each value is hashed to 64 bits by kind: times as integer ns since the epoch (UTC), floats by
      their float64 bits (``40.0`` stays a float, distinct from the integer ``40``), booleans, and
      integers (any width, so ``int32`` and ``Int64`` agree) and everything else as text (pandas'
      fixed-key SipHash) — so an integer tag column equals its read-back strings; object columns are
      typed by their values; the kind salts the hash;
    * a row's hash is the sum (mod 2**64) of its non-null cells' hashes, each mixed with its column
      name, so a null cell and a missing column are the same and a row's hash does not depend on the
      other rows; rows form a multiset: the row hashes are sorted, and sha256 runs over the names of
      the non-empty columns, the row count and the sorted row hashes.

Everything is vectorized (no Python object per value for numeric columns), because every stage
fingerprints its output and every read-back check its window. :func:`window_fingerprints` gives the
fingerprint of each time window of a frame from one pass over it (what a range run records per
partition), equal to fingerprinting each window's rows on their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

#: XORed into a value's hash so that equal bits of different kinds (int 1, float bits 1) differ.
_KIND_SALT = {
    "integer": np.uint64(0x243F6A8885A308D3),
    "float": np.uint64(0x13198A2E03707344),
    "bool": np.uint64(0xA4093822299F31D0),
    "text": np.uint64(0x082EFA98EC4E6C89),
}
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads every input bit over the output (vectorized, wraps mod 2**64)."""
    z = (values ^ (values >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def _name_salt(name: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little"))


def _kind_and_values(values: pd.Series) -> tuple[str, np.ndarray]:
    """The non-null values of a column as a numpy array of their canonical kind.

    Integers are hashed as their decimal text, as the old text form did: a numeric tag column is
    stored as text and reads back as strings, and must still compare equal. Object columns are
    typed by their values (what the line-protocol encoder does with them).
    """
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        return "integer", pd.to_datetime(values, utc=True).dt.as_unit("ns").astype("int64").to_numpy()
    if dtype == object:
        inferred = pd.api.types.infer_dtype(values, skipna=True)
        if inferred == "integer":
            return "text", values.astype("int64").to_numpy().astype(str).astype(object)
        if inferred in ("floating", "mixed-integer-float"):
            return "float", values.astype("float64").to_numpy()
        if inferred == "boolean":
            return "bool", values.astype(bool).to_numpy()
        return "text", values.astype(str).to_numpy(dtype=object)
    if pd.api.types.is_bool_dtype(dtype):
        return "bool", values.astype(bool).to_numpy()
    if pd.api.types.is_integer_dtype(dtype):
        return "text", values.astype("int64").to_numpy().astype(str).astype(object)
    if pd.api.types.is_float_dtype(dtype):
        return "float", values.astype("float64").to_numpy()
    return "text", values.astype(str).to_numpy(dtype=object)


def _cell_hashes(column: pd.Series, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Each non-null cell's hash (0 elsewhere) and the non-null mask; None when no cell is non-null."""
    present = column.notna().to_numpy().copy()  # written below; pandas may hand out a read-only view
    if not present.any():
        return None
    kind, values = _kind_and_values(column[present])
    hashes = pd.util.hash_array(values, categorize=kind == "text") ^ _KIND_SALT[kind]
    if kind == "text":
        filled = values != ""
        present[present] = filled
        hashes = hashes[filled]
        if not present.any():
            return None
    out = np.zeros(len(column), dtype="uint64")
    out[present] = _mix(hashes ^ _name_salt(name))
    return out, present


def _row_hashes(frame: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-row hashes, and the non-null mask of every column that has a non-null cell (by name)."""
    rows = np.zeros(len(frame), dtype="uint64")
    masks: dict[str, np.ndarray] = {}
    for position, column in enumerate(frame.columns):
        cells = _cell_hashes(frame.iloc[:, position], str(column))
        if cells is not None:
            rows += cells[0]
            masks[str(column)] = cells[1]
    return rows, masks


def _digest(columns: Sequence[str], row_hashes: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(("\x1f".join(sorted(columns)) + f"\n{len(row_hashes)}\n").encode("utf-8"))
    if len(columns) and len(row_hashes):
        digest.update(np.sort(row_hashes).tobytes())
    return "sha256:" + digest.hexdigest()


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
    rows, masks = _row_hashes(frame)
    return _digest(list(masks), rows)


def chunked_fingerprint(chunks: Iterable[pd.DataFrame]) -> tuple[str, int]:
    """``(frame_fingerprint, rows)`` of the chunks as one frame, holding one chunk at a time.

    Equals :func:`frame_fingerprint` of ``pd.concat(chunks)``: row hashes do not depend on the other
    rows, and a column counts when any chunk has a non-null cell in it.
    """
    hashes: list[np.ndarray] = []
    columns: set[str] = set()
    for chunk in chunks:
        rows, masks = _row_hashes(chunk)
        hashes.append(rows)
        columns.update(masks)
    every = np.concatenate(hashes) if hashes else np.zeros(0, dtype="uint64")
    return _digest(sorted(columns), every), len(every)


def window_fingerprints(
    frame: pd.DataFrame, times_ns: np.ndarray, bounds_ns: Sequence[int]
) -> list[tuple[str, int]]:
    """``(fingerprint, rows)`` of each window ``[bounds[i], bounds[i + 1])``, from one pass over ``frame``.

    ``times_ns`` gives each row's time; rows outside ``[bounds[0], bounds[-1])`` belong to no window.
    Each fingerprint equals :func:`frame_fingerprint` of that window's rows on their own.
    """
    rows, masks = _row_hashes(frame)
    edges = np.asarray(bounds_ns, dtype="int64")
    windows = len(edges) - 1
    owner = np.searchsorted(edges, np.asarray(times_ns, dtype="int64"), side="right") - 1
    inside = (owner >= 0) & (owner < windows)
    owner, rows = owner[inside], rows[inside]
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner, minlength=windows)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    filled = {
        name: np.bincount(owner, weights=mask[inside], minlength=windows) > 0 for name, mask in masks.items()
    }
    grouped = rows[order]
    return [
        (_digest([n for n, has in filled.items() if has[i]], grouped[offsets[i]: offsets[i + 1]]), int(counts[i]))
        for i in range(windows)
    ]
