"""Run a contract (the one loaded now, or any recorded version) against stored versions.

Stored data is redacted: a column with a PII policy holds pseudonyms, masks or placeholders, or
is gone (``drop``), so its checks cannot be re-run. Those are reported per check as "not
checkable on redacted data" and never counted as passed; every other check runs exactly as at
upload (the same chunked validation), part by part, in bounded memory.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlmodel import Session, col, func, select

from gateway.contracts import ColumnSpec, Contract
from gateway.db import unit_of_work
from gateway.errors import Conflict, DatagateError, TooBusy
from gateway.models import ContractVersion, DatasetVersion, Revalidation, as_utc, utcnow
from gateway.problems import problem_for
from gateway.snapshots import version_files
from gateway.store import dataset_by_name, live_version, lock_dataset, restore_contract
from gateway.validation import ChunkedValidation
from privacy import PiiEngine, scan_texts

if TYPE_CHECKING:
    from gateway.context import IngestContext, WorkerContext

log = logging.getLogger(__name__)

NOT_CHECKABLE = "not checkable on redacted data"
_UNREDACTED = ("none", "keep", "warn")


def redacted_columns(pii_summary: dict[str, Any] | None) -> dict[str, str]:
    """The columns a version stores redacted (from its PII summary), with the action
    (``drop``: not stored)."""
    columns = (pii_summary or {}).get("columns") or []
    return {
        str(c["column"]): str(c["action"])
        for c in columns
        if c.get("action") not in _UNREDACTED and c.get("column")
    }


def _unchecked(
    contract: Contract, redacted: dict[str, str], stored: dict[str, pl.DataType]
) -> Contract:
    """``contract`` without the checks of redacted columns: each is any text, optional."""
    checked = copy.deepcopy(contract.checked_schema)
    reporting = copy.deepcopy(contract.reporting_schema)
    specs: list[ColumnSpec] = []
    for spec in contract.columns:
        if spec.name not in redacted or spec.regex:
            specs.append(spec)
            continue
        dtype = stored.get(spec.name, pl.String())
        specs.append(
            replace(
                spec,
                dtype=dtype,
                nullable=True,
                unique=False,
                checks=(),
                coerce=False,
                required=False,
            )
        )
        for schema in (checked, reporting):
            column = schema.columns[spec.name]
            column.checks = []
            column.unique = False
            column.nullable = True
            column.required = False
            column.dtype = None
    return replace(
        contract, checked_schema=checked, reporting_schema=reporting, columns=tuple(specs)
    )


def _not_checkable(contract: Contract, redacted: dict[str, str]) -> list[dict[str, Any]]:
    """The checks of redacted columns, each marked as not checkable (never as passed)."""
    found = []
    for spec in contract.columns:
        if spec.name not in redacted or spec.regex:
            continue
        names = [f"dtype('{spec.dtype}')"]
        if not spec.nullable:
            names.append("not_null")
        if spec.unique:
            names.append("unique")
        names += [check["name"] for check in spec.checks]
        found += [
            {
                "assertion": name,
                "column": spec.name,
                "success": None,
                "status": NOT_CHECKABLE,
                "stored_as": redacted[spec.name],
            }
            for name in names
        ]
    return found


def revalidate_files(
    contract: Contract,
    files: Sequence[Path | str],
    pii_summary: dict[str, Any] | None,
    engine: PiiEngine,
    chunk_rows: int,
) -> dict[str, Any]:
    """A stored version's Parquet ``files`` under ``contract``: the report an upload of that
    data would get (for the checks that can run on it), and the checks that cannot. The same
    code runs in the gateway and in ``datagate contracts check`` on a downloaded copy."""
    redacted = redacted_columns(pii_summary)
    stored = pl.read_parquet_schema(files[0])
    checking = _unchecked(contract, redacted, stored)
    validation = ChunkedValidation(
        checking, lambda values: scan_texts(values, engine, contract.detection)
    )
    for path in files:
        for frame in pl.scan_parquet(path).collect_batches(chunk_size=chunk_rows):
            validation.feed(frame)
    report, _ = validation.finish()
    result = report.as_dict()
    result["assertions"] = [
        a for a in report.assertions if a["column"] not in redacted
    ] + _not_checkable(contract, redacted)
    result["checks_run"] = sum(1 for a in result["assertions"] if a["success"] is not None)
    result["checks_not_checkable"] = sum(1 for a in result["assertions"] if a["success"] is None)
    result["checks_failed"] = sum(1 for a in result["assertions"] if a["success"] is False)
    # Every check that can run passes (rows a quarantining contract would hold count).
    valid = report.valid and not result["checks_failed"] and not report.failures
    return {"valid": valid, "report": result}


def revalidate_version(
    services: IngestContext, contract: Contract, version: DatasetVersion
) -> dict[str, Any]:
    """One stored version under ``contract`` (``revalidate_files`` on its parts)."""
    files = version_files(services.snapshots, version.storage_key)
    outcome = revalidate_files(
        contract,
        files,
        version.pii_summary,
        services.pii_engine,
        services.settings.ingest_chunk_rows,
    )
    return {
        "version": version.number,
        "rows": version.row_count,
        "contract_at_upload": {
            "version": version.contract_version,
            "fingerprint": version.contract_fingerprint,
        },
        **outcome,
    }


# --- Revalidations too large to answer at once: recorded, then run by a worker. ---

MAX_ATTEMPTS = 3
# Revalidations of one dataset waiting or running at once: more are refused (429), so that
# no key can fill the queue with work.
MAX_PENDING = 4
# How long a revalidation run by a process this one has never seen may stay "running".
UNKNOWN_OWNER_GRACE = timedelta(hours=1)


def start_revalidation(
    services: WorkerContext,
    contract: Contract,
    dataset: str,
    versions: Sequence[DatasetVersion],
    requested_by: str,
) -> Revalidation:
    """Record a queued revalidation and its job in one transaction (never one without the
    other)."""
    assert services.queue is not None, "services without a job queue"
    queue = services.queue
    with unit_of_work(services.engine) as session:
        lock_dataset(session, dataset)  # counted and added one at a time
        pending = session.exec(
            select(func.count())
            .select_from(Revalidation)
            .where(
                Revalidation.dataset == dataset,
                col(Revalidation.status).in_(("queued", "running")),
            )
        ).one()
        if pending >= MAX_PENDING:
            raise TooBusy(
                f"{pending} revalidations of {dataset} are waiting or running; ask again when "
                "one has finished",
                retry_after=30,
            )
        row = Revalidation(
            id=str(uuid.uuid4()),
            dataset=dataset,
            contract_version=contract.version,
            contract_fingerprint=contract.fingerprint,
            versions=[v.number for v in versions],
            rows=sum(v.row_count for v in versions),
            status="queued",
            requested_by=requested_by,
            created_at=utcnow(),
        )
        session.add(row)
        session.flush()
        queue.enqueue_revalidation(session, row.id)
        session.expunge(row)
    return row


def contract_for(services: IngestContext, dataset: str, fingerprint: str) -> Contract | None:
    """The contract version with ``fingerprint``: the loaded one, or restored from its recorded
    code (None when it no longer loads exactly as it was)."""
    loaded = services.catalog.get(dataset)
    if loaded is not None and loaded.fingerprint == fingerprint:
        return loaded
    with Session(services.engine) as session:
        row = session.exec(
            select(ContractVersion).where(
                ContractVersion.name == dataset, ContractVersion.fingerprint == fingerprint
            )
        ).first()
    if row is None:
        return None
    return restore_contract(row, services.catalog.folder, services.redaction_key)


def run_revalidation(services: WorkerContext, revalidation_id: str) -> None:
    """The job: take the queued revalidation, revalidate its versions one by one (each
    finished version is saved, so a reader sees progress), record the outcome. One no longer
    queued (taken already, or finished) is left alone, so a job delivered twice runs once."""
    with unit_of_work(services.engine) as session:
        row = session.exec(
            select(Revalidation).where(Revalidation.id == revalidation_id).with_for_update()
        ).first()
        if row is None or row.status != "queued":
            log.info("revalidation %s is not queued; nothing to do", revalidation_id)
            return
        row.status, row.instance = "running", services.instance.id
        row.started_at, row.attempts = utcnow(), row.attempts + 1
        session.add(row)
        dataset, fingerprint, numbers = row.dataset, row.contract_fingerprint, list(row.versions)
    try:
        contract = contract_for(services, dataset, fingerprint)
        if contract is None:
            raise Conflict(
                f"contract {dataset!r} version {fingerprint[:12]} no longer loads as it was"
            )
        done: list[dict[str, Any]] = []
        for number in numbers:
            with Session(services.engine) as session:
                version = live_version(session, dataset_by_name(session, dataset), number)
            done.append(revalidate_version(services, contract, version))
            _save(services, revalidation_id, status="running", result=_result(contract, done))
    except Exception as exc:
        if isinstance(exc, DatagateError):
            message = f"{problem_for(exc).title}: {exc.detail}"
        else:  # its text may quote stored values: the type only
            message = f"revalidation failed ({type(exc).__name__})"
            log.error("revalidation %s failed: %s", revalidation_id, type(exc).__name__)
        _save(services, revalidation_id, status="failed", error=message[:1000])
        return
    _save(services, revalidation_id, status="done", result=_result(contract, done))


def _result(contract: Contract, versions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "contract": {"version": contract.version, "fingerprint": contract.fingerprint},
        "versions": versions,
    }


def _save(services: IngestContext, revalidation_id: str, **changes: Any) -> None:
    with unit_of_work(services.engine) as session:
        row = session.get(Revalidation, revalidation_id)
        if row is None or row.instance != services.instance.id:
            return  # taken over (this process was thought dead): the other run decides
        for name, value in changes.items():
            setattr(row, name, value)
        if changes.get("status") in ("done", "failed"):
            row.finished_at = utcnow()
        session.add(row)


def requeue_revalidations(
    services: WorkerContext, dead: set[str], known: set[str], now: datetime
) -> list[str]:
    """Revalidations whose process died go back to the queue (reading is idempotent), at
    most ``MAX_ATTEMPTS`` times in all; then they fail."""
    with Session(services.engine) as session:
        running = session.exec(select(Revalidation).where(Revalidation.status == "running")).all()
    orphaned = [
        row.id
        for row in running
        if row.instance is None
        or row.instance in dead
        or (
            row.instance not in known
            and row.started_at is not None
            and now - as_utc(row.started_at) > UNKNOWN_OWNER_GRACE
        )
    ]
    requeued = []
    for revalidation_id in orphaned:
        with unit_of_work(services.engine) as session:
            row = session.exec(
                select(Revalidation).where(Revalidation.id == revalidation_id).with_for_update()
            ).first()
            if row is None or row.status != "running":
                continue
            if services.queue is not None and row.attempts < MAX_ATTEMPTS:
                row.status, row.instance = "queued", None
                services.queue.enqueue_revalidation(session, row.id)
                requeued.append(row.id)
            else:
                row.status, row.finished_at = "failed", utcnow()
                row.error = "the process running this revalidation stopped; ask again"
            session.add(row)
    return requeued
