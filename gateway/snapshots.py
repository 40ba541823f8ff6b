"""Immutable snapshot storage behind a small interface, with backends keyed by URL scheme.

A snapshot is first *staged* (written completely, fsynced, hashed) and then *published* under
its final key by an atomic rename; a reader never sees a partial file. The version row is
written only after ``publish`` returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

import polars as pl

_HASH_CHUNK = 1 << 20
# Whether the owner (a process id) of a folder, last modified at the given time, is gone.
OwnerDead = Callable[[str, float], bool]
ROW_GROUP_SIZE = 122_880


@dataclass(frozen=True)
class StagedSnapshot:
    """A complete, durable snapshot file not yet visible under a final key."""

    path: Path
    content_hash: str
    byte_size: int
    # A part another worker wrote is already stored, under this key (``gateway.spread``).
    key: str | None = None


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

    def keys(self, prefix: str) -> list[str]:
        """Every published key starting with ``prefix`` (staging areas excluded)."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small object under ``key``, replacing it atomically (audit checkpoints)."""
        ...

    def put_file(self, key: str, path: Path) -> None:
        """Store the local file ``path`` under ``key``, visible only once complete; the file is
        consumed (moved in, or uploaded and removed)."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """A small object's bytes.

        Raises:
            FileNotFoundError: nothing is stored under ``key``.
        """
        ...

    def sweep_staging(self, dead: OwnerDead) -> list[str]:
        """Remove the staging areas of owners ``dead`` says are gone; return what was removed."""
        ...


MANIFEST = "manifest.json"
MANIFEST_FORMAT = "datagate.parts/1"


@dataclass(frozen=True)
class StagedVersion:
    """A version's data staged in one or more Parquet parts, in order. One part is stored as
    one file (its hash is the version's); several under a folder with a manifest listing each
    part's hash, the version's hash being that of the list."""

    parts: tuple[StagedSnapshot, ...]

    @property
    def content_hash(self) -> str:
        """The single part's hash, or the SHA-256 of every part's hash in order."""
        if len(self.parts) == 1:
            return self.parts[0].content_hash
        return hashlib.sha256("\n".join(p.content_hash for p in self.parts).encode()).hexdigest()

    @property
    def byte_size(self) -> int:
        """Bytes of every part."""
        return sum(p.byte_size for p in self.parts)

    def key(self, dataset: str, run_id: str) -> str:
        """Where a run publishes the version: named by content and run, so it can be published
        before a version number exists, and no two runs ever share (or delete) one object; a
        manifest for several parts, whose parts lie beside it."""
        if any(part.key for part in self.parts):
            return f"{spread_folder(dataset, run_id)}/{MANIFEST}"
        name = f"{dataset}/{self.content_hash[:16]}-{run_id}"
        return f"{name}.parquet" if len(self.parts) == 1 else f"{name}/{MANIFEST}"


def spread_folder(dataset: str, run_id: str) -> str:
    """Where the workers of a run spread over several store its parts, each as it finishes
    (before the version's hash is known), and where its manifest goes."""
    return f"{dataset}/parts-{run_id}"


def drop_staged(store: SnapshotStore, part: StagedSnapshot) -> None:
    """Remove a part that will not be published: staged here, or stored by another worker."""
    if part.key is not None:
        store.delete(part.key)
    else:
        store.discard(part)


def _part_key(manifest_key: str, index: int) -> str:
    return f"{manifest_key.rsplit('/', 1)[0]}/part-{index:05d}.parquet"


def publish_version(store: SnapshotStore, staged: StagedVersion, key: str) -> None:
    """Make a staged version visible under ``key``: its parts first (those another worker
    stored stay where they are), then the manifest that names them (written last and
    atomically, so a reader never finds a part missing)."""
    if not key.endswith(f"/{MANIFEST}"):
        store.publish(staged.parts[0], key)
        return
    published: list[str] = []
    keys: list[str] = []
    try:
        for index, part in enumerate(staged.parts):
            if part.key is not None:
                keys.append(part.key)
                continue
            published.append(_part_key(key, index))
            store.publish(part, published[-1])
            keys.append(published[-1])
        entries = [
            {"key": part_key, "sha256": part.content_hash, "bytes": part.byte_size}
            for part_key, part in zip(keys, staged.parts, strict=True)
        ]
        manifest = {"format": MANIFEST_FORMAT, "content_hash": staged.content_hash}
        store.put_bytes(key, json.dumps({**manifest, "parts": entries}).encode())
    except BaseException:
        for part_key in published:
            store.delete(part_key)
        raise


def part_keys(store: SnapshotStore, key: str) -> list[str]:
    """The keys of a stored version's parts, in order (its own key for a single file)."""
    if not key.endswith(f"/{MANIFEST}"):
        return [key]
    manifest = json.loads(store.get_bytes(key))
    return [str(entry["key"]) for entry in manifest["parts"]]


def version_files(store: SnapshotStore, key: str) -> list[Path]:
    """Local files holding a stored version's parts, in order."""
    return [store.local_path(k) for k in part_keys(store, key)]


def delete_version(store: SnapshotStore, key: str) -> None:
    """Remove a published version: its parts, then its manifest."""
    if key.endswith(f"/{MANIFEST}"):
        with contextlib.suppress(FileNotFoundError):
            for part in part_keys(store, key):
                store.delete(part)
    store.delete(key)


def write_parquet(plan: pl.LazyFrame, path: Path) -> None:
    """Stream ``plan`` into a zstd Parquet file.

    Row groups have a fixed size, so the same rows give the same bytes however the frame was
    chunked (CSV and Parquet readers chunk differently); content hashes rely on that. Level 1:
    redacted data is mostly pseudonyms, which no level compresses, and level 1 writes them
    a quarter faster than the default at the same size.
    """
    plan.sink_parquet(
        path,
        compression="zstd",
        compression_level=1,
        statistics=True,
        row_group_size=ROW_GROUP_SIZE,
    )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_owned_folders(parent: Path, dead: OwnerDead) -> list[str]:
    """Remove the subfolders of ``parent`` whose owner ``dead(name, mtime)`` says is gone, and
    loose files (no current process writes any). Returns the removed file paths."""
    removed: list[str] = []
    try:
        entries = list(parent.iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        try:
            mtime = entry.lstat().st_mtime
        except FileNotFoundError:
            continue
        if entry.is_dir() and not entry.is_symlink():
            if not dead(entry.name, mtime):
                continue
            removed.extend(str(p) for p in sorted(entry.rglob("*")) if not p.is_dir())
            shutil.rmtree(entry, ignore_errors=True)
        else:
            removed.append(str(entry))
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
    return removed


def stage_file(plan: pl.LazyFrame, folder: Path) -> StagedSnapshot:
    """Stream ``plan`` into a new Parquet file in ``folder``, fsync it and hash it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.parquet"
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


class LocalSnapshotStore:
    """Snapshots as files under a local folder (``file://`` URLs or plain paths).

    Each process stages into its own ``.staging/<owner>/`` folder, so recovery can remove
    exactly the half-written files of processes that died.
    """

    STAGING = ".staging"

    def __init__(self, root: Path, owner: str = "shared") -> None:
        self.root = root
        self.url = root.as_uri()
        self.staging = root / self.STAGING / owner
        self.staging.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)  # the snapshots are redacted, but still nobody else's to read

    def stage(self, plan: pl.LazyFrame) -> StagedSnapshot:
        return stage_file(plan, self.staging)

    def publish(self, staged: StagedSnapshot, key: str) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.path.replace(target)
        _fsync_dir(target.parent)

    def discard(self, staged: StagedSnapshot) -> None:
        with contextlib.suppress(FileNotFoundError):
            staged.path.unlink()

    def delete(self, key: str) -> None:
        target = self.root / key
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        # Folders left empty go too (a staged upload's), up to the store's root.
        for folder in target.parents:
            if folder == self.root or self.root not in folder.parents:
                break
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone)
                break

    def local_path(self, key: str) -> Path:
        return self.root / key

    def uri(self, key: str) -> str:
        return (self.root / key).as_uri()

    def check_writable(self) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        probe = self.staging / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()

    def keys(self, prefix: str) -> list[str]:
        # os.walk, not rglob: a folder another process removes meanwhile is skipped, not raised.
        found = []
        for folder, _, files in os.walk(self.root / prefix):
            for name in files:
                key = (Path(folder) / name).relative_to(self.root)
                if self.STAGING not in key.parts and not name.endswith(".part"):
                    found.append(key.as_posix())
        return sorted(found)

    def sweep_staging(self, dead: OwnerDead) -> list[str]:
        return sweep_owned_folders(self.root / self.STAGING, dead)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            with partial.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            partial.replace(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    def get_bytes(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def put_file(self, key: str, path: Path) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            shutil.move(path, partial)  # a rename on the same file system
            partial.replace(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)


def _local(url: str, owner: str, work: Path) -> SnapshotStore:
    parsed = urlparse(url)
    path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(url)
    return LocalSnapshotStore(path.resolve(), owner)


def _s3(url: str, owner: str, work: Path) -> SnapshotStore:
    from gateway.object_store import ObjectSnapshotStore

    return ObjectSnapshotStore(url, owner, work)


BACKENDS: dict[str, Callable[[str, str, Path], SnapshotStore]] = {
    "file": _local,
    "": _local,
    "s3": _s3,
}


def open_store(url: str, owner: str = "shared", work: Path | None = None) -> SnapshotStore:
    """The snapshot store for ``url``, chosen by its scheme; ``owner`` names this process's
    staging area, ``work`` is a local folder a remote store stages and caches in.

    Raises:
        ValueError: no backend handles the scheme.
    """
    scheme = urlparse(url).scheme
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    try:
        backend = BACKENDS[scheme]
    except KeyError:
        known = ", ".join(sorted(k for k in BACKENDS if k))
        raise ValueError(f"no snapshot store for scheme {scheme!r} (known: {known})") from None
    return backend(url, owner, work or Path(".datagate"))
