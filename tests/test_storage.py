"""One storage test-suite, run against the local folder and a real S3 API server (moto)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest
from sqlmodel import Session, select

from bench.generate import customers
from gateway.app import create_app
from gateway.models import DatasetVersion
from gateway.object_store import PART_BYTES, ObjectSnapshotStore
from gateway.recovery import Recovery
from gateway.settings import Settings
from gateway.snapshots import (
    SnapshotStore,
    StagedVersion,
    delete_version,
    open_store,
    part_keys,
    publish_version,
    version_files,
)
from privacy import PiiEngine
from tests.conftest import CONTRACTS, TEST_ADMIN_KEY, TEST_PII_KEY, admin_client, csv_bytes


@pytest.fixture(params=["local", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return (tmp_path / "snapshots").as_uri()
    url: str = request.getfixturevalue("s3_url")
    return url


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> SnapshotStore:
    return open_store(store_url, "me", tmp_path / "work")


def _frame(rows: int = 1_000) -> pl.LazyFrame:
    return pl.LazyFrame({"id": range(rows), "text": [f"row {i}" for i in range(rows)]})


def _staged_files(store: SnapshotStore) -> list[Path]:
    roots = [getattr(store, "staging", None)]
    return [p for root in roots if root and root.exists() for p in root.rglob("*") if p.is_file()]


def test_staged_snapshots_are_invisible_until_published(store: SnapshotStore) -> None:
    staged = store.stage(_frame())
    assert staged.content_hash == hashlib.sha256(staged.path.read_bytes()).hexdigest()
    assert store.keys("customers/") == []
    store.publish(staged, "customers/v1-abc.parquet")
    assert store.keys("customers/") == ["customers/v1-abc.parquet"]
    assert _staged_files(store) == []
    data = store.local_path("customers/v1-abc.parquet").read_bytes()
    assert hashlib.sha256(data).hexdigest() == staged.content_hash
    assert store.uri("customers/v1-abc.parquet").endswith("/customers/v1-abc.parquet")


def test_a_version_in_parts_is_published_read_and_deleted_whole(store: SnapshotStore) -> None:
    frames = [_frame(300), _frame(200).with_columns(pl.col("id") + 300), _frame(1)]
    staged = StagedVersion(tuple(store.stage(f) for f in frames))
    key = staged.key("customers", "0" * 8 + "-0000-0000-0000-" + "0" * 12)
    assert key.endswith("/manifest.json")
    publish_version(store, staged, key)
    parts = part_keys(store, key)
    assert len(parts) == 3
    assert store.keys("customers/") == sorted([key, *parts])
    hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in version_files(store, key)]
    assert hashes == [p.content_hash for p in staged.parts]
    assert staged.content_hash == hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    read = pl.scan_parquet(version_files(store, key)).collect()
    assert read.equals(pl.concat([f.collect() for f in frames]))
    assert _staged_files(store) == []
    delete_version(store, key)
    assert store.keys("customers/") == []


def test_discard_and_delete_leave_nothing(store: SnapshotStore) -> None:
    store.discard(store.stage(_frame()))
    assert _staged_files(store) == []
    store.publish(store.stage(_frame()), "customers/v1-x.parquet")
    store.delete("customers/v1-x.parquet")
    store.delete("customers/v1-x.parquet")  # idempotent
    assert store.keys("customers/") == []


def test_keys_are_scoped_by_prefix_and_never_list_probes(store: SnapshotStore) -> None:
    store.check_writable()
    store.publish(store.stage(_frame(10)), "a/v1.parquet")
    store.publish(store.stage(_frame(11)), "ab/v1.parquet")
    assert store.keys("a/") == ["a/v1.parquet"]
    assert store.keys("ab/") == ["ab/v1.parquet"]


def test_staging_areas_of_dead_owners_are_swept(store: SnapshotStore) -> None:
    store.stage(_frame())
    removed = store.sweep_staging(lambda owner, mtime: owner != "me")
    assert removed == []
    removed = store.sweep_staging(lambda owner, mtime: owner == "me")
    assert len(removed) == 1
    assert _staged_files(store) == []


def test_large_snapshots_go_up_in_parts_and_come_back_whole(
    store: SnapshotStore, tmp_path: Path
) -> None:
    # Incompressible text, so the Parquet file is larger than one upload part.
    rows = 600_000
    plan = pl.LazyFrame({"id": range(rows)}).with_columns(
        pl.col("id").cast(pl.String).hash().cast(pl.String).alias("a"),
        (pl.col("id") * 7).cast(pl.String).hash().cast(pl.String).alias("b"),
        (pl.col("id") * 13).cast(pl.String).hash().cast(pl.String).alias("c"),
    )
    staged = store.stage(plan)
    assert staged.byte_size > PART_BYTES
    store.publish(staged, "big/v1.parquet")
    if isinstance(store, ObjectSnapshotStore):
        (store.cache / "big/v1.parquet").unlink()  # force a download
    path = store.local_path("big/v1.parquet")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == staged.content_hash
    assert pl.read_parquet(path).height == rows


def test_an_unreachable_object_store_is_not_writable(tmp_path: Path, s3_url: str) -> None:
    bucket_missing = open_store("s3://no-such-bucket-here/x", "me", tmp_path)
    with pytest.raises(OSError, match="not writable"):
        bucket_missing.check_writable()
    assert open_store(s3_url, "me", tmp_path).keys("") == []


def test_the_gateway_on_s3_stores_serves_and_recovers_snapshots(
    tmp_path: Path, database_url: str, s3_url: str, pii_engine: PiiEngine
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        storage_url=s3_url,
        contracts_dir=CONTRACTS,
        pii_key=TEST_PII_KEY,
        admin_key=TEST_ADMIN_KEY,
    )
    frame = customers(100, seed=5)
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        created = client.post(
            "/api/v1/datasets/customers/uploads",
            content=csv_bytes(frame),
            headers={"Content-Type": "text/csv"},
        )
        assert created.status_code == 201, created.text
        ready = client.get("/readyz").json()
        assert ready["checks"]["storage"]["status"] == "ok"
        services = client.app.state.services  # type: ignore[attr-defined]
        store = services.snapshots
        assert isinstance(store, ObjectSnapshotStore)
        with Session(services.engine) as session:
            row = session.exec(select(DatasetVersion)).one()
        assert row.storage_key in store.keys("customers/")
        assert store.uri(row.storage_key) == f"{s3_url}/{row.storage_key}"
        # Another replica (no local cache) serves the data from the object store.
        for cached in store.cache.rglob("*.parquet"):
            cached.unlink()
        data = client.get("/api/v1/datasets/customers/versions/1/data")
        assert data.status_code == 200
        assert pl.read_parquet(data.content)["customer_id"].to_list() == list(range(1, 101))
        # A crash between upload and commit leaves an object no version refers to.
        store.publish(store.stage(_frame()), "customers/v2-orphan.parquet")
        report = Recovery(services).run(orphans=True)
        assert report.orphan_snapshots == ["customers/v2-orphan.parquet"]
        assert store.keys("customers/") == [row.storage_key]
