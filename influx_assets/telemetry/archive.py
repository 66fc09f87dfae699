"""Stage 6: ``telemetry_archive`` — each day's normalized points as Parquet in cold storage.

One file per day at ``<base>/normalized_telemetry/date=YYYY-MM-DD/part-0.parquet``. Rows are sorted
by time and series, so the same source gives the same bytes; the file is written to a temporary name
and renamed over the old one, so a re-run replaces it atomically and a crash never leaves half a file.
The sha256 of the bytes and the row count go into the materialization metadata; reading the file back
gives the source window exactly (the ``archive_matches_source`` check proves it on every run).

``base`` is :class:`ColdStorage`'s ``base_url``: a local path or a URL — whatever
``pyarrow.fs.FileSystem.from_uri`` understands (``file://``, ``s3://``, ``gs://``, ``hdfs://``), and
any other fsspec URL (``memory://``, ``abfs://`` ...) through fsspec when it is installed. Empty means
``$ARCHIVE_URL``, else ``$DAGSTER_HOME/archive``. Under a distributed executor (steps on several
machines) the base must be shared storage: a URL, never a plain path (the code location refuses to
load otherwise, :func:`influx_assets.automation.executors.require_shared_archive`). Writes of one day
are serialized by the stage's writer pool and each uses a temporary file of its own.
"""

import hashlib
from collections.abc import Iterator
import os
import time
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, ConfigurableResource, MaterializeResult, MetadataValue, asset
from pydantic import Field

from influx_assets.telemetry.partitions import daily_windows
from influx_assets.telemetry.contract import NORMALIZED_MEASUREMENT, SERIES_TAGS
from influx_assets.telemetry.keys import SHA256
from influx_assets.telemetry.stage import (
    DAILY_BACKFILL,
    DAILY_FRESHNESS,
    GROUP,
    OWNERS,
    STAGE_RETRY,
    report_stage,
    run_window,
)

ARCHIVE_DATASET = NORMALIZED_MEASUREMENT
#: concurrency pool of the archive's writes (one step at a time, like every stage's writer pool)
ARCHIVE_POOL = "archive_write/telemetry_archive"


def default_archive_base() -> str:
    """``$ARCHIVE_URL``, else ``$DAGSTER_HOME/archive``, else ``archive/`` in the working directory.

    Read when the archive runs (never at import); the same on every process of one machine that shares
    ``DAGSTER_HOME``, wherever the package is installed.
    """
    if os.environ.get("ARCHIVE_URL"):
        return os.environ["ARCHIVE_URL"]
    home = os.environ.get("DAGSTER_HOME")
    return str(Path(home) / "archive" if home else Path.cwd() / "archive")


class ColdStorage(ConfigurableResource):
    """Where ``telemetry_archive`` puts its Parquet files.

    Examples:
        .. code-block:: python

            ColdStorage(base_url="s3://telemetry-archive/prod")   # credentials from the AWS chain
            ColdStorage(base_url="/mnt/cold/telemetry")
            ColdStorage()                                          # $ARCHIVE_URL or <project>/archive
    """

    base_url: str = Field(
        default="", description="Base path or URL of the archive; empty: $ARCHIVE_URL or <project>/archive."
    )

    def base(self) -> str:
        """The configured base: ``base_url``, else ``$ARCHIVE_URL``, else ``<DAGSTER_HOME>/archive``."""
        return self.base_url or default_archive_base()

    def is_local_path(self) -> bool:
        """Whether the base is a plain path (this machine's disk, as far as anyone can tell).

        A URL — ``s3://``, ``gs://``, or ``file:///mnt/shared/...`` for a mount every worker has —
        says where the files live for every process; a plain path only for the processes of one machine.
        """
        return "://" not in self.base()

    def location(self) -> tuple[pafs.FileSystem, str]:
        """The filesystem and the base path on it."""
        base = self.base()
        if "://" not in base:
            base = str(Path(base).expanduser().resolve())
        try:
            filesystem, path = pafs.FileSystem.from_uri(base)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
            try:
                import fsspec  # only for schemes pyarrow does not speak natively
            except ImportError:
                raise ImportError(
                    f"the archive URL {base!r} needs fsspec (and its filesystem package): "
                    "pip install 'influx-assets[archive]'"
                ) from None

            fs, path = fsspec.core.url_to_fs(base)
            filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(fs))
        return filesystem, path.rstrip("/")


