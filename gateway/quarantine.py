"""Quarantine: the rows a contract with ``on_invalid: "quarantine"`` holds back, as read (a
reviewer must be able to fix them, and a replay re-validates the originals).

Held rows are personal data at rest, so they are never written in the clear: a ``Holding``
seals them as they are found (AES-256-GCM segments, ``gateway.sealed``) under a key derived
from the PII key, the batch's id and a random seed kept only in the batch's database row. The
sealed file lives in the snapshot store; deleting the seed (a discard, an expiry, a release of
every row) leaves the file unreadable even before it is deleted.

The plain stream is a sequence of Arrow IPC frames, each prefixed by its length: frames of
held rows (the upload's columns, ``ROW_PLACE`` and ``HELD_FAILURES``), and frames of further
failures of rows already held (``ROW_PLACE`` and ``HELD_FAILURES`` only).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl

from gateway.models import QuarantineBatch, utcnow
from gateway.sealed import SealingWriter, opened
from gateway.snapshots import SnapshotStore
from gateway.uploads import UploadSpool
from gateway.validation import HELD_FAILURES, ROW_PLACE
from privacy import Finding, RedactionKey

# Not a dataset name (those start with a letter), so no dataset's objects are under it.
QUARANTINE_PREFIX = ".quarantine"
STATUSES = ("open", "replayed", "discarded", "expired")
_LENGTH = 8


def batch_key(key: RedactionKey, batch_id: str, seed: str) -> bytes:
    """The 256-bit key that seals one batch's held rows."""
    return key.derive_raw(f"quarantine:{batch_id}:{seed}")[:32]


def held_key(dataset: str, batch_id: str, revision: int, run_id: str) -> str:
    """Where a batch's held rows are stored: one object per revision of what it holds, named
    by the run that wrote it (recovery leaves a running run's object alone)."""
    return f"{QUARANTINE_PREFIX}/{dataset}/{batch_id}/held-{revision:05d}-{run_id}.sealed"


HELD_KEY_RUN = re.compile(r"/held-\d+-([0-9a-f-]{36})\.sealed$")


class Holding:
    """A batch's held rows being written: sealed frame by frame into a spool file."""

    def __init__(self, key: RedactionKey, spool: UploadSpool, batch_id: str) -> None:
        self.id = batch_id
        self.seed = os.urandom(32).hex()
        self.path, self._handle = spool.new_file(".held")
        self._writer = SealingWriter(self._handle, batch_key(key, batch_id, self.seed))
        self.rows = 0
        self.places: list[pl.Series] = []
        self.closed = False

    def add(self, frame: pl.DataFrame) -> None:
        """Seal a frame of held rows (or of further failures of rows already held)."""
        if frame.is_empty():
            return
        buffer = io.BytesIO()
        frame.write_ipc(buffer, compression="zstd")
        data = buffer.getvalue()
        self._writer.write(len(data).to_bytes(_LENGTH, "big") + data)
        if set(frame.columns) != {ROW_PLACE, HELD_FAILURES}:
            self.rows += frame.height
            self.places.append(frame.get_column(ROW_PLACE))

    def held_places(self) -> pl.Series:
        """The places in the upload of every row held so far."""
        return pl.concat([pl.Series(ROW_PLACE, [], dtype=pl.Int64), *self.places])

    def close(self) -> Path:
        """Finish the sealed file; returns its path."""
        if not self.closed:
            self._writer.close()
            self._handle.close()
            self.closed = True
        return self.path

    def discard(self) -> None:
        """Nothing is (or is any longer) to be held here: close and remove the file."""
        if not self.closed:
            self._handle.close()
            self.closed = True
        self.path.unlink(missing_ok=True)


def _frames(stream: Iterator[bytes]) -> Iterator[pl.DataFrame]:
    pending = bytearray()
    for plain in stream:
        pending += plain
        while len(pending) >= _LENGTH:
            size = int.from_bytes(pending[:_LENGTH], "big")
            if len(pending) < _LENGTH + size:
                break
            yield pl.read_ipc(io.BytesIO(bytes(pending[_LENGTH : _LENGTH + size])))
            del pending[: _LENGTH + size]
    if pending:
        raise ValueError("a held-rows file ends inside a frame")


