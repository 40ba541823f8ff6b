"""Metadata tables. Schema changes go through Alembic migrations in ``gateway/migrations``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

# Version numbers are 32-bit integer columns; larger ones in requests are refused (400).
MAX_VERSION = 2**31 - 1


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time as timezone-aware UTC (SQLite hands back naive values, stored in UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A moment as timezone-aware UTC on every database: stored in UTC, and read back with its
    offset even from SQLite, which keeps none (so no API response, report or event ever shows
    a naive time)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None and value.tzinfo else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def _json_column() -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=True))


class Dataset(SQLModel, table=True):
    """A dataset governed by one contract; ``latest_version`` allocates version numbers."""

    __tablename__ = "dataset"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=200)
    latest_version: int = 0
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    # The version each new one's drift is also measured against (None: the previous only).
    drift_reference: int | None = None


class ContractVersion(SQLModel, table=True):
    """A contract definition as seen at some start-up, identified by its fingerprint."""

    __tablename__ = "contract_version"
    __table_args__ = (UniqueConstraint("name", "fingerprint"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, max_length=200)
    version: str = Field(max_length=100)
    fingerprint: str = Field(max_length=64)
    owner: str | None = Field(default=None, max_length=200)
    source_file: str = Field(max_length=1000)
    definition: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # The contract file's code, as loaded (the code is the contract).
    source: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # A keyed MAC over name, fingerprint and source (key derived from the PII key, never in the
    # database): recorded code is executed again only if it is the code that was loaded.
    source_mac: str | None = Field(default=None, max_length=64)
    first_seen_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    # The last start-up that loaded this version: it was active from first_seen_at until a
    # later version's first_seen_at.
    last_active_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )


class IngestRun(SQLModel, table=True):
    """One upload's journey through the pipeline, kept whatever its outcome."""

    __tablename__ = "ingest_run"

    id: str = Field(primary_key=True, max_length=36)
    dataset: str = Field(index=True, max_length=200)
    status: str = Field(index=True, max_length=20)
    # The stage running now (parse, validate…), or the last one reached.
    stage: str | None = Field(default=None, max_length=40)
    rows_total: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # Rows and parts of the upload read, checked, redacted and written so far.
    rows_done: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    parts_done: int | None = None
    uploader: str = Field(max_length=200)
    # The gateway process running the ingest; recovery fails the runs of dead processes.
    instance: str | None = Field(default=None, max_length=32)
    source: str | None = Field(default=None, max_length=1000)
    filename: str | None = Field(default=None, max_length=1000)
    format: str | None = Field(default=None, max_length=20)
    bytes_received: int | None = Field(default=None, sa_column=Column(BigInteger))
    contract_name: str | None = Field(default=None, max_length=200)
    contract_version: str | None = Field(default=None, max_length=100)
    contract_fingerprint: str | None = Field(default=None, max_length=64)
    version: int | None = None
    created_version: bool = False
    # "ingest" (an upload), or "replay" / "correction" of a quarantine batch.
    kind: str = Field(default="ingest", max_length=20)
    # The quarantine batch the run held rows in (an ingest) or released rows from.
    quarantine_id: str | None = Field(default=None, index=True, max_length=36)
    stage_timings: dict[str, Any] | None = _json_column()
    validation_report: dict[str, Any] | None = _json_column()
    pii_report: dict[str, Any] | None = _json_column()
    error: dict[str, Any] | None = _json_column()
    started_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )


