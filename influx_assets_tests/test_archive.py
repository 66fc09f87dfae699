"""Cold storage: one deterministic Parquet file per day, written atomically, read back exactly."""

import hashlib
import threading

import numpy as np
import pandas as pd
import pytest

from influx_assets.telemetry.archive import ColdStorage, archive_path, read_day, write_day

DAY = pd.Timestamp("2025-03-01T00:00:00Z")


def normalized_day(rows: int = 500) -> pd.DataFrame:
    """A day of normalized points as they read back from InfluxDB (sorted columns, typed)."""
    rng = np.random.default_rng(4)
    times = DAY + pd.to_timedelta(np.sort(rng.choice(86_400_000_000_000, rows, replace=False)), unit="ns")
    return pd.DataFrame(
        {
            "time": pd.Series(times).dt.tz_convert("UTC"),
            "kind": pd.Series(rng.choice(["temperature", "voltage"], rows), dtype="str"),
            "sensor_id": pd.Series(rng.choice(["sensor,0002", "capteur-é", "s 3"], rows), dtype="str"),
            "site": pd.Series(
                rng.choice(['Hall "B", Floor 2', "Zürich Lab", "Ωmega=1 🌡"], rows), dtype="str"
            ),
            "battery": np.where(rng.random(rows) < 0.5, np.nan, rng.random(rows) * 100),
            "unit": pd.Series(["C"] * rows, dtype="str"),
            "value": rng.normal(20, 5, rows),
        }
    )


def test_a_day_reads_back_exactly(tmp_path):
    storage = ColdStorage(base_url=str(tmp_path))
    filesystem, base = storage.location()
    source = normalized_day()
    path = archive_path(base, DAY)
    digest = write_day(filesystem, path, source.sample(frac=1.0, random_state=2))
    back, read_digest = read_day(filesystem, path)
    pd.testing.assert_frame_equal(back, source.reset_index(drop=True), check_index_type=False)
    assert path == f"{tmp_path}/normalized_telemetry/date=2025-03-01/part-0.parquet"
    assert (
        digest
        == read_digest
        == hashlib.sha256((tmp_path / path.removeprefix(f"{tmp_path}/")).read_bytes()).hexdigest()
    )


def test_rewriting_a_day_is_idempotent_and_leaves_no_temporary_files(tmp_path):
    filesystem, base = ColdStorage(base_url=str(tmp_path)).location()
    source = normalized_day()
    first = write_day(filesystem, archive_path(base, DAY), source)
    second = write_day(filesystem, archive_path(base, DAY), source.iloc[::-1])  # other order, same points
    assert first == second
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["normalized_telemetry/date=2025-03-01/part-0.parquet"]


def test_a_changed_day_replaces_the_file(tmp_path):
    filesystem, base = ColdStorage(base_url=str(tmp_path)).location()
    write_day(filesystem, archive_path(base, DAY), normalized_day())
    smaller = normalized_day().iloc[:10]
    write_day(filesystem, archive_path(base, DAY), smaller)
    back, _ = read_day(filesystem, archive_path(base, DAY))
    assert len(back) == 10


def test_fsspec_urls_work(tmp_path):
    pytest.importorskip("fsspec")
    filesystem, base = ColdStorage(base_url="memory://archive-test/cold").location()
    source = normalized_day(50)
    write_day(filesystem, archive_path(base, DAY), source)
    back, _ = read_day(filesystem, archive_path(base, DAY))
    pd.testing.assert_frame_equal(back, source, check_index_type=False)


def test_file_urls_and_the_default_location(tmp_path, monkeypatch):
    monkeypatch.delenv("ARCHIVE_URL", raising=False)
    _, default = ColdStorage().location()
    assert default.endswith("/archive")
    monkeypatch.setenv("ARCHIVE_URL", str(tmp_path / "from-env"))
    assert ColdStorage().location()[1] == str(tmp_path / "from-env")
    assert ColdStorage(base_url=f"file://{tmp_path}/x").location()[1] == f"{tmp_path}/x"


class MeetingFileSystem:
    """A filesystem that holds every writer, its temporary file open, until all writers have one open."""

    def __init__(self, filesystem, writers: int) -> None:
        self.filesystem = filesystem
        self.barrier = threading.Barrier(writers, timeout=10)

    def create_dir(self, *args, **kwargs):
        return self.filesystem.create_dir(*args, **kwargs)

    def move(self, *args, **kwargs):
        return self.filesystem.move(*args, **kwargs)

    def open_output_stream(self, path):
        stream = self.filesystem.open_output_stream(path)
        self.barrier.wait()
        return stream


def test_two_writers_of_one_day_at_once_leave_one_whole_file_of_one_of_them(tmp_path):
    filesystem, base = ColdStorage(base_url=str(tmp_path)).location()
    meeting = MeetingFileSystem(filesystem, writers=2)
    versions = {"a": normalized_day(), "b": normalized_day().iloc[:100]}
    digests, errors = {}, []

    def write(name: str) -> None:
        try:  # same process, so the same pid: the attempt and a random part keep the temporary files apart
            digests[name] = write_day(meeting, archive_path(base, DAY), versions[name], attempt=f"run-{name}-0")
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(name,)) for name in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    back, digest = read_day(filesystem, archive_path(base, DAY))
    assert digest in digests.values() and len(back) in {len(v) for v in versions.values()}
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["normalized_telemetry/date=2025-03-01/part-0.parquet"]


@pytest.mark.parametrize(
    ("base", "local"),
    [("/srv/archive", True), ("archive", True), ("s3://bucket/prefix", False), ("file:///mnt/shared/archive", False)],
)
def test_a_plain_path_is_this_machines_disk_and_a_url_names_shared_storage(base: str, local: bool) -> None:
    assert ColdStorage(base_url=base).is_local_path() is local