def read_held(sealed: BinaryIO, key: bytes) -> pl.DataFrame:
    """Every held row as read, with its place and every failure of it, by place.

    Raises:
        SealBroken: the file was changed, or the key is not the one it was sealed under.
    """
    rows: list[pl.DataFrame] = []
    extra: list[pl.DataFrame] = []
    for frame in _frames(opened(sealed, key)):
        (extra if set(frame.columns) == {ROW_PLACE, HELD_FAILURES} else rows).append(frame)
    if not rows:
        return pl.DataFrame(schema={ROW_PLACE: pl.Int64})
    held = _concat(rows)
    if extra:
        every = pl.concat([held.select(ROW_PLACE, HELD_FAILURES), *extra], how="vertical_relaxed")
        merged = every.group_by(ROW_PLACE).agg(pl.col(HELD_FAILURES).explode())
        held = held.drop(HELD_FAILURES).join(merged, on=ROW_PLACE, how="left")
    return held.sort(ROW_PLACE)


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Frames of held rows with their own column types (corrections may come in another
    format); where they cannot share a type, every value becomes text."""
    try:
        return pl.concat(frames, how="diagonal_relaxed")
    except pl.exceptions.PolarsError:
        special = (ROW_PLACE, HELD_FAILURES)
        return pl.concat(
            [f.with_columns(pl.exclude(special).cast(pl.String, strict=False)) for f in frames],
            how="diagonal_relaxed",
        )


def open_held(store: SnapshotStore, batch: QuarantineBatch, key: RedactionKey) -> pl.DataFrame:
    """The rows an open batch holds (see ``read_held``)."""
    assert batch.storage_key is not None, "batch is closed"
    assert batch.key_seed is not None, "batch is closed"
    with store.local_path(batch.storage_key).open("rb") as sealed:
        return read_held(sealed, batch_key(key, batch.id, batch.key_seed))


def failure_counts(held: pl.DataFrame) -> list[dict[str, Any]]:
    """Held rows per (column, check), most first. Never a value."""
    if held.is_empty() or HELD_FAILURES not in held.columns:
        return []
    counted = (
        held.select(ROW_PLACE, HELD_FAILURES)
        .explode(HELD_FAILURES)
        .unnest(HELD_FAILURES)
        .filter(pl.col("check").is_not_null())
        .unique()
        .group_by("column", "check")
        .agg(pl.len().alias("rows"))
        .sort(["rows", "column", "check"], descending=[True, False, False], nulls_last=True)
    )
    return [
        {"column": r["column"], "check": r["check"], "rows": int(r["rows"])}
        for r in counted.iter_rows(named=True)
    ]


def new_batch(
    *,
    holding: Holding,
    storage_key: str,
    dataset: str,
    run_id: str,
    fmt: str,
    failures: list[dict[str, Any]],
    classified: dict[str, Finding],
    base_version: int | None,
    contract_version: str,
    contract_fingerprint: str,
    uploader: str,
    expire_days: int,
) -> QuarantineBatch:
    """The database row of a batch whose rows ``holding`` sealed and ``storage_key`` stores."""
    now = utcnow()
    return QuarantineBatch(
        id=holding.id,
        dataset=dataset,
        run_id=run_id,
        status="open",
        format=fmt,
        rows_total=holding.rows,
        rows_held=holding.rows,
        failures=failures,
        held_failures=failures,
        classified={label: asdict(finding) for label, finding in classified.items()},
        base_version=base_version,
        storage_key=storage_key,
        key_seed=holding.seed,
        contract_version=contract_version,
        contract_fingerprint=contract_fingerprint,
        uploader=uploader,
        created_at=now,
        expires_at=now + timedelta(days=expire_days),
        updated_at=now,
    )


def findings(batch: QuarantineBatch) -> dict[str, Finding]:
    """How the ingest classified the upload's undeclared columns (see ``new_batch``)."""
    return {label: Finding(**finding) for label, finding in (batch.classified or {}).items()}


def summary(batch: QuarantineBatch) -> dict[str, Any]:
    """What an upload's answer and its run say about the rows it held."""
    return {"id": batch.id, "rows": batch.rows_total, "failures": batch.failures}
