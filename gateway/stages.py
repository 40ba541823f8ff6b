"""The ingest stages: parse → validate → redact → version → record, each a function from one
frozen Batch to the next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl
from sqlmodel import Session

from gateway.contracts import Contract
from gateway.db import unit_of_work
from gateway.decoding import DecodeLimits, unwrap
from gateway.errors import ContractViolation, DatagateError, Interrupted, UndeclaredPii
from gateway.formats import detect_format, read_frame
from gateway.ingest_lineage import input_metrics, pii_report, stored_output
from gateway.models import DatasetVersion, utcnow
from gateway.outbox import store_event
from gateway.runs import finish_run, source_label
from gateway.services import Services
from gateway.snapshots import StagedSnapshot
from gateway.store import dataset_by_name, lock_dataset, lock_running_run, version_by_hash
from gateway.uploads import ReceivedUpload, UploadSpool
from gateway.validation import ValidationReport, validate_frame
from lineage import IngestJob, ingest_complete
from privacy import ColumnOutcome, plan_redaction, scan_texts, scrub_column_names

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """One upload on its way through the stages; each stage returns a new Batch."""

    job: IngestJob
    contract: Contract
    upload: ReceivedUpload
    spool: UploadSpool
    requested_format: str | None
    uploader: str
    filename: str | None = None  # the client's file name, PII replaced: what is stored
    payload: Path | None = None
    format: str | None = None
    compression: str | None = None
    frame: pl.DataFrame | None = None
    redacted: pl.LazyFrame | None = None
    report: ValidationReport | None = None
    pii: tuple[ColumnOutcome, ...] = ()
    snapshot: StagedSnapshot | None = None
    # Set by a stage that refuses the upload; the orchestrator raises it after the stage, so the
    # refused Batch (with its report) is the one recorded on the run.
    refusal: DatagateError | None = None
    version: DatasetVersion | None = None
    created: bool = False
    # Shared by every Batch of one run: the orchestrator adds each stage's duration.
    timings: dict[str, float] = field(default_factory=dict)

    def require_frame(self) -> pl.DataFrame:
        """The frame; a stage that needs it runs after parse."""
        assert self.frame is not None, "stage ran before parse"
        return self.frame


def checkpoint(services: Services, name: str) -> None:
    """Crash tests only: with ``DATAGATE_DEBUG_HANG_AT=<name>`` the ingest stops here for good,
    so a test can SIGKILL the process at a known point (before a stage, or ``version:staged``,
    ``record:published``). Refused in production mode."""
    if services.settings.debug_hang_at != name:
        return
    log.warning("run reached checkpoint %s; hanging (DATAGATE_DEBUG_HANG_AT)", name)
    while True:
        time.sleep(3600)


def parse(batch: Batch, services: Services) -> Batch:
    """Unwrap compression, detect the format and read the upload into a frame, within the
    decoding budget (bytes, rows, columns, nesting depth)."""
    settings = services.settings
    limits = DecodeLimits(
        bytes=settings.max_decoded_bytes,
        rows=settings.max_rows,
        columns=settings.max_columns,
        depth=settings.max_nesting_depth,
    )
    payload, layers = unwrap(batch.upload.path, batch.spool, limits)
    fmt = detect_format(
        payload, batch.requested_format, batch.upload.content_type, batch.upload.filename
    )
    frame = read_frame(payload, fmt, batch.contract.dtypes, limits)
    # Column and field names come from the data too: PII in them is replaced before anything
    # (reports, schemas, events, metrics) sees them. The contract's own columns are kept.
    frame, renamed = scrub_column_names(
        frame, services.pii_engine, batch.contract.detection, keep=batch.contract.dtypes
    )
    if renamed:
        log.warning(
            "run %s: personal data in %d column name(s) replaced", batch.job.run_id, renamed
        )
    compression = "+".join(layers) or None
    return replace(batch, payload=payload, format=fmt, compression=compression, frame=frame)


def validate(batch: Batch, services: Services) -> Batch:
    """Cast to the contract's dtypes and run every check; a failing upload stops after this."""
    contract = batch.contract
    engine = services.pii_engine

    def scrub_values(values: list[str]) -> list[str]:
        return scan_texts(values, engine, contract.detection)

    frame, report = validate_frame(
        batch.require_frame(),
        contract,
        scrub_values,
        from_text=batch.format == "csv",
        from_json=batch.format in ("ndjson", "json"),
    )
    refusal = None
    if not report.valid:
        refusal = ContractViolation(
            f"the upload violates contract {batch.contract.dataset} {batch.contract.version}: "
            f"{len(report.failures)} failing check(s)",
            report=report.as_dict(),
        )
    return replace(batch, frame=frame, report=report, refusal=refusal)