class IngestPart(SQLModel, table=True):
    """One part of an asynchronous upload spread over workers (``gateway.spread``): any worker
    takes it (``queued`` → ``running``, naming its process), redacts and stores it (``done``);
    a part whose worker died is queued again. Counts and evidence only, never a value."""

    __tablename__ = "ingest_part"

    run_id: str = Field(foreign_key="ingest_run.id", primary_key=True, max_length=36)
    # A run queued again after its coordinating worker died starts its parts afresh.
    attempt: int = Field(primary_key=True)
    index: int = Field(primary_key=True)
    status: str = Field(index=True, max_length=20)  # queued, running, done, failed, cancelled
    instance: str | None = Field(default=None, max_length=32)
    rows: int = Field(sa_column=Column(BigInteger, nullable=False))
    taken: int = 0  # how many times a worker took it
    output_key: str | None = Field(default=None, max_length=1000)
    content_hash: str | None = Field(default=None, max_length=64)
    byte_size: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # The contract and classification of undeclared text it is redacted with (no value).
    plan: dict[str, Any] | None = _json_column()
    outcomes: list[dict[str, Any]] | None = _json_column()
    error: str | None = Field(default=None, max_length=200)
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class DatasetVersion(SQLModel, table=True):
    """An immutable, accepted snapshot of a dataset."""

    __tablename__ = "dataset_version"
    __table_args__ = (
        UniqueConstraint("dataset_id", "number"),
        # Unique among live versions only (``gateway.store.version_by_hash``, under the dataset
        # lock): the data of a tombstone is gone, so the same data may be stored again.
        Index("ix_dataset_version_content_hash", "dataset_id", "content_hash"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True)
    number: int
    content_hash: str = Field(max_length=64)
    row_count: int = Field(sa_column=Column(BigInteger, nullable=False))
    byte_size: int = Field(sa_column=Column(BigInteger, nullable=False))
    storage_key: str = Field(max_length=1000)
    schema_fields: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    contract_name: str = Field(max_length=200)
    contract_version: str = Field(max_length=100)
    contract_fingerprint: str = Field(max_length=64)
    source: str | None = Field(default=None, max_length=1000)
    uploader: str = Field(max_length=200)
    run_id: str = Field(foreign_key="ingest_run.id", max_length=36)
    validation_summary: dict[str, Any] | None = _json_column()
    pii_summary: dict[str, Any] | None = _json_column()
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    # Set when the version's data was deleted (retention, erasure); the row stays.
    deleted_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True, index=True)
    )
    # Why, by whom, what replaced it, which stored keys went (``gateway.lifecycle``).
    tombstone: dict[str, Any] | None = _json_column()
    # An admin's hold: retention never removes the version ({by, at, reason}).
    hold: dict[str, Any] | None = _json_column()
    # The claim of the models trained on it released: retention may remove it ({by, at, reason}).
    released: dict[str, Any] | None = _json_column()
    # The drift report against the previous (and the pinned reference) version.
    drift: dict[str, Any] | None = _json_column()


class ErasureRequest(SQLModel, table=True):
    """One subject erasure, recorded by a keyed digest of the identifiers (never the raw
    ones): what it found and did."""

    __tablename__ = "erasure_request"

    id: str = Field(primary_key=True, max_length=36)
    digest: str = Field(index=True, max_length=64)
    requested_by: str = Field(max_length=200)
    override_holds: bool = False
    outcome: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class ModelFlag(SQLModel, table=True):
    """A model version that needs retraining: data it was trained on was erased."""

    __tablename__ = "model_flag"

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(index=True, max_length=1000)
    model_version: str | None = Field(default=None, max_length=1000)
    reason: str = Field(max_length=40)
    detail: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    erasure_id: str | None = Field(default=None, max_length=36)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class LineageEvent(SQLModel, table=True):
    """An OpenLineage event: Datagate's own (outbox, delivered later) or accepted from outside."""

    __tablename__ = "lineage_event"

    id: int | None = Field(default=None, primary_key=True)
    origin: str = Field(default="datagate", max_length=20)
    event_kind: str = Field(default="RunEvent", max_length=20)
    run_id: str | None = Field(default=None, index=True, max_length=36)
    event_type: str | None = Field(default=None, max_length=20)
    job_namespace: str | None = Field(default=None, max_length=1000)
    job_name: str | None = Field(default=None, max_length=1000)
    event_time: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    delivered_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True, index=True)
    )
    delivery_attempts: int = 0
    next_attempt_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )


