"""Snapshots in an S3-compatible object store (AWS S3, MinIO, Ceph …) through obstore.

``DATAGATE_STORAGE_URL=s3://bucket/prefix``; endpoint, region and credentials come from the
usual AWS settings (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``; ``AWS_ALLOW_HTTP=true`` for a plain-HTTP
endpoint such as a local MinIO).

Atomicity is the object store's own: a PUT — or a multipart upload, for large files — becomes
visible only once complete, so no reader sees a partial object. A snapshot is staged as a local
file (``<home>/s3-staging/<owner>/``, swept like the local store's staging area), uploaded under
its final key inside the version transaction, and the version row is committed only after the
upload returned. Immutable snapshots are read through a local cache (``<home>/s3-cache``), which
may be deleted at any time.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlparse

import obstore
import polars as pl
from obstore.store import S3Store

from gateway.snapshots import OwnerDead, StagedSnapshot, stage_file, sweep_owned_folders

# Parts of a multipart upload; S3 needs at least 5 MiB per part but the last.
PART_BYTES = 16 * 1024 * 1024
_PROBES = ".datagate-probe/"


class ObjectSnapshotStore:
    """Snapshots as objects under ``s3://bucket/prefix/``."""

    def __init__(self, url: str, owner: str, work: Path) -> None:
        parsed = urlparse(url)
        if not parsed.netloc:
            raise ValueError(f"storage URL {url!r} names no bucket")
        self.url = url.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.owner = owner
        self.store = S3Store(self.bucket, prefix=self.prefix or None)
        self.staging_root = work / "s3-staging"
        self.staging = self.staging_root / owner
        self.cache = work / "s3-cache"

    def stage(self, plan: pl.LazyFrame) -> StagedSnapshot:
        return stage_file(plan, self.staging)

    def publish(self, staged: StagedSnapshot, key: str) -> None:
        # Visible under ``key`` only once the (multipart) upload completes.
        obstore.put(self.store, key, staged.path, chunk_size=PART_BYTES, max_concurrency=4)
        cached = self.cache / key
        cached.parent.mkdir(parents=True, exist_ok=True)
        staged.path.replace(cached)

    def discard(self, staged: StagedSnapshot) -> None:
        with contextlib.suppress(FileNotFoundError):
            staged.path.unlink()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            obstore.delete(self.store, key)
        with contextlib.suppress(FileNotFoundError):
            (self.cache / key).unlink()

    def purge_cached(self, keys: Iterable[str]) -> int:
        """Remove this process's cached copies of ``keys`` (deleted, maybe by another
        replica); returns how many there were."""
        removed = 0
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                (self.cache / key).unlink()
                removed += 1
        return removed

    def local_path(self, key: str) -> Path:
        cached = self.cache / key
        if cached.is_file():
            return cached
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{cached.name}.{uuid.uuid4().hex}.part")
        try:
            result = obstore.get(self.store, key)
            with partial.open("wb") as fh:
                for chunk in result.stream(min_chunk_size=1 << 20):
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            partial.replace(cached)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            raise
        return cached

    def uri(self, key: str) -> str:
        return f"{self.url}/{key}"

    def check_writable(self) -> None:
        probe = f"{_PROBES}{self.owner}-{uuid.uuid4().hex}"
        try:
            obstore.put(self.store, probe, b"ok")
            obstore.delete(self.store, probe)
        except Exception as exc:  # obstore raises its own error types; readiness wants OSError
            raise OSError(f"object store not writable: {type(exc).__name__}") from exc
        self.staging.mkdir(parents=True, exist_ok=True)

    def keys(self, prefix: str) -> list[str]:
        return sorted(
            meta["path"]
            for batch in obstore.list(self.store, prefix=prefix)
            for meta in batch
            if not meta["path"].startswith(_PROBES)
        )

    def sweep_staging(self, dead: OwnerDead) -> list[str]:
        return sweep_owned_folders(self.staging_root, dead)

    def put_bytes(self, key: str, data: bytes) -> None:
        obstore.put(self.store, key, data)

    def get_bytes(self, key: str) -> bytes:
        return bytes(obstore.get(self.store, key).bytes())

    def put_file(self, key: str, path: Path) -> None:
        obstore.put(self.store, key, path, chunk_size=PART_BYTES, max_concurrency=4)
        path.unlink(missing_ok=True)
