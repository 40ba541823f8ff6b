"""Immutable snapshot storage behind a small interface, with backends keyed by URL scheme.

A snapshot is first *staged* (written completely, fsynced, hashed) and then *published* under
its final key by an atomic rename; a reader never sees a partial file. The version row is
written only after ``publish`` returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

import polars as pl

_HASH_CHUNK = 1 << 20
ROW_GROUP_SIZE = 122_880


@dataclass(frozen=True)
class StagedSnapshot:
    """A complete, durable snapshot file not yet visible under a final key."""

    path: Path
    content_hash: str
    byte_size: int


class SnapshotStore(Protocol):
    """Where accepted versions live."""

    url: str

    def stage(self, plan: pl.LazyFrame) -> StagedSnapshot:
        """Stream ``plan`` into Parquet (zstd) in a staging area, durably, and hash the file."""
        ...

    def publish(self, staged: StagedSnapshot, key: str) -> None:
        """Make the staged file visible under ``key`` atomically."""
        ...

    def discard(self, staged: StagedSnapshot) -> None:
        """Remove a staged file that will not be published."""
        ...

    def delete(self, key: str) -> None:
        """Remove a published snapshot (only for one whose version row was never written)."""
        ...

    def local_path(self, key: str) -> Path:
        """A local file holding the snapshot, for reading."""
        ...

    def uri(self, key: str) -> str:
        """The snapshot's URI, for lineage and metadata."""
        ...

    def check_writable(self) -> None:
        """Raise OSError unless a snapshot could be written now."""
        ...


def write_parquet(plan: pl.LazyFrame, path: Path) -> None:
    """Stream ``plan`` into a zstd Parquet file.

    Row groups have a fixed size, so the same rows give the same bytes however the frame was
    chunked (CSV and Parquet readers chunk differently); content hashes rely on that.
    """
    plan.sink_parquet(path, compression="zstd", statistics=True, row_group_size=ROW_GROUP_SIZE)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalSnapshotStore:
    """Snapshots as files under a local folder (``file://`` URLs or plain paths)."""

    STAGING = ".staging"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()
        (root / self.STAGING).mkdir(parents=True, exist_ok=True)

    def stage(self, plan: pl.LazyFrame) -> StagedSnapshot:
        path = self.root / self.STAGING / f"{uuid.uuid4().hex}.parquet"
        try:
            write_parquet(plan, path)
            digest = hashlib.sha256()
            with path.open("rb+") as fh:
                while chunk := fh.read(_HASH_CHUNK):
                    digest.update(chunk)
                size = fh.tell()
                os.fsync(fh.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise
        return StagedSnapshot(path=path, content_hash=digest.hexdigest(), byte_size=size)

    def publish(self, staged: StagedSnapshot, key: str) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.path.replace(target)
        _fsync_dir(target.parent)

    def discard(self, staged: StagedSnapshot) -> None:
        with contextlib.suppress(FileNotFoundError):
            staged.path.unlink()

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / key).unlink()

    def local_path(self, key: str) -> Path:
        return self.root / key

    def uri(self, key: str) -> str:
        return (self.root / key).as_uri()

    def check_writable(self) -> None:
        probe = self.root / self.STAGING / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()


def _local(url: str) -> SnapshotStore:
    parsed = urlparse(url)
    path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(url)
    return LocalSnapshotStore(path.resolve())


BACKENDS: dict[str, Callable[[str], SnapshotStore]] = {"file": _local, "": _local}


def open_store(url: str) -> SnapshotStore:
    """The snapshot store for ``url``, chosen by its scheme.

    Raises:
        ValueError: no backend handles the scheme.
    """
    scheme = urlparse(url).scheme
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    try:
        backend = BACKENDS[scheme]
    except KeyError:
        raise ValueError(f"no snapshot store for scheme {scheme!r} (known: file)") from None
    return backend(url)