class LineageEdge(SQLModel, table=True):
    """One dataset read or written by one job run, with the dataset version when known."""

    __tablename__ = "lineage_edge"
    __table_args__ = (
        Index("ix_lineage_edge_dataset", "dataset", "direction"),
        Index("ix_lineage_edge_job", "job", "direction"),
        Index("ix_lineage_edge_run", "run_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="lineage_event.id")
    run_id: str | None = Field(default=None, max_length=36)
    job: str = Field(max_length=1100)
    dataset: str = Field(max_length=1100)
    direction: str = Field(max_length=3)
    dataset_version: str | None = Field(default=None, max_length=200)


class GatewayInstance(SQLModel, table=True):
    """A running gateway process; its heartbeat tells the others it is alive."""

    __tablename__ = "gateway_instance"

    id: str = Field(primary_key=True, max_length=32)
    host: str = Field(max_length=255)
    pid: int
    started_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    heartbeat_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class ApiKey(SQLModel, table=True):
    """An API key: only its SHA-256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_key"

    id: str = Field(primary_key=True, max_length=32)
    key_hash: str = Field(unique=True, index=True, max_length=64)
    name: str = Field(max_length=200)
    role: str = Field(max_length=20)
    datasets: list[str] | None = _json_column()
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )


class AuditEntry(SQLModel, table=True):
    """One line of the append-only audit trail; each line's keyed MAC covers the previous one."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_actor", "actor"),
        Index("ix_audit_log_dataset", "dataset"),
        Index("ix_audit_log_at", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(unique=True)
    at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    actor: str = Field(max_length=200)
    role: str | None = Field(default=None, max_length=20)
    action: str = Field(max_length=300)
    target: str | None = Field(default=None, max_length=1000)
    dataset: str | None = Field(default=None, max_length=200)
    outcome: int
    request_id: str = Field(max_length=100)
    client: str | None = Field(default=None, max_length=100)
    # Refused anonymous requests beyond the per-minute limit are counted into one entry.
    count: int = 1
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class QuarantineBatch(SQLModel, table=True):
    """Rows of one upload a quarantining contract held back, sealed in the snapshot store
    under a key derived from the PII key and this row's ``key_seed`` (never stored with the
    data). Closing the batch (replayed, discarded, expired) destroys the seed and the data;
    the row stays as a tombstone: counts, the checks that failed, who closed it and when."""

    __tablename__ = "quarantine_batch"

    id: str = Field(primary_key=True, max_length=36)
    dataset: str = Field(index=True, max_length=200)
    run_id: str = Field(foreign_key="ingest_run.id", max_length=36)
    status: str = Field(index=True, max_length=20)  # open, replayed, discarded, expired
    format: str = Field(max_length=20)  # the upload's, for reading the held values again
    rows_total: int = Field(sa_column=Column(BigInteger, nullable=False))
    rows_held: int = Field(sa_column=Column(BigInteger, nullable=False))
    rows_released: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    rows_discarded: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    # Failing rows per (column, check): as held first, and as held now. Never a value.
    failures: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    held_failures: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    # How the ingest classified undeclared columns (evidence only), so released rows are
    # redacted as the version's other rows were.
    classified: dict[str, Any] | None = _json_column()
    # The version holding the upload's valid rows (and those released so far), if any.
    base_version: int | None = None
    storage_key: str | None = Field(default=None, max_length=1000)
    key_seed: str | None = Field(default=None, max_length=64)
    revision: int = 0
    contract_version: str = Field(max_length=100)
    contract_fingerprint: str = Field(max_length=64)
    uploader: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    closed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    closed_by: str | None = Field(default=None, max_length=200)
    close_reason: str | None = Field(default=None, max_length=1000)


class Revalidation(SQLModel, table=True):
    """A revalidation too large to answer while the client waits: a contract version run
    against stored versions of its dataset by a worker. The result holds reports as an upload's
    do (row numbers, counts, scrubbed examples), never a raw PII value."""

    __tablename__ = "revalidation"

    id: str = Field(primary_key=True, max_length=36)
    dataset: str = Field(index=True, max_length=200)
    contract_version: str = Field(max_length=100)
    contract_fingerprint: str = Field(max_length=64)
    versions: list[int] = Field(sa_column=Column(JSON, nullable=False))
    rows: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: str = Field(index=True, max_length=20)  # queued, running, done, failed
    attempts: int = 0
    instance: str | None = Field(default=None, max_length=32)
    requested_by: str = Field(max_length=200)
    result: dict[str, Any] | None = _json_column()
    error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    started_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True)
    )


class UiSession(SQLModel, table=True):
    """A web console session, signed in with an API key: the cookie holds a random token, the
    row only its SHA-256. The key is looked up on every request, so revoking it (or its
    expiry) ends the session."""

    __tablename__ = "ui_session"

    id: str = Field(primary_key=True, max_length=64)  # SHA-256 of the cookie's token
    # ``admin:<digest>``: DATAGATE_ADMIN_KEY as it was at sign-in (None: from before that rule).
    key_id: str | None = Field(default=None, max_length=32)
    csrf: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))
