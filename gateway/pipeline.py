"""The ingest pipeline: parse → validate → redact → version → record, over one frozen Batch.

``start_run`` records the run and its START event before the body is read; ``run_pipeline``
passes a Batch through the stages and records the outcome (version, or rejection/failure)
together with the COMPLETE or FAIL event in one transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl
from openlineage.client.event_v2 import RunEvent
from openlineage.client.uuid import generate_new_uuid
from sqlalchemy import update
from sqlmodel import Session, col

from gateway import metrics
from gateway.contracts import Contract
from gateway.db import unit_of_work
from gateway.decoding import DecodeLimits, unwrap
from gateway.errors import (
    ContractViolation,
    DatagateError,
    Interrupted,
    InvalidRequest,
    StageFailed,
    UndeclaredPii,
    redacted_traceback,
)
from gateway.formats import detect_format, read_frame
from gateway.models import DatasetVersion, IngestRun, utcnow
from gateway.outbox import store_event
from gateway.problems import problem_for
from gateway.profiling import profile_frame
from gateway.services import Services
from gateway.snapshots import StagedSnapshot
from gateway.store import dataset_by_name, lock_dataset, lock_running_run, version_by_hash
from gateway.uploads import ReceivedUpload, UploadSpool
from gateway.validation import ValidationReport, validate_frame
from lineage import (
    AssertionResult,
    ColumnMapping,
    DatasetRef,
    IngestJob,
    InputMetrics,
    SchemaField,
    StoredOutput,
    ingest_complete,
    ingest_fail,
    ingest_start,
)
from privacy import (
    ColumnOutcome,
    DetectionConfig,
    plan_redaction,
    scan_texts,
    scrub_column_names,
    scrub_text,
)

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


@dataclass(frozen=True)
class IngestOutcome:
    """What an accepted upload produced: the version, and whether this upload created it."""

    run_id: str
    version: DatasetVersion
    created: bool


def parse_source(source: str | None, namespace: str, dataset: str, run_id: str) -> DatasetRef:
    """The OpenLineage input of an ingest: ``?source=<namespace>:<name>`` or the upload itself.

    A URL (``s3://bucket/key``) splits into namespace ``s3://bucket`` and name ``key``;
    credentials in it are dropped.

    Raises:
        InvalidRequest: ``source`` is neither ``namespace:name`` nor a URL.
    """
    if not source:
        return DatasetRef(namespace=f"{namespace}.uploads", name=f"{dataset}/{run_id}")
    if "://" in source:
        parts = urlsplit(source)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        name = parts.path.lstrip("/")
        if not parts.scheme or not (host or name):
            raise InvalidRequest("source is not a valid URL")
        return DatasetRef(namespace=f"{parts.scheme}://{host}", name=name or "/")
    namespace_part, sep, name_part = source.partition(":")
    if not sep or not namespace_part or not name_part:
        raise InvalidRequest("source must be '<namespace>:<name>' or a URL")
    return DatasetRef(namespace=namespace_part, name=name_part)


def source_label(ref: DatasetRef) -> str:
    """``namespace:name`` of an input, as stored on runs and versions."""
    return f"{ref.namespace}:{ref.name}"


def new_run_id() -> str:
    """A run id: a UUIDv7, so ids sort by creation."""
    return str(generate_new_uuid())


def start_run(
    services: Services,
    contract: Contract,
    source: str | None,
    uploader: str,
    request_id: str | None = None,
    *,
    run_id: str | None = None,
    queued: Callable[[Session], None] | None = None,
) -> IngestJob:
    """Record a running ingest and its START event; with ``queued``, a queued one, and
    ``queued`` enqueues its job in the same transaction.

    Raises:
        InvalidRequest: ``source`` is malformed.
    """
    run_id = run_id or new_run_id()
    given = parse_source(source, services.settings.namespace, contract.dataset, run_id)
    if source:
        # Where the data came from is user text: it may name a person (an export's file name).
        given = DatasetRef(
            namespace=scrub(services, contract, given.namespace),
            name=scrub(services, contract, given.name),
        )
    job = IngestJob(
        run_id=run_id,
        namespace=services.settings.namespace,
        dataset=contract.dataset,
        source=given,
        owner=contract.owner,
        request_id=request_id,
    )
    now = utcnow()
    event = ingest_start(job, now)
    with unit_of_work(services.engine) as session:
        session.add(
            IngestRun(
                id=run_id,
                dataset=contract.dataset,
                status="queued" if queued else "running",
                uploader=uploader,
                source=source_label(job.source) if source else None,
                contract_name=contract.dataset,
                contract_version=contract.version,
                contract_fingerprint=contract.fingerprint,
                started_at=now,
                instance=None if queued else services.instance.id,
            )
        )
        store_event(session, event)
        if queued is not None:
            queued(session)
    services.lineage.notify()
    return job


def scrub(services: Services, contract: Contract | None, text: str) -> str:
    """User-chosen text (a source, a file name, an error detail) with its PII replaced."""
    detection = contract.detection if contract is not None else DetectionConfig()
    return scrub_text(text, services.pii_engine, detection)


def shown_filename(services: Services, contract: Contract, name: str | None) -> str | None:
    """The client's file name as recorded: PII replaced, or withheld if it cannot be checked."""
    if not name:
        return None
    try:
        return scrub(services, contract, name)
    except Exception as exc:
        log.error("could not scrub a file name: %s", type(exc).__name__)
        return None


# -- stages -------------------------------------------------------------------------------


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
    profile = _metrics(batch)
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
            event = ingest_complete(batch.job, utcnow(), _stored_output(batch, services, profile))
            # The run row is written in this transaction, so its "record" time excludes the commit.
            batch.timings["record"] = time.perf_counter() - started
            _finish_run(run, batch, "accepted")
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


# -- orchestration ------------------------------------------------------------------------


def pii_report(outcomes: tuple[ColumnOutcome, ...]) -> dict[str, Any]:
    """Per column: entity, action, method, counts and detection evidence. Never a value."""
    columns = []
    for o in outcomes:
        column: dict[str, Any] = {
            "column": o.column,
            "entity": o.entity or None,
            "action": o.action,
            "method": o.method,
            "values_redacted": o.values_redacted,
        }
        optional = {
            "justification": o.justification,
            "spans": o.spans or None,
            "sample_size": o.sample_size,
            "share": o.share,
            "score": o.score,
            "model": o.model,
        }
        column.update({k: v for k, v in optional.items() if v is not None})
        columns.append(column)
    return {"columns": columns}


def _assertions(batch: Batch) -> list[AssertionResult]:
    if batch.report is None:
        return []
    return [
        AssertionResult(assertion=a["assertion"], success=a["success"], column=a["column"])
        for a in batch.report.assertions
    ]


def _stored_output(batch: Batch, services: Services, profile: InputMetrics | None) -> StoredOutput:
    stored = batch.version
    assert stored is not None
    return StoredOutput(
        version=stored.number,
        fields=[SchemaField(name=f["name"], type=f["type"]) for f in stored.schema_fields],
        row_count=stored.row_count,
        size_bytes=stored.byte_size,
        storage_uri=services.snapshots.uri(stored.storage_key),
        assertions=_assertions(batch),
        metrics=profile,
        columns=_column_mappings(stored, batch.pii),
        pii=pii_report(batch.pii)["columns"],
    )


def _metrics(batch: Batch) -> InputMetrics | None:
    return None if batch.frame is None else profile_frame(batch.frame, batch.upload.size)


def _column_mappings(
    stored: DatasetVersion, outcomes: tuple[ColumnOutcome, ...]
) -> list[ColumnMapping]:
    # Every stored column comes from the upload column of the same name; redacted ones say how.
    actions = {o.column: o.action for o in outcomes if o.action not in ("none", "warn")}
    return [
        ColumnMapping(column=f["name"], source_column=f["name"], action=actions.get(f["name"]))
        for f in stored.schema_fields
    ]


def _finish_run(
    run: IngestRun, batch: Batch, status: str, error: dict[str, Any] | None = None
) -> None:
    run.status = status
    run.filename = batch.filename
    run.format = batch.format
    run.bytes_received = batch.upload.size
    run.stage_timings = {name: round(seconds, 6) for name, seconds in batch.timings.items()}
    run.validation_report = batch.report.as_dict() if batch.report is not None else None
    run.pii_report = pii_report(batch.pii) if batch.pii else None
    run.error = error
    if batch.version is not None:
        run.version = batch.version.number
        run.created_version = batch.created
    run.finished_at = utcnow()


def observe(dataset: str, outcome: str, batch: Batch | None) -> None:
    """Count one finished upload in the Prometheus metrics."""
    metrics.UPLOADS.labels(dataset, outcome).inc()
    if batch is None:
        return
    for stage, seconds in batch.timings.items():
        metrics.STAGE_SECONDS.labels(stage).observe(seconds)
    if batch.report is not None:
        # Label values only from bounded sets: the contract's own columns and checks.
        contract = batch.contract
        known_checks = contract.check_names
        for column, check in {(f["column"], f["check"]) for f in batch.report.failures}:
            metrics.VALIDATION_FAILURES.labels(
                contract.dataset,
                column if column in contract.dtypes else metrics.OTHER,
                check if check in known_checks else metrics.OTHER,
            ).inc()
    if outcome not in ("accepted", "matched"):
        return
    metrics.ROWS.labels(dataset).inc(batch.require_frame().height)
    metrics.BYTES.labels(dataset).inc(batch.upload.size)
    for column in batch.pii:
        if column.spans:
            for entity, count in column.spans.items():
                metrics.PII_REDACTED.labels(entity).inc(count)
        elif column.values_redacted and column.action not in ("keep", "warn", "none"):
            metrics.PII_REDACTED.labels(column.entity or "UNKNOWN").inc(column.values_redacted)


def fail_run(
    services: Services, job: IngestJob, error: DatagateError, batch: Batch | None = None
) -> None:
    """Record a rejected or failed ingest and its FAIL event; never raises."""
    status = "rejected" if isinstance(error, ContractViolation | UndeclaredPii) else "failed"
    observe(job.dataset, status, batch)
    # A reader's or a check's words may quote the upload: the caller, the run and the FAIL
    # event all get the detail with its PII replaced.
    try:
        error.detail = scrub(services, services.catalog.get(job.dataset), error.detail)
    except Exception as exc:  # the detector is gone: withhold the detail rather than leak it
        log.error("could not scrub an error detail: %s", type(exc).__name__)
        error.detail = problem_for(error).title
    problem = problem_for(error)
    summary = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": error.detail,
    }
    event: RunEvent = ingest_fail(
        job,
        utcnow(),
        f"{problem.title}: {error.detail}",
        _assertions(batch) if batch else (),
        _metrics(batch) if batch else None,
    )
    try:
        with unit_of_work(services.engine) as session:
            run = lock_running_run(session, job.run_id)
            if run is None:
                return  # already has an outcome (recovery interrupted it), and its FAIL event
            if batch is not None:
                _finish_run(run, batch, status, summary)
            else:
                run.status, run.error, run.finished_at = status, summary, utcnow()
            session.add(run)
            store_event(session, event)
    except Exception as exc:
        log.error("could not record the outcome of run %s: %s", job.run_id, redacted_traceback(exc))
        return
    services.lineage.notify()