def redact(batch: Batch, services: Services) -> Batch:
    """Plan the redaction: declared columns, free text, and PII found in undeclared columns."""
    contract = batch.contract
    plan, outcomes = plan_redaction(
        batch.require_frame(),
        contract.policies,
        services.redaction_key,
        engine=services.pii_engine,
        detection=contract.detection,
        undeclared=contract.undeclared_pii,
    )
    refused = [o for o in outcomes if o.action == "reject"]
    refusal = None
    if refused:
        refusal = UndeclaredPii(
            f"personal data found in {len(refused)} column(s) that contract "
            f"{contract.dataset} {contract.version} does not declare",
            report=pii_report(tuple(refused)),
        )
    for outcome in outcomes:
        if outcome.action == "warn":
            log.warning(
                "run %s: column %s looks like %s (share %.2f of %d sampled values); kept (warn)",
                batch.job.run_id,
                outcome.column,
                outcome.entity,
                outcome.share or 0.0,
                outcome.sample_size or 0,
            )
    return replace(batch, redacted=plan, pii=tuple(outcomes), refusal=refusal)


def version(batch: Batch, services: Services) -> Batch:
    """Stream the redacted frame into a durable, hashed, not yet visible Parquet file."""
    assert batch.redacted is not None, "version ran before redact"
    batch = replace(batch, snapshot=services.snapshots.stage(batch.redacted))
    checkpoint(services, "version:staged")
    return batch


def snapshot_key(dataset: str, content_hash: str, run_id: str) -> str:
    """Where a run publishes its snapshot: named by content and run, so it can be published
    before a version number exists, and no two runs ever share (or delete) one object."""
    return f"{dataset}/{content_hash[:16]}-{run_id}.parquet"


def record(batch: Batch, services: Services) -> Batch:
    """Publish the snapshot and profile the data, then number and record the version with the
    run and its COMPLETE event in one short transaction: the dataset lock (on SQLite the
    database's write lock) is held for the bookkeeping only, never for an upload or a scan."""
    started = time.perf_counter()
    snapshot = batch.snapshot
    assert snapshot is not None
    assert batch.report is not None
    assert batch.redacted is not None
    rows = batch.require_frame().height
    schema = batch.redacted.collect_schema()
    profile = input_metrics(batch)
    with Session(services.engine) as session:
        dataset_row = dataset_by_name(session, batch.contract.dataset)
        known = version_by_hash(session, dataset_row, snapshot.content_hash)
    key = snapshot_key(batch.contract.dataset, snapshot.content_hash, batch.job.run_id)
    published: str | None = None
    if known is None:  # identical data already stored needs no new object
        services.snapshots.publish(snapshot, key)
        published = key
        checkpoint(services, "record:published")
    try:
        with unit_of_work(services.engine) as session:
            dataset = lock_dataset(session, batch.contract.dataset)
            run = lock_running_run(session, batch.job.run_id)
            if run is None:
                raise Interrupted(
                    "this ingest was marked interrupted while it ran; nothing was stored, "
                    "upload again"
                )
            existing = version_by_hash(session, dataset, snapshot.content_hash)
            if existing is not None or published is None:
                assert existing is not None, "a version with this content was deleted"
                stored, created = existing, False
            else:
                number = dataset.latest_version + 1
                stored = DatasetVersion(
                    dataset_id=dataset.id,  # type: ignore[arg-type]
                    number=number,
                    content_hash=snapshot.content_hash,
                    row_count=rows,
                    byte_size=snapshot.byte_size,
                    storage_key=key,
                    schema_fields=[{"name": n, "type": str(t)} for n, t in schema.items()],
                    contract_name=batch.contract.dataset,
                    contract_version=batch.contract.version,
                    contract_fingerprint=batch.contract.fingerprint,
                    source=source_label(batch.job.source),
                    uploader=batch.uploader,
                    run_id=batch.job.run_id,
                    validation_summary=batch.report.summary(),
                    pii_summary=pii_report(batch.pii),
                    created_at=utcnow(),
                )
                dataset.latest_version = number
                session.add(dataset)
                session.add(stored)
                created = True
            batch = replace(batch, version=stored, created=created)
            event = ingest_complete(batch.job, utcnow(), stored_output(batch, services, profile))
            # The run row is written in this transaction, so its "record" time excludes the commit.
            batch.timings["record"] = time.perf_counter() - started
            finish_run(run, batch, "accepted")
            session.add(run)
            store_event(session, event)
    except BaseException:
        if published is not None:
            services.snapshots.delete(published)  # this run's own object: nothing refers to it
        raise
    if published is not None and not created:
        services.snapshots.delete(published)  # an identical upload got there first
    services.lineage.notify()
    return batch


STAGES: tuple[tuple[str, Callable[[Batch, Services], Batch]], ...] = (
    ("parse", parse),
    ("validate", validate),
    ("redact", redact),
    ("version", version),
    ("record", record),
)