def archive_path(base: str, day: pd.Timestamp) -> str:
    """The one file of ``day``."""
    return f"{base}/{ARCHIVE_DATASET}/date={day:%Y-%m-%d}/part-0.parquet"


def archive_table(frame: pd.DataFrame) -> pa.Table:
    """The frame in its deterministic archive form: rows sorted by time and series, no index."""
    keys = [c for c in ("time", *SERIES_TAGS) if c in frame.columns]
    ordered = frame.sort_values(keys, kind="stable") if keys else frame
    return pa.Table.from_pandas(ordered.reset_index(drop=True), preserve_index=False)


def write_day(filesystem: pafs.FileSystem, path: str, frame: pd.DataFrame, attempt: str = "") -> str:
    """Write one day's file atomically (temporary name, then rename); return the bytes' sha256.

    The temporary name is unique to this write (``attempt``, e.g. run id and retry number, plus a
    random part): two writers of one day — a retry beside a worker still finishing, two machines —
    never write into each other's temporary file; the last rename wins with a whole file.
    """
    buffer = pa.BufferOutputStream()
    pq.write_table(archive_table(frame), buffer, compression="zstd")
    data = buffer.getvalue().to_pybytes()
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    temporary = f"{path}.tmp-{attempt or os.getpid()}-{uuid.uuid4().hex[:12]}"
    with filesystem.open_output_stream(temporary) as out:
        out.write(data)
    filesystem.move(temporary, path)
    return hashlib.sha256(data).hexdigest()


def read_day(filesystem: pafs.FileSystem, path: str) -> tuple[pd.DataFrame, str]:
    """Read one day's file back: the frame and the sha256 of its bytes."""
    with filesystem.open_input_stream(path) as source:
        data = source.read()
    return pq.read_table(pa.BufferReader(data)).to_pandas(), hashlib.sha256(data).hexdigest()


def day_chunks(filesystem: pafs.FileSystem, path: str, rows: int = 500_000) -> tuple[Iterator[pd.DataFrame], str]:
    """One day's file back in pieces of at most ``rows`` rows (for checks of big days), and its sha256.

    The pieces are what :func:`read_day` returns, cut (``pd.concat`` of them is that frame).
    """
    with filesystem.open_input_stream(path) as source:
        data = source.read()
    batches = pq.ParquetFile(pa.BufferReader(data)).iter_batches(batch_size=rows)
    return (pa.Table.from_batches([batch]).to_pandas() for batch in batches), hashlib.sha256(data).hexdigest()


def days_of(start: pd.Timestamp, end: pd.Timestamp) -> list[pd.Timestamp]:
    """The UTC days in ``[start, end)``."""
    return list(pd.date_range(start, end, freq="1D", inclusive="left"))


@asset(
    partitions_def=daily_windows,
    kinds={"parquet", "pandas"},
    group_name=GROUP,
    retry_policy=STAGE_RETRY,
    backfill_policy=DAILY_BACKFILL,
    owners=OWNERS,
    freshness_policy=DAILY_FRESHNESS,
    pool=ARCHIVE_POOL,
)
def telemetry_archive(
    context: AssetExecutionContext, cold_storage: ColdStorage, normalized_telemetry: pd.DataFrame
) -> MaterializeResult:
    """The day's normalized points as one deterministic Parquet file, overwritten idempotently."""
    started = time.perf_counter()
    filesystem, base = cold_storage.location()
    start, end = run_window(context)
    digests: dict[str, str] = {}
    attempt = f"{context.run.run_id[:8]}-{context.retry_number}"
    for day in days_of(start, end):
        rows = normalized_telemetry[
            (normalized_telemetry["time"] >= day)
            & (normalized_telemetry["time"] < day + pd.Timedelta(days=1))
        ]
        path = archive_path(base, day)
        digests[f"{day:%Y-%m-%d}"] = write_day(filesystem, path, rows, attempt)
        context.log.info(f"archived {len(rows)} points to {path}")
    metadata = report_stage(
        context,
        normalized_telemetry,
        normalized_telemetry,
        started,
        window_facts=lambda window, out, _rows_in: {
            "archive_path": MetadataValue.path(archive_path(base, window.start)),
            SHA256: MetadataValue.text(digests[f"{window.start:%Y-%m-%d}"]),
            "dagster/row_count": MetadataValue.int(len(out)),
        },
        files=MetadataValue.int(len(digests)),
    )
    return MaterializeResult(metadata=metadata)
