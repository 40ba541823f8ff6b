"""Ingest runs' bookkeeping: a run is recorded with its START event before its data is read,
and ends with exactly one outcome (its version, or its refusal or failure) and the matching
event. User-chosen text recorded on a run (its source, file name, an error's detail) has its
personal data replaced first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from openlineage.client.event_v2 import RunEvent
from openlineage.client.uuid import generate_new_uuid
from sqlalchemy import update
from sqlmodel import Session, col

from gateway import metrics
from gateway.context import IngestContext
from gateway.contracts import Contract
from gateway.db import unit_of_work
from gateway.errors import (
    ContractViolation,
    DatagateError,
    InvalidRequest,
    UndeclaredPii,
    redacted_traceback,
)
from gateway.ingest_lineage import assertions, input_metrics, pii_report
from gateway.models import IngestRun, utcnow
from gateway.outbox import store_event
from gateway.problems import problem_for
from gateway.store import lock_running_run
from lineage import DatasetRef, IngestJob, ingest_fail, ingest_start
from privacy import DetectionConfig, scrub_text

if TYPE_CHECKING:
    from gateway.stages import Batch

log = logging.getLogger(__name__)


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
    services: IngestContext,
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


def scrub(services: IngestContext, contract: Contract | None, text: str) -> str:
    """User-chosen text (a source, a file name, an error detail) with its PII replaced."""
    detection = contract.detection if contract is not None else DetectionConfig()
    return scrub_text(text, services.pii_engine, detection)


def shown_filename(services: IngestContext, contract: Contract, name: str | None) -> str | None:
    """The client's file name as recorded: PII replaced, or withheld if it cannot be checked."""
    if not name:
        return None
    try:
        return scrub(services, contract, name)
    except Exception as exc:
        log.error("could not scrub a file name: %s", type(exc).__name__)
        return None


def finish_run(
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
    held = batch.holds
    if held is not None:
        run.quarantine_id = held.id
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
    held = batch.holds
    if held is not None and outcome in ("quarantined", "rejected"):
        metrics.QUARANTINE_ROWS.labels(dataset, "held").inc(held.rows)
    if outcome not in ("accepted", "matched", "quarantined"):
        return
    metrics.ROWS.labels(dataset).inc(batch.stored_rows)
    metrics.BYTES.labels(dataset).inc(batch.upload.size)
    for column in batch.pii:
        if column.spans:
            for entity, count in column.spans.items():
                metrics.PII_REDACTED.labels(entity).inc(count)
        elif column.values_redacted and column.action not in ("keep", "warn", "none"):
            metrics.PII_REDACTED.labels(column.entity or "UNKNOWN").inc(column.values_redacted)


class _Ended(Exception):
    """The run already has an outcome."""


def fail_run(
    services: IngestContext, job: IngestJob, error: DatagateError, batch: Batch | None = None
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
    held: str | None = None
    if batch is not None and batch.holds is not None:  # no row passed: all held for review
        try:
            held = batch.stash_held(services)
        except Exception as exc:
            log.error("could not store the rows run %s holds: %s", job.run_id, type(exc).__name__)
            error.extensions.pop("quarantine", None)
            assert batch.report is not None
            batch = replace(batch, report=replace(batch.report, holds=False))
    event: RunEvent = ingest_fail(
        job,
        utcnow(),
        f"{problem.title}: {error.detail}",
        assertions(batch) if batch else (),
        input_metrics(batch) if batch else None,
        held=batch.held_output() if batch is not None else None,
    )
    try:
        with unit_of_work(services.engine) as session:
            run = lock_running_run(session, job.run_id)
            if run is None:
                raise _Ended  # already has an outcome (recovery interrupted it), and its event
            if batch is not None:
                finish_run(run, batch, status, summary)
                if held is not None:
                    session.add(batch.held_batch(services, held, None))
            else:
                run.status, run.error, run.finished_at = status, summary, utcnow()
            session.add(run)
            store_event(session, event)
    except Exception as exc:
        if held is not None:
            services.snapshots.delete(held)
            error.extensions.pop("quarantine", None)
        if not isinstance(exc, _Ended):
            log.error(
                "could not record the outcome of run %s: %s", job.run_id, redacted_traceback(exc)
            )
        return
    services.lineage.notify()


def record_stage(services: IngestContext, run_id: str, stage: str) -> None:
    """The stage a run is in, for whoever follows it."""
    _update_running(services, run_id, stage=stage)


def record_progress(
    services: IngestContext, run_id: str, rows_done: int, parts_done: int, *, read: bool = False
) -> None:
    """Rows and parts of a running upload read, checked, redacted and written so far; once
    the whole upload is ``read``, its row count is known too."""
    values: dict[str, Any] = {"rows_done": rows_done, "parts_done": parts_done}
    if read:
        values["rows_total"] = rows_done
    _update_running(services, run_id, **values)


def _update_running(services: IngestContext, run_id: str, **values: Any) -> None:
    with unit_of_work(services.engine) as session:
        session.execute(
            update(IngestRun)
            .where(col(IngestRun.id) == run_id, col(IngestRun.status) == "running")
            .values(**values)
        )


def job_for_run(services: IngestContext, run: IngestRun) -> IngestJob:
    """The lineage job of a recorded run (a queued one a worker takes, one recovery ends)."""
    contract = services.catalog.get(run.dataset)
    namespace = services.settings.namespace
    if run.source:
        label = run.source
        head, sep, name = label.rpartition(":") if "://" in label else label.partition(":")
        source = DatasetRef(namespace=head, name=name) if sep else DatasetRef(namespace, label)
    else:
        source = DatasetRef(namespace=f"{namespace}.uploads", name=f"{run.dataset}/{run.id}")
    return IngestJob(
        run_id=run.id,
        namespace=namespace,
        dataset=run.dataset,
        source=source,
        owner=contract.owner if contract else None,
        kind=run.kind,
    )
