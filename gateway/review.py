"""Human review of quarantined rows: replay a batch under the current contract, merge a
producer's corrections, discard it, or let it expire.

A replay or a correction is its own run (kind ``replay`` / ``correction``) that reads the
batch and the version holding the upload's valid rows, and writes a new version: those rows
(their stored parts, referenced, not copied) plus the rows that now pass, redacted as at
ingest. Rows still failing stay held, sealed again under a fresh seed. Everything is staged
first; one transaction then numbers the version and moves the batch to its next revision, and
only if nobody else moved it meanwhile (concurrent replays: one wins, the other gets 409 and
publishes nothing). A process killed before that transaction leaves the batch as it was.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import polars as pl
from sqlmodel import Session, col, func, select

from gateway import metrics
from gateway.audit_log import AuditRecord
from gateway.context import IngestContext, WorkerContext
from gateway.contracts import Contract, QuarantinePolicy
from gateway.db import unit_of_work
from gateway.decoding import DecodeLimits, unwrap
from gateway.errors import (
    Conflict,
    ContractViolation,
    DatagateError,
    Interrupted,
    InvalidRequest,
    NotFound,
    StageFailed,
    UndeclaredPii,
    redacted_traceback,
)
from gateway.formats import detect_format, read_chunks
from gateway.ingest_lineage import pii_report
from gateway.models import DatasetVersion, IngestRun, QuarantineBatch, utcnow
from gateway.outbox import store_event
from gateway.quarantine import (
    Holding,
    failure_counts,
    findings,
    held_key,
    open_held,
)
from gateway.runs import fail_run, new_run_id, scrub
from gateway.snapshots import (
    MANIFEST,
    StagedSnapshot,
    StagedVersion,
    _part_key,
    publish_version,
)
from gateway.stages import checkpoint, redact_part, refuse_reserved, version_drift
from gateway.store import (
    dataset_by_name,
    live_version,
    lock_dataset,
    lock_running_run,
    version_by_hash,
)
from gateway.subjects import SubjectForms
from gateway.uploads import ReceivedUpload, UploadSpool
from gateway.validation import (
    HELD_FAILURE_TYPE,
    HELD_FAILURES,
    ROW_PLACE,
    ChunkedValidation,
    ValidationReport,
    held_failures,
)
from lineage import (
    DatasetRef,
    HeldOutput,
    IngestJob,
    SchemaField,
    StoredOutput,
    held_input,
    ingest_complete,
    ingest_fail,
    ingest_start,
    quarantine_dataset,
    version_input,
)
from privacy import DetectionMemo, merge_outcomes, scan_texts, scrub_column_names

log = logging.getLogger(__name__)
MAX_REASON_CHARS = 500
# Key values of a correction, joined: a separator and a null marker no text value holds.
_KEY_SEPARATOR = "\x1f"
_NULL_KEY = "\x00"


@dataclass(frozen=True)
class Release:
    """What a replay or a correction did."""

    run_id: str
    batch: QuarantineBatch
    released: int
    still_held: int
    version: DatasetVersion | None
    created: bool
    report: dict[str, Any]


@dataclass(frozen=True)
class Corrections:
    """Corrected rows a producer sent for a batch, read from their upload."""

    frame: pl.DataFrame
    format: str


# -- reading ---------------------------------------------------------------------------------


def get_batch(session: Session, batch_id: str) -> QuarantineBatch:
    """One batch.

    Raises:
        NotFound: no batch has this id.
    """
    batch = session.get(QuarantineBatch, batch_id)
    if batch is None:
        raise NotFound(f"no quarantine batch {batch_id[:64]!r}")
    return batch


def list_batches(
    session: Session,
    *,
    dataset: str | None,
    status: str | None,
    datasets: frozenset[str] | None,
    limit: int,
    offset: int,
) -> tuple[list[QuarantineBatch], int]:
    """Batches, newest first, of ``dataset`` (any) in ``status`` (any), among ``datasets``
    (None: every one); and how many match."""
    query = select(QuarantineBatch)
    if dataset is not None:
        query = query.where(QuarantineBatch.dataset == dataset)
    if status is not None:
        query = query.where(QuarantineBatch.status == status)
    if datasets is not None:
        query = query.where(col(QuarantineBatch.dataset).in_(sorted(datasets)))
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(
        query.order_by(col(QuarantineBatch.created_at).desc(), col(QuarantineBatch.id).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return list(rows), int(total)


def open_counts(engine: Any) -> dict[str, tuple[int, int]]:
    """Per dataset: open batches and the rows they hold."""
    with Session(engine) as session:
        rows = session.exec(
            select(QuarantineBatch.dataset, func.count(), func.sum(QuarantineBatch.rows_held))
            .where(QuarantineBatch.status == "open")
            .group_by(QuarantineBatch.dataset)
        ).all()
    return {dataset: (int(count), int(held or 0)) for dataset, count, held in rows}


def _placeholder(contract: Contract | None, batch: QuarantineBatch, column: str) -> str | None:
    spec = contract.spec_for(column) if contract is not None else None
    if spec is not None and spec.policy is not None:
        return "<REDACTED>" if spec.policy.entity == "scan" else f"<{spec.policy.entity}>"
    if spec is None:
        found = [
            f
            for label, f in findings(batch).items()
            if (label == column or label.startswith(f"{column}.")) and f.kind != "clean"
        ]
        if found:
            entity = found[0].entity
            return f"<{entity}>" if found[0].kind == "entity" and entity else "<REDACTED>"
    return None


def shown_rows(
    services: IngestContext,
    batch: QuarantineBatch,
    *,
    offset: int,
    limit: int,
) -> list[dict[str, Any]]:
    """Held rows as a reviewer sees them: each cell of a column with a PII policy (or an
    undeclared column where the ingest found PII) as its placeholder, every other value as
    text with any PII found in it replaced; and each row's failures. Nothing is decrypted for
    the caller but those scrubbed values."""
    if batch.status != "open" or batch.storage_key is None:
        return []
    contract = services.catalog.get(batch.dataset)
    held = open_held(services.snapshots, batch, services.redaction_key).slice(offset, limit)
    columns = [c for c in held.columns if c not in (ROW_PLACE, HELD_FAILURES)]
    shown: list[dict[str, Any]] = []
    to_scrub: list[tuple[dict[str, Any], str, str]] = []
    for row in held.iter_rows(named=True):
        values: dict[str, Any] = {}
        for column in columns:
            value = row[column]
            placeholder = _placeholder(contract, batch, column)
            if value is None:
                values[column] = None
            elif placeholder is not None:
                values[column] = placeholder
            else:
                text = value if isinstance(value, str) else json.dumps(value, default=str)
                values[column] = None
                to_scrub.append((values, column, text[:200]))
        shown.append(
            {
                "row": int(row[ROW_PLACE]) + 1,
                "values": values,
                "failures": [
                    {"column": f["column"], "check": f["check"]} for f in row[HELD_FAILURES] or []
                ],
            }
        )
    if to_scrub:
        detection = contract.detection if contract is not None else None
        if detection is None:
            for holder, column, _ in to_scrub:
                holder[column] = "<REDACTED>"
        else:
            cleaned = scan_texts([t for _, _, t in to_scrub], services.pii_engine, detection)
            for (holder, column, _), text in zip(to_scrub, cleaned, strict=True):
                holder[column] = text
    for row in shown:  # each failure with the value at fault, as shown
        for failure in row["failures"]:
            failure["value"] = row["values"].get(failure["column"])
    return shown


# -- releasing -------------------------------------------------------------------------------


def _checking(contract: Contract) -> Contract:
    """The contract as a release validates with: failing rows held, never a threshold (what
    an upload's limits protect is already decided)."""
    schema = contract.checked_schema
    if not schema.drop_invalid_rows:
        schema = copy.deepcopy(schema)
        schema.drop_invalid_rows = True
    if contract.quarantine is not None:
        keys = contract.quarantine.keys
    else:  # a contract that stopped quarantining: its unique columns, as the default keys
        keys = tuple(c.name for c in contract.columns if c.unique and not c.regex)
    policy = QuarantinePolicy(max_invalid_fraction=1.0, min_valid_rows=0, keys=keys)
    return replace(contract, checked_schema=schema, quarantine=policy)


def _start(
    services: IngestContext,
    batch: QuarantineBatch,
    contract: Contract,
    kind: str,
    actor: str,
    request_id: str | None,
) -> IngestJob:
    namespace = services.settings.namespace
    run_id = new_run_id()
    job = IngestJob(
        run_id=run_id,
        namespace=namespace,
        dataset=batch.dataset,
        source=DatasetRef(namespace=namespace, name=quarantine_dataset(batch.dataset)),
        owner=contract.owner,
        request_id=request_id,
        kind=kind,
    )
    now = utcnow()
    with unit_of_work(services.engine) as session:
        session.add(
            IngestRun(
                id=run_id,
                dataset=batch.dataset,
                status="running",
                kind=kind,
                quarantine_id=batch.id,
                uploader=actor,
                source=f"{namespace}:{quarantine_dataset(batch.dataset)}",
                contract_name=contract.dataset,
                contract_version=contract.version,
                contract_fingerprint=contract.fingerprint,
                started_at=now,
                instance=services.instance.id,
            )
        )
        store_event(session, ingest_start(job, now))
    services.lineage.notify()
    return job


def release(
    services: IngestContext,
    batch_id: str,
    actor: str,
    spool: UploadSpool,
    request_id: str | None = None,
    corrections: Corrections | None = None,
) -> Release:
    """Replay a batch (every held row re-validated under the current contract) or merge
    ``corrections`` into it (the corrected rows, matched by the contract's key columns,
    validated in place of the held ones); publish what passes as a new version.

    Raises:
        NotFound: no such batch.
        Conflict: the batch is not open, or changed while this ran (nothing published).
        InvalidRequest: corrections that match no held row, repeat a key, or lack keys.
    """
    with Session(services.engine) as session:
        batch = get_batch(session, batch_id)
    if batch.status != "open":
        raise Conflict(
            f"quarantine batch {batch.id} is {batch.status}; only an open one can change"
        )
    contract = services.catalog.require(batch.dataset)
    checking = _checking(contract)
    kind = "correction" if corrections is not None else "replay"
    if corrections is not None:
        assert checking.quarantine is not None
        _check_keys(checking.quarantine.keys, corrections.frame, contract)
    job = _start(services, batch, contract, kind, actor, request_id)
    try:
        return _release(services, batch, checking, job, corrections, spool)
    except DatagateError as error:
        fail_run(services, job, error)
        raise
    except Exception as exc:
        failed = StageFailed(kind, exc)
        log.error("%s run %s failed: %s", kind, job.run_id, redacted_traceback(exc))
        fail_run(services, job, failed)
        raise failed from exc


def _check_keys(keys: tuple[str, ...], frame: pl.DataFrame, contract: Contract) -> None:
    if not keys:
        raise InvalidRequest(
            f"contract {contract.dataset} declares no key columns (primary_key in its metadata, "
            "or unique=True columns): corrections cannot be matched to held rows"
        )
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise InvalidRequest(f"the corrections lack the key column(s) {', '.join(missing)}")


def _key_text(frame: pl.DataFrame, keys: tuple[str, ...]) -> pl.Series:
    try:
        return frame.select(
            pl.concat_str(
                [pl.col(k).cast(pl.String).fill_null(_NULL_KEY) for k in keys],
                separator=_KEY_SEPARATOR,
            ).alias("key")
        ).to_series()
    except pl.exceptions.PolarsError as exc:
        raise InvalidRequest("the key columns hold values that cannot be compared") from exc


def _candidates(
    held: pl.DataFrame, corrections: Corrections | None, keys: tuple[str, ...]
) -> tuple[pl.DataFrame, pl.Series, pl.DataFrame]:
    """What to validate (raw rows), their places in the upload, and the rows that stay held
    untouched (a correction leaves the rows it does not name)."""
    if corrections is None:
        raw = held.drop(ROW_PLACE, HELD_FAILURES)
        return raw, held.get_column(ROW_PLACE), held.clear()
    fixed = corrections.frame
    fixed_keys = _key_text(fixed, keys)
    if fixed_keys.is_duplicated().any():
        raise InvalidRequest(
            f"{int(fixed_keys.is_duplicated().sum())} corrected rows share a key with another"
        )
    missing = [k for k in keys if k not in held.columns]
    if missing:
        raise InvalidRequest("the held rows lack the contract's key columns")
    held_keys = _key_text(held, keys)
    unknown = int((~fixed_keys.is_in(held_keys.implode())).sum())
    if unknown:
        raise InvalidRequest(f"{unknown} corrected row(s) match no row this batch holds")
    places = (
        held.select(held_keys.alias("key"), ROW_PLACE).group_by("key").agg(pl.col(ROW_PLACE).min())
    )
    placed = fixed_keys.to_frame("key").join(places, on="key", how="left", maintain_order="left")
    untouched = held.filter(~held_keys.is_in(fixed_keys.implode()))
    return fixed, placed.get_column(ROW_PLACE), untouched


def _base_parts(services: IngestContext, version: DatasetVersion) -> list[StagedSnapshot]:
    """A stored version's parts, as parts of a new version that refers to them."""
    store = services.snapshots
    if not version.storage_key.endswith(f"/{MANIFEST}"):
        key = version.storage_key
        return [StagedSnapshot(store.local_path(key), version.content_hash, version.byte_size, key)]
    manifest = json.loads(store.get_bytes(version.storage_key))
    return [
        StagedSnapshot(store.local_path(e["key"]), e["sha256"], int(e["bytes"]), e["key"])
        for e in manifest["parts"]
    ]


def _not_unique_against(
    redacted: pl.DataFrame, contract: Contract, parts: list[StagedSnapshot]
) -> pl.Series:
    """Rows of ``redacted`` whose ``unique=True`` value the version's stored rows already hold
    (compared as stored: raw, or keyed pseudonyms; masked values cannot be compared)."""
    comparable = [
        c.name
        for c in contract.columns
        if c.unique
        and not c.regex
        and c.name in redacted.columns
        and (c.policy is None or c.policy.action in ("hash", "keep"))
    ]
    clash = pl.Series("clash", [False] * redacted.height)
    if not comparable or not parts:
        return clash
    stored = pl.scan_parquet([p.path for p in parts]).select(comparable).collect()
    for name in comparable:
        clash = clash | redacted.get_column(name).is_in(stored.get_column(name).implode())
    return clash


def _release(
    services: IngestContext,
    batch: QuarantineBatch,
    contract: Contract,
    job: IngestJob,
    corrections: Corrections | None,
    spool: UploadSpool,
) -> Release:
    assert contract.quarantine is not None
    keys = contract.quarantine.keys
    held = open_held(services.snapshots, batch, services.redaction_key)
    raw, places, untouched = _candidates(held, corrections, keys)
    fmt = corrections.format if corrections is not None else batch.format
    still: list[pl.DataFrame] = [untouched]

    def hold(rows: pl.DataFrame) -> None:
        # The row's place in the candidates becomes its place in the upload.
        still.append(rows.with_columns(places.gather(rows.get_column(ROW_PLACE)).alias(ROW_PLACE)))

    validation = ChunkedValidation(
        contract,
        lambda values: scan_texts(values, services.pii_engine, contract.detection),
        from_text=fmt == "csv",
        from_json=fmt in ("ndjson", "json"),
        hold=hold,
    )
    stored, at = validation.feed(raw)
    report, _ = validation.finish()
    if validation.rejected:  # a failure of no row in particular (a missing column, say)
        raise _refused(contract, report, "the held rows cannot be checked")
    at = at if at is not None else pl.int_range(0, raw.height, eager=True, dtype=pl.Int64)
    stored = stored.drop(ROW_PLACE, strict=False)
    late = validation.late
    if late is not None and not late.is_empty():
        failing = held_failures(late)
        keep = ~at.is_in(failing.get_column(ROW_PLACE).implode())
        rows = raw.gather(failing.get_column(ROW_PLACE))
        hold(rows.with_columns(failing.get_column(ROW_PLACE), failing.get_column(HELD_FAILURES)))
        stored, at = stored.filter(keep), at.filter(keep)
    base = _base_version(services, batch)
    base_parts = _base_parts(services, base) if base is not None else []
    staged: StagedSnapshot | None = None
    outcomes: list[Any] = []
    released = 0
    if stored.height:
        memo = DetectionMemo(services.pii_engine)
        try:
            redacted, outcomes = redact_part(
                stored, contract, services.redaction_key, memo, findings(batch)
            )
        finally:
            memo.close()
        if redacted is None:
            raise UndeclaredPii(
                f"personal data found in a column contract {contract.dataset} does not declare",
                report=pii_report(tuple(o for o in outcomes if o.action == "reject")),
            )
        clash = _not_unique_against(redacted, contract, base_parts)
        if clash.any():
            rows = raw.gather(at.filter(clash))
            repeated = [{"column": ", ".join(keys) or None, "check": "field_uniqueness"}]
            hold(
                rows.with_columns(
                    at.filter(clash).alias(ROW_PLACE),
                    pl.Series(HELD_FAILURES, [repeated] * rows.height, dtype=HELD_FAILURE_TYPE),
                )
            )
            redacted = redacted.filter(~clash)
            at = at.filter(~clash)
        released = redacted.height
        if released:
            staged = services.snapshots.stage(redacted.lazy())
    # Which rows of the upload this run releases, and why they had been held: provenance.
    freed = places.gather(at) if released else pl.Series(ROW_PLACE, [], dtype=pl.Int64)
    evidence = {
        "released_rows": (freed + 1).sort().to_list(),
        "released_failures": failure_counts(held.filter(pl.col(ROW_PLACE).is_in(freed.implode()))),
    }
    remaining = (
        pl.concat([f for f in still if f.width], how="diagonal_relaxed")
        if any(f.height for f in still)
        else None
    )
    try:
        return _record(
            services,
            batch,
            contract,
            job,
            report,
            base,
            base_parts,
            staged,
            outcomes,
            released,
            remaining,
            spool,
            evidence,
        )
    finally:
        if staged is not None:
            services.snapshots.discard(staged)  # published: moved away, so a no-op


def _base_version(services: IngestContext, batch: QuarantineBatch) -> DatasetVersion | None:
    if batch.base_version is None:
        return None
    with Session(services.engine) as session:
        dataset = dataset_by_name(session, batch.dataset)
        return live_version(session, dataset, batch.base_version)


def _refused(contract: Contract, report: ValidationReport, why: str) -> DatagateError:
    return ContractViolation(
        f"{why} under contract {contract.dataset} {contract.version}", report=report.as_dict()
    )


def _record(
    services: IngestContext,
    batch: QuarantineBatch,
    contract: Contract,
    job: IngestJob,
    report: ValidationReport,
    base: DatasetVersion | None,
    base_parts: list[StagedSnapshot],
    staged: StagedSnapshot | None,
    outcomes: list[Any],
    released: int,
    remaining: pl.DataFrame | None,
    spool: UploadSpool,
    evidence: dict[str, Any],
) -> Release:
    store = services.snapshots
    own: list[str] = []  # objects this run stored, removed unless its transaction commits
    held_object: str | None = None
    seed: str | None = None
    next_revision = batch.revision + 1
    if remaining is not None and remaining.height:
        holding = Holding(services.redaction_key, spool, batch.id)
        holding.add(remaining)
        held_object = held_key(batch.dataset, batch.id, next_revision, job.run_id)
        store.put_file(held_object, holding.close())
        own.append(held_object)
        seed = holding.seed
    snapshot: StagedVersion | None = None
    version_key: str | None = None
    stored: DatasetVersion | None = None
    created = False
    still_held = 0 if remaining is None else remaining.height
    old_object: str | None = None
    if staged is not None:
        parts = (*base_parts, staged)
        snapshot = StagedVersion(parts)
        version_key = snapshot.key(batch.dataset, job.run_id)
        if base_parts and version_key.endswith(f"/{MANIFEST}"):
            schema = pl.read_parquet_schema(staged.path)
            if schema != pl.read_parquet_schema(base_parts[0].path):
                _forget(store, own)
                raise Conflict(
                    f"the rows that pass no longer have the columns of version "
                    f"{batch.base_version}: the contract changed their shape, so they cannot "
                    "be added to it"
                )
    fields = (
        [{"name": n, "type": str(t)} for n, t in pl.read_parquet_schema(staged.path).items()]
        if staged is not None
        else []
    )
    # Measured (not enforced: these rows passed the contract, and the upload's others passed
    # its drift limits when they were stored) before publishing moves the staged file.
    drift = None
    if snapshot is not None:
        rows = (base.row_count if base is not None else 0) + released
        paths = [part.path for part in snapshot.parts]
        drift = version_drift(services, batch.dataset, paths, rows, contract.drift)
    checkpoint(services, "replay:staged")
    try:
        if snapshot is not None and version_key is not None:
            publish_version(store, snapshot, version_key)
            own.extend(_published_by_us(snapshot, version_key))
            checkpoint(services, "replay:published")
        with unit_of_work(services.engine) as session:
            dataset = lock_dataset(session, batch.dataset)
            row = session.exec(
                select(QuarantineBatch).where(QuarantineBatch.id == batch.id).with_for_update()
            ).one()
            run = lock_running_run(session, job.run_id)
            if run is None:
                raise Interrupted(
                    "this replay was marked interrupted while it ran; nothing changed"
                )
            if row.status != "open" or row.revision != batch.revision:
                raise Conflict(
                    f"quarantine batch {batch.id} changed while this {job.kind} ran (another "
                    "replay, correction or discard came first); nothing was published"
                )
            if base is not None:  # its parts are this version's: still there?
                live_version(session, dataset, base.number)
            if snapshot is not None and version_key is not None:
                existing = version_by_hash(session, dataset, snapshot.content_hash)
                if existing is not None:
                    stored = existing
                else:
                    stored = _new_version(
                        fields,
                        dataset,
                        snapshot,
                        version_key,
                        contract,
                        job,
                        batch,
                        base,
                        report,
                        outcomes,
                        released,
                        drift,
                    )
                    dataset.latest_version = stored.number
                    session.add(dataset)
                    session.add(stored)
                    created = True
            old_object = row.storage_key
            now = utcnow()
            row.rows_released += released
            row.rows_held = still_held
            row.held_failures = failure_counts(remaining) if remaining is not None else []
            row.storage_key, row.key_seed = held_object, seed
            row.revision = next_revision
            row.updated_at = now
            if stored is not None:
                row.base_version = stored.number
            if still_held == 0:
                row.status, row.closed_at, row.closed_by = "replayed", now, run.uploader
                row.close_reason = f"every held row released by {job.kind} run {job.run_id}"
            session.add(row)
            run.status = (
                "rejected" if stored is None else "quarantined" if still_held else "accepted"
            )
            run.validation_report = {**report.as_dict(), **evidence}
            run.pii_report = pii_report(tuple(merge_outcomes([outcomes]))) if outcomes else None
            run.format = None
            run.finished_at = now
            if stored is not None:
                run.version, run.created_version = stored.number, created
            session.add(run)
            if stored is not None:
                store_event(
                    session,
                    ingest_complete(
                        job,
                        now,
                        _output(services, stored, report),
                        held=HeldOutput(batch.id, still_held, row.held_failures)
                        if still_held
                        else None,
                        inputs=[
                            held_input(job.namespace, batch.dataset, batch.id),
                            *(
                                [version_input(job.namespace, batch.dataset, base.number)]
                                if base is not None
                                else []
                            ),
                        ],
                    ),
                )
            else:
                store_event(
                    session,
                    ingest_fail(
                        job,
                        now,
                        f"no held row passes contract {contract.dataset} {contract.version}",
                    ),
                )
    except BaseException:
        _forget(store, own)
        raise
    if stored is not None and not created and version_key is not None:
        _forget(store, _published_by_us(snapshot, version_key))  # identical data was stored
    if old_object is not None:
        with contextlib.suppress(FileNotFoundError):
            store.delete(old_object)  # its seed is gone already: unreadable
    services.lineage.notify()
    metrics.QUARANTINE_ROWS.labels(batch.dataset, "replayed").inc(released)
    with Session(services.engine) as session:
        final = get_batch(session, batch.id)
    return Release(
        run_id=job.run_id,
        batch=final,
        released=released,
        still_held=still_held,
        version=stored,
        created=created,
        report=report.as_dict(),
    )


def _published_by_us(snapshot: StagedVersion | None, key: str) -> list[str]:
    if snapshot is None:
        return []
    if not key.endswith(f"/{MANIFEST}"):
        return [key]
    return [
        _part_key(key, index) for index, part in enumerate(snapshot.parts) if part.key is None
    ] + [key]


def _forget(store: Any, keys: list[str]) -> None:
    for key in keys:
        with contextlib.suppress(FileNotFoundError):
            store.delete(key)


def _new_version(
    fields: list[dict[str, str]],
    dataset: Any,
    snapshot: StagedVersion,
    key: str,
    contract: Contract,
    job: IngestJob,
    batch: QuarantineBatch,
    base: DatasetVersion | None,
    report: ValidationReport,
    outcomes: list[Any],
    released: int,
    drift: dict[str, Any] | None,
) -> DatasetVersion:
    rows = (base.row_count if base is not None else 0) + released
    return DatasetVersion(
        dataset_id=dataset.id,
        number=dataset.latest_version + 1,
        content_hash=snapshot.content_hash,
        row_count=rows,
        byte_size=snapshot.byte_size,
        storage_key=key,
        schema_fields=fields,
        contract_name=contract.dataset,
        contract_version=contract.version,
        contract_fingerprint=contract.fingerprint,
        source=f"{job.namespace}:{quarantine_dataset(batch.dataset)}",
        uploader=batch.uploader,  # the data is the original upload's
        run_id=job.run_id,
        validation_summary={
            **report.summary(),
            "valid": True,
            "rows_released": released,
            "quarantine": batch.id,
            "released_from_version": base.number if base is not None else None,
        },
        pii_summary=_merged_pii(base, outcomes),
        created_at=utcnow(),
        drift=drift,
    )


def _merged_pii(base: DatasetVersion | None, outcomes: list[Any]) -> dict[str, Any]:
    """The base version's PII summary with the released rows' counts added."""
    added = {o.column: o.values_redacted for o in merge_outcomes([outcomes])}
    if base is None or not base.pii_summary:
        return pii_report(tuple(merge_outcomes([outcomes])))
    columns = []
    for column in base.pii_summary.get("columns", []):
        columns.append(
            {
                **column,
                "values_redacted": column["values_redacted"] + added.get(column["column"], 0),
            }
        )
    return {"columns": columns}


def _output(
    services: IngestContext, stored: DatasetVersion, report: ValidationReport
) -> StoredOutput:
    return StoredOutput(
        version=stored.number,
        fields=[SchemaField(name=f["name"], type=f["type"]) for f in stored.schema_fields],
        row_count=stored.row_count,
        size_bytes=stored.byte_size,
        storage_uri=services.snapshots.uri(stored.storage_key),
    )


# -- closing ---------------------------------------------------------------------------------


def _close(
    services: IngestContext,
    batch_id: str,
    *,
    status: str,
    actor: str,
    reason: str,
    due: datetime | None = None,
) -> QuarantineBatch | None:
    """Close an open batch: its seed goes in the transaction (the held rows are unreadable
    from then on), then its data. None when it was no longer open (or not yet due)."""
    with unit_of_work(services.engine) as session:
        row = session.exec(
            select(QuarantineBatch).where(QuarantineBatch.id == batch_id).with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"no quarantine batch {batch_id[:64]!r}")
        if row.status != "open" or (due is not None and row.expires_at > due):
            return None
        old = row.storage_key
        now = utcnow()
        held = row.rows_held
        row.status = status
        row.rows_discarded += held
        row.rows_held = 0
        row.storage_key = row.key_seed = None
        row.revision += 1
        row.closed_at = row.updated_at = now
        row.closed_by = actor
        row.close_reason = reason
        session.add(row)
    if old is not None:
        try:
            services.snapshots.delete(old)
        except Exception as exc:  # unreadable already: its key is gone
            log.warning(
                "could not delete the held rows of batch %s: %s", batch_id, type(exc).__name__
            )
    metrics.QUARANTINE_ROWS.labels(row.dataset, status).inc(held)
    return row


def discard(services: IngestContext, batch_id: str, actor: str, reason: str) -> QuarantineBatch:
    """Discard an open batch, with the reviewer's reason (PII in it replaced).

    Raises:
        NotFound: no such batch.
        Conflict: it is not open.
    """
    with Session(services.engine) as session:
        batch = get_batch(session, batch_id)
    contract = services.catalog.get(batch.dataset)
    shown = scrub(services, contract, reason.strip())[:MAX_REASON_CHARS]
    closed = _close(services, batch_id, status="discarded", actor=actor, reason=shown)
    if closed is None:
        raise Conflict(
            f"quarantine batch {batch_id} is {batch.status}; only an open one can change"
        )
    return closed


def expire_due(
    services: IngestContext, record: Callable[[AuditRecord], Any] | None = None
) -> list[str]:
    """Expire every open batch past its time; each is recorded in the audit trail through
    ``record``. Returns the ids expired."""
    now = utcnow()
    with Session(services.engine) as session:
        due = session.exec(
            select(QuarantineBatch.id).where(
                QuarantineBatch.status == "open", col(QuarantineBatch.expires_at) <= now
            )
        ).all()
    expired = []
    for batch_id in due:
        closed = _close(
            services, batch_id, status="expired", actor="system:expiry", reason="expired", due=now
        )
        if closed is None:
            continue
        expired.append(batch_id)
        if record is not None:
            record(
                AuditRecord(
                    actor="system:expiry",
                    role=None,
                    action="EXPIRE /api/v1/quarantine/{batch_id}",
                    target=f"/api/v1/quarantine/{batch_id}",
                    dataset=closed.dataset,
                    outcome=200,
                    request_id=f"expiry-{new_run_id()}",
                    client=None,
                )
            )
    return expired


def read_corrections(
    services: IngestContext,
    received: ReceivedUpload,
    spool: UploadSpool,
    requested_format: str | None,
    contract: Contract,
) -> Corrections:
    """Corrected rows as an upload is read: unwrapped, its format detected, within the
    decoding limits, column names with PII replaced as at ingest.

    Raises:
        UploadError: unreadable, too large decoded, or empty.
    """
    settings = services.settings
    limits = DecodeLimits.of(settings)
    payload, _ = unwrap(received.path, spool, limits)
    fmt = detect_format(payload, requested_format, received.content_type, received.filename)
    frames = list(read_chunks(payload, fmt, contract.dtypes, limits, settings.ingest_chunk_rows))
    frame = pl.concat(frames, how="vertical_relaxed")
    refuse_reserved(frame.columns)
    frame, _ = scrub_column_names(
        frame, services.pii_engine, contract.detection, keep=contract.dtypes
    )
    return Corrections(frame=frame, format=fmt)


def held_subject_rows(
    services: IngestContext, forms: SubjectForms
) -> list[tuple[QuarantineBatch, pl.DataFrame, pl.Series]]:
    """Open batches holding rows where a column with a PII policy (as the contract declares
    it now) holds one of the subject's identifiers: each batch, its held rows, and which of
    them. Held rows are raw, so every such column is compared as it arrived."""
    with Session(services.engine) as session:
        batches = session.exec(
            select(QuarantineBatch).where(QuarantineBatch.status == "open")
        ).all()
    found = []
    for batch in batches:
        contract = services.catalog.get(batch.dataset)
        if contract is None or batch.storage_key is None:
            continue
        declared = {p.column: "keep" for p in contract.policies}  # raw: as given
        held = open_held(services.snapshots, batch, services.redaction_key)
        if held.is_empty() or not declared.keys() & set(held.columns):
            continue
        matches = held.select(forms.held_in_any(declared, held.schema).alias("match"))
        marked = matches.get_column("match")
        if marked.any():
            found.append((batch, held, marked))
    return found


def erase_held(
    services: WorkerContext,
    batch: QuarantineBatch,
    held: pl.DataFrame,
    matches: pl.Series,
    erasure_id: str,
) -> int:
    """Remove the held rows ``matches`` marks from an open batch (an erasure): the others are
    sealed again under a new seed, the old object and seed destroyed; with none left the
    batch is closed. Returns the rows removed.

    Raises:
        Conflict: the batch changed meanwhile (a replay, a correction, a discard).
    """
    removed = int(matches.sum())
    remaining = held.filter(~matches)
    reason = f"erasure {erasure_id}: every held row held the subject"
    if remaining.is_empty():
        closed = _close(services, batch.id, status="discarded", actor="erasure", reason=reason)
        if closed is None:
            raise Conflict(f"quarantine batch {batch.id} closed while the erasure ran")
        return removed
    spool = UploadSpool(services.work_dir)
    run_id = str(uuid.uuid4())
    try:
        holding = Holding(services.redaction_key, spool, batch.id)
        holding.add(remaining)
        new_object = held_key(batch.dataset, batch.id, batch.revision + 1, run_id)
        services.snapshots.put_file(new_object, holding.close())
    finally:
        spool.close()
    try:
        with unit_of_work(services.engine) as session:
            row = session.exec(
                select(QuarantineBatch).where(QuarantineBatch.id == batch.id).with_for_update()
            ).one()
            if row.status != "open" or row.revision != batch.revision:
                raise Conflict(f"quarantine batch {batch.id} changed while the erasure ran")
            old = row.storage_key
            row.storage_key, row.key_seed = new_object, holding.seed
            row.rows_held = remaining.height
            row.rows_discarded += removed
            row.held_failures = failure_counts(remaining)
            row.revision += 1
            row.updated_at = utcnow()
            session.add(row)
    except BaseException:
        services.snapshots.delete(new_object)
        raise
    if old is not None:
        services.snapshots.delete(old)
    metrics.QUARANTINE_ROWS.labels(batch.dataset, "discarded").inc(removed)
    return removed