def _record_stage(services: Services, run_id: str, stage: str, rows: int | None) -> None:
    """The stage a run is in and, once parsed, its row count, for whoever follows it."""
    with unit_of_work(services.engine) as session:
        session.execute(
            update(IngestRun)
            .where(col(IngestRun.id) == run_id, col(IngestRun.status) == "running")
            .values(stage=stage, rows_total=rows)
        )


def run_pipeline(
    services: Services,
    job: IngestJob,
    contract: Contract,
    upload: ReceivedUpload,
    spool: UploadSpool,
    requested_format: str | None,
    uploader: str,
    *,
    followed: bool = False,
) -> IngestOutcome:
    """Pass the upload through every stage and record the outcome (and, when the run is
    ``followed`` — asynchronous — each stage as it starts).

    Raises:
        DatagateError: the upload was rejected or failed (already recorded on the run);
            an unexpected error is wrapped in StageFailed naming the stage.
    """
    batch = Batch(
        job=job,
        contract=contract,
        upload=upload,
        spool=spool,
        requested_format=requested_format,
        uploader=uploader,
        filename=shown_filename(services, contract, upload.filename),
    )
    try:
        for name, stage in STAGES:
            checkpoint(services, name)
            if followed:
                rows = None if batch.frame is None else batch.frame.height
                _record_stage(services, job.run_id, name, rows)
            started = time.perf_counter()
            try:
                batch = stage(batch, services)
            except DatagateError:
                raise
            except Exception as exc:
                raise StageFailed(name, exc) from exc
            finally:
                batch.timings[name] = time.perf_counter() - started
            if batch.refusal is not None:
                raise batch.refusal
    except DatagateError as error:
        if isinstance(error, StageFailed):
            cause = error.__cause__ or error
            log.error(
                "run %s failed in stage %s: %s", job.run_id, error.stage, redacted_traceback(cause)
            )
        fail_run(services, job, error, batch)
        raise
    finally:
        if batch.snapshot is not None and not batch.created:
            services.snapshots.discard(batch.snapshot)
    assert batch.version is not None
    observe(job.dataset, "accepted" if batch.created else "matched", batch)
    return IngestOutcome(run_id=job.run_id, version=batch.version, created=batch.created)
