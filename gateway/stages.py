"""The ingest stages: parse → validate → redact → version → record.

An upload is read in parts of ``DATAGATE_INGEST_CHUNK_ROWS`` rows, and each part goes through
the part stages (``PART_STAGES``: parse, validate, redact, write), so memory holds one part
whatever the upload's size. Then the finishing stages (``STAGES``) run once: whole-column
checks and the merged report, the merged PII report, the version's Parquet file streamed from
the written parts, and the record. Results are exactly those of the upload processed whole:
see ``ChunkedValidation`` and ``plan_redaction``'s ``classified``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlmodel import Session, select

from gateway.context import IngestContext
from gateway.contracts import Contract
from gateway.db import unit_of_work
from gateway.decoding import DecodeLimits, unwrap
from gateway.drift import DriftPolicy, Sampler
from gateway.drift import measure as measure_profile
from gateway.drift import report as drift_report
from gateway.errors import (
    ContractViolation,
    DatagateError,
    DriftRejected,
    Interrupted,
    UndeclaredPii,
    UnreadableUpload,
    redacted_traceback,
)
from gateway.formats import detect_format, read_chunks
from gateway.ingest_lineage import pii_report, stored_output, upload_profile
from gateway.models import DatasetVersion, QuarantineBatch, utcnow
from gateway.outbox import store_event
from gateway.profiling import DistinctSketch
from gateway.quarantine import Holding, held_key, new_batch
from gateway.runs import finish_run, new_run_id, record_progress, source_label
from gateway.snapshots import (
    StagedSnapshot,
    StagedVersion,
    delete_version,
    drop_staged,
    publish_version,
)
from gateway.store import dataset_by_name, lock_dataset, lock_running_run, version_by_hash
from gateway.uploads import ReceivedUpload, UploadSpool
from gateway.validation import (
    HELD_FAILURES,
    ROW_PLACE,
    ChunkedValidation,
    ValidationReport,
    held_failures,
)
from lineage import HeldOutput, IngestJob, InputMetrics, ingest_complete
from privacy import (
    ColumnOutcome,
    DetectionMemo,
    Finding,
    PiiEngine,
    RedactionKey,
    merge_outcomes,
    plan_redaction,
    scan_texts,
    scrub_column_names,
)

if TYPE_CHECKING:
    from gateway.spread import Spread

log = logging.getLogger(__name__)


@dataclass
class Parts:
    """What an upload read in parts has accumulated: the validation of every part so far, what
    redaction found, and the redacted parts staged (durable, hashed, not yet visible) in the
    snapshot store's staging area. Mutable, one per run."""

    validation: ChunkedValidation
    memo: DetectionMemo | None
    classified: dict[str, Finding] = field(default_factory=dict)
    outcomes: list[list[ColumnOutcome]] = field(default_factory=list)
    staged: list[StagedSnapshot] = field(default_factory=list)  # the written parts, in order
    places: bool = False  # each part file has its rows' places in the upload
    renamed: dict[str, str] | None = None  # column names with PII, as the first part had them
    count: int = 0
    rows_read: int = 0
    nulls: Counter[str] = field(default_factory=Counter)
    only: pl.DataFrame | None = None  # the validated rows, while there has been one part only
    # Set once the upload is bound to be refused: the rest is only validated, for the report.
    halted: bool = False
    # Set when the run is spread over workers: they redact and store the parts.
    spread: Spread | None = None
    # Distinct values of the validated rows, counted part by part (``upload_profile``).
    distinct: DistinctSketch = field(default_factory=DistinctSketch)
    # An evenly spaced sample of the redacted rows written, for the drift profile.
    sample: Sampler = field(default_factory=Sampler)
    # A quarantining contract: where the failing rows are sealed as they are found.
    holding: Holding | None = None


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
    parts: Parts | None = None
    report: ValidationReport | None = None
    dropped: pl.Series | None = None  # rows the whole-column checks dropped (drop_invalid_rows)
    pii: tuple[ColumnOutcome, ...] = ()
    snapshot: StagedVersion | None = None
    profile: InputMetrics | None = None
    # Set by a stage that refuses the upload; the orchestrator raises it after the stage, so the
    # refused Batch (with its report) is the one recorded on the run.
    refusal: DatagateError | None = None
    version: DatasetVersion | None = None
    created: bool = False
    # Shared by every Batch of one run: the orchestrator adds each stage's duration.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def holds(self) -> Holding | None:
        """The rows held for review, once validation has decided to hold them."""
        parts = self.parts
        if parts is None or parts.holding is None or self.report is None:
            return None
        return parts.holding if self.report.holds else None

    def held_summary(self, batch_id: str | None = None) -> dict[str, Any] | None:
        """The held rows as an answer shows them: the batch, its rows, failing rows by check."""
        holding = self.holds
        if holding is None or self.report is None:
            return None
        failures = [
            {"column": f["column"], "check": f["check"], "rows": f["failing_rows"]}
            for f in self.report.failures
        ]
        return {"id": batch_id or holding.id, "rows": holding.rows, "failures": failures}

    def extra_columns(self) -> list[str]:
        """The upload's columns the contract does not declare (names as stored)."""
        parts = self.parts
        if parts is None or parts.renamed is None:
            return []
        return [c for c in parts.renamed.values() if self.contract.spec_for(c) is None]

    def extra_summary(self) -> dict[str, Any]:
        """For a contract that declares ``extra_columns``: what it did with which columns."""
        policy = self.contract.extra_columns
        if policy is None:
            return {}
        done = {"reject": "rejected", "drop": "dropped", "keep": "kept"}[policy]
        return {"extra_columns": {"policy": policy, done: self.extra_columns()}}

    def held_output(self) -> HeldOutput | None:
        """The held rows as the run's lineage output."""
        held = self.held_summary()
        if held is None:
            return None
        return HeldOutput(batch_id=held["id"], rows=held["rows"], failures=held["failures"])

    def held_batch(
        self, services: IngestContext, storage_key: str, base_version: int | None
    ) -> QuarantineBatch:
        """The database row of the rows this upload holds, stored under ``storage_key``."""
        holding, held = self.holds, self.held_summary()
        assert holding is not None
        assert held is not None
        assert self.format is not None
        policy = self.contract.quarantine
        assert policy is not None
        return new_batch(
            holding=holding,
            storage_key=storage_key,
            dataset=self.contract.dataset,
            run_id=self.job.run_id,
            fmt=self.format,
            failures=held["failures"],
            classified=self.require_parts().classified,
            base_version=base_version,
            contract_version=self.contract.version,
            contract_fingerprint=self.contract.fingerprint,
            uploader=self.uploader,
            expire_days=policy.expire_days or services.settings.quarantine_days,
        )

    def stash_held(self, services: IngestContext) -> str | None:
        """Store the sealed held rows (before the transaction that records their batch);
        returns the key, None when nothing is held."""
        holding = self.holds
        if holding is None:
            return None
        key = held_key(self.contract.dataset, holding.id, 0, self.job.run_id)
        services.snapshots.put_file(key, holding.close())
        return key

    def require_parts(self) -> Parts:
        """The parts' state; a stage that needs it runs after the upload was opened."""
        assert self.parts is not None, "stage ran before open"
        return self.parts

    @property
    def stored_rows(self) -> int:
        """Rows that pass into the version (all valid rows, once validation has finished)."""
        return 0 if self.parts is None else self.parts.validation.stored_rows


def checkpoint(services: IngestContext, name: str) -> None:
    """Crash tests only: with ``DATAGATE_DEBUG_HANG_AT=<name>`` the ingest stops here for good,
    so a test can SIGKILL the process at a known point (before a stage, or ``version:staged``,
    ``record:published``). Refused in production mode."""
    if services.settings.debug_hang_at != name:
        return
    log.warning("run reached checkpoint %s; hanging (DATAGATE_DEBUG_HANG_AT)", name)
    while True:
        time.sleep(3600)


def open_upload(batch: Batch, services: IngestContext) -> tuple[Batch, Iterator[pl.DataFrame]]:
    """Unwrap compression, detect the format and start reading the upload in parts, within the
    decoding budget (bytes, rows, columns, nesting depth) counted over the whole upload."""
    settings = services.settings
    limits = DecodeLimits.of(settings)
    payload, layers = unwrap(batch.upload.path, batch.spool, limits)
    fmt = detect_format(
        payload, batch.requested_format, batch.upload.content_type, batch.upload.filename
    )
    reader = read_chunks(payload, fmt, batch.contract.dtypes, limits, settings.ingest_chunk_rows)
    contract = batch.contract
    engine = services.pii_engine
    memo = None if engine is None else DetectionMemo(engine)

    def scrub_values(values: list[str]) -> list[str]:
        return scan_texts(values, engine, contract.detection)

    holding = None
    if contract.quarantine is not None:
        holding = Holding(services.redaction_key, batch.spool, new_run_id())
    validation = ChunkedValidation(
        contract,
        scrub_values,
        from_text=fmt == "csv",
        from_json=fmt in ("ndjson", "json"),
        spill=partial(batch.spool.new_file, ".keys"),
        hold=None if holding is None else holding.add,
    )
    parts = Parts(validation=validation, memo=memo, holding=holding)
    parts.places = validation.needs_row_numbers
    compression = "+".join(layers) or None
    batch = replace(batch, payload=payload, format=fmt, compression=compression, parts=parts)
    return batch, reader


# -- each part ---------------------------------------------------------------------------


def refuse_reserved(columns: list[str]) -> None:
    """Refuse an upload with a column named as Datagate's own bookkeeping columns."""
    for reserved in (ROW_PLACE, HELD_FAILURES):
        if reserved in columns:
            raise UnreadableUpload(f"the column name {reserved} is reserved; rename that column")


def parse(batch: Batch, frame: pl.DataFrame, services: IngestContext) -> pl.DataFrame:
    """A part as read: column and field names with PII replaced before anything (reports,
    schemas, events, metrics) sees them; the contract's own columns are kept."""
    parts = batch.require_parts()
    parts.count += 1
    parts.rows_read += frame.height
    refuse_reserved(frame.columns)
    if parts.renamed is None:
        scrubbed, renamed = scrub_column_names(
            frame, services.pii_engine, batch.contract.detection, keep=batch.contract.dtypes
        )
        if renamed:
            log.warning(
                "run %s: personal data in %d column name(s) replaced", batch.job.run_id, renamed
            )
        parts.renamed = dict(zip(frame.columns, scrubbed.columns, strict=True))
        return scrubbed
    if frame.columns != list(parts.renamed):
        raise UnreadableUpload("the upload's parts do not have the same columns")
    return frame.rename(parts.renamed)


def validate(batch: Batch, frame: pl.DataFrame, services: IngestContext) -> pl.DataFrame:
    """Cast a part to the contract's dtypes and run the row checks (whole-column checks run
    once, after the last part); once the upload is bound to be refused, nothing more of it
    is redacted or stored, but every part is still checked for the report."""
    parts = batch.require_parts()
    stored, places = parts.validation.feed(frame)
    if parts.validation.rejected:
        parts.halted = True
    parts.nulls.update(
        {name: int(count) for name, count in stored.null_count().row(0, named=True).items()}
    )
    if parts.count > 1:  # an upload of one part is counted exactly (``upload_profile``)
        if parts.only is not None:  # the first part, kept until now
            parts.distinct.add(parts.only.drop(ROW_PLACE, strict=False))
        parts.distinct.add(stored)
    if places is not None:
        stored = stored.with_columns(places.alias(ROW_PLACE))
    parts.only = stored if parts.count == 1 else None
    return stored


def redact_part(
    frame: pl.DataFrame,
    contract: Contract,
    key: RedactionKey,
    engine: PiiEngine | None,
    classified: dict[str, Finding],
) -> tuple[pl.DataFrame | None, list[ColumnOutcome]]:
    """A validated part redacted (None when the contract rejects PII found in it), and what
    redaction did to each column; undeclared fields not in ``classified`` are classified on
    this part's sample and added to it."""
    plan, outcomes = plan_redaction(
        frame.drop(ROW_PLACE, strict=False),
        contract.policies,
        key,
        engine=engine,
        detection=contract.detection,
        undeclared=contract.undeclared_pii,
        classified=classified,
    )
    if any(o.action == "reject" for o in outcomes):
        return None, outcomes
    redacted = plan.collect()
    if ROW_PLACE in frame.columns:
        redacted = redacted.with_columns(frame.get_column(ROW_PLACE))
    return redacted, outcomes


def redact(batch: Batch, frame: pl.DataFrame, services: IngestContext) -> pl.DataFrame:
    """Redact a part: declared columns, free text, and PII found in undeclared columns (each
    undeclared field classified once, on the first part's sample; texts analysed once)."""
    parts = batch.require_parts()
    redacted, outcomes = redact_part(
        frame, batch.contract, services.redaction_key, parts.memo, parts.classified
    )
    parts.outcomes.append(outcomes)
    if redacted is None:
        parts.halted = True  # refused at the end, unless validation refuses it first
        return frame.clear()
    return redacted


def hand_off(batch: Batch, frame: pl.DataFrame, services: IngestContext) -> pl.DataFrame:
    """A run spread over workers: the validated part goes to whichever worker takes it, to be
    redacted and stored there (``gateway.spread``)."""
    spread = batch.require_parts().spread
    assert spread is not None
    spread.hand_off(frame)
    return frame.clear()


def write(batch: Batch, frame: pl.DataFrame, services: IngestContext) -> pl.DataFrame:
    """Stage a redacted part in the snapshot store (durable, hashed, not yet visible): it
    becomes one part of the version. Nothing raw is written."""
    parts = batch.require_parts()
    if parts.halted:
        return frame
    parts.staged.append(services.snapshots.stage(frame.lazy()))
    parts.sample.add(frame)
    return frame


# A part of an upload already bound to be refused is only validated (``Parts.halted``).
PART_STAGES: tuple[
    tuple[str, Callable[[Batch, pl.DataFrame, IngestContext], pl.DataFrame]], ...
] = (
    ("parse", parse),
    ("validate", validate),
    ("redact", redact),
    ("version", write),
)
# A run spread over workers: they redact and store (``Spread.gather`` collects what they did).
SPREAD_PART_STAGES = (*PART_STAGES[:2], ("redact", hand_off))


# -- after the last part -----------------------------------------------------------------


def finish_validation(batch: Batch, services: IngestContext) -> Batch:
    """Run the whole-column checks (uniqueness across parts) and merge every part's failures
    into one report; a failing upload stops here."""
    parts = batch.require_parts()
    report, dropped = parts.validation.finish()
    batch = replace(batch, report=report, dropped=dropped)
    holding = parts.holding
    if holding is not None:
        late = parts.validation.late
        if report.holds and late is not None and not late.is_empty():
            hold_late(batch, services, holding, late)
        if report.holds:
            holding.close()
        else:
            holding.discard()
    refusal = None
    if not report.valid:
        refusal = ContractViolation(
            f"the upload violates contract {batch.contract.dataset} {batch.contract.version}: "
            f"{len(report.failures)} failing check(s)",
            report=report.as_dict(),
        )
        held = batch.held_summary()
        if held is not None:  # no row passed: the whole upload is held for review
            refusal.extensions["quarantine"] = held
    return replace(batch, refusal=refusal)


def hold_late(batch: Batch, services: IngestContext, holding: Holding, late: pl.DataFrame) -> None:
    """Hold the rows whole-column checks failed: the upload is read again for those not held
    yet (their parts are long gone), and those held already get the further failures."""
    failing = held_failures(late)
    known = failing.get_column(ROW_PLACE).is_in(holding.held_places().implode())
    holding.add(failing.filter(known))
    fresh = failing.filter(~known)
    if fresh.is_empty():
        return
    parts = batch.require_parts()
    settings = services.settings
    limits = DecodeLimits.of(settings)
    assert batch.payload is not None
    assert batch.format is not None
    offset = 0
    places = fresh.get_column(ROW_PLACE)
    for frame in read_chunks(
        batch.payload, batch.format, batch.contract.dtypes, limits, settings.ingest_chunk_rows
    ):
        if parts.renamed is not None:
            frame = frame.rename(parts.renamed)
        here = fresh.filter(places.is_between(offset, offset + frame.height - 1))
        if not here.is_empty():
            rows = frame.gather(here.get_column(ROW_PLACE) - offset)
            holding.add(
                rows.with_columns(here.get_column(ROW_PLACE), here.get_column(HELD_FAILURES))
            )
        offset += frame.height


def finish_redaction(batch: Batch, services: IngestContext) -> Batch:
    """What redaction did to each column over every part; PII in an undeclared column that
    the contract rejects refuses the upload."""
    parts = batch.require_parts()
    if parts.spread is not None:
        run_id = batch.job.run_id
        gathered, staged = parts.spread.gather(
            lambda done: record_progress(services, run_id, parts.rows_read, done, read=True)
        )
        parts.outcomes.extend(gathered)
        parts.staged.extend(staged)
    outcomes = merge_outcomes(parts.outcomes)
    if parts.memo is not None:
        parts.memo.close()
    contract = batch.contract
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
    return replace(batch, pii=tuple(outcomes), refusal=refusal)


def version(batch: Batch, services: IngestContext) -> Batch:
    """The version's parts, as staged (less the rows whole-column checks dropped, where a
    drop_invalid_rows contract drops any), and the profile of what was read."""
    parts = batch.require_parts()
    assert parts.staged, "version ran without a written part"
    staged = list(parts.staged)
    if parts.places:
        dropped = batch.dropped if batch.dropped is not None else pl.Series([], dtype=pl.Int64)
        for index, part in enumerate(staged):
            kept = pl.scan_parquet(part.path).filter(~pl.col(ROW_PLACE).is_in(dropped.implode()))
            staged[index] = services.snapshots.stage(kept.drop(ROW_PLACE))
            parts.staged.append(staged[index])  # discarded with the rest if the run fails
            drop_staged(services.snapshots, part)
    snapshot = StagedVersion(tuple(staged))
    batch = replace(batch, snapshot=snapshot, profile=upload_profile(batch, staged=True))
    checkpoint(services, "version:staged")
    return batch


def version_drift(
    services: IngestContext,
    dataset_name: str,
    files: list[Path],
    rows: int,
    policy: DriftPolicy,
    known: dict[str, tuple[int, int]] | None = None,
    sampled: pl.DataFrame | None = None,
) -> dict[str, Any] | None:
    """A new version's drift profile (from its staged ``files``), and its report against the
    dataset's latest version and its pinned reference (their profiles outlive their data).
    None when it could not be measured: drift never fails an ingest by accident."""
    try:
        return _version_drift(services, dataset_name, files, rows, policy, known, sampled)
    except Exception as exc:
        log.error("drift of %s not measured: %s", dataset_name, redacted_traceback(exc))
        return None


def _version_drift(
    services: IngestContext,
    dataset_name: str,
    files: list[Path],
    rows: int,
    policy: DriftPolicy,
    known: dict[str, tuple[int, int]] | None,
    sampled: pl.DataFrame | None,
) -> dict[str, Any]:
    new, counts = measure_profile(files, rows, services.redaction_key, known, sampled)
    with Session(services.engine) as session:
        dataset = dataset_by_name(session, dataset_name)
        wanted = {"previous": dataset.latest_version, "reference": dataset.drift_reference}
        baselines = []
        for label, number in wanted.items():
            if not number or (label == "reference" and number == wanted["previous"]):
                continue
            row = session.exec(
                select(DatasetVersion).where(
                    DatasetVersion.dataset_id == dataset.id, DatasetVersion.number == number
                )
            ).first()
            if row is not None and (row.drift or {}).get("profile"):
                baselines.append((label, number, row.drift["profile"]))  # type: ignore[index]
    return {"profile": new, "report": drift_report(new, baselines, policy, counts)}


def measure_drift(
    batch: Batch, services: IngestContext, snapshot: StagedVersion
) -> dict[str, Any] | None:
    """The upload's drift (``version_drift``), from the sample kept as its parts were written
    and the counts the ingest made.

    Raises:
        DriftRejected: a column drifted beyond a threshold whose action is ``reject``.
    """
    started = time.perf_counter()
    # The ingest counted nulls and distinct values as it read; rows it held back aside, they
    # are the stored data's (a redacted column keeps its nulls, a pseudonym its distinctness).
    counted = batch.profile.columns if batch.profile is not None and not batch.holds else ()
    known = {c.column: (c.nulls, c.distinct) for c in counted}
    parts = batch.parts
    sampled = parts.sample.sample() if parts is not None and parts.spread is None else None
    files = [part.path for part in snapshot.parts]
    contract = batch.contract
    found = version_drift(
        services, contract.dataset, files, batch.stored_rows, contract.drift, known, sampled
    )
    batch.timings["drift"] = time.perf_counter() - started
    if found is not None and found["report"]["status"] == "reject":
        comparisons = found["report"]["comparisons"]
        drifted = sorted({c for comp in comparisons for c in comp["drifted"]})
        raise DriftRejected(
            f"column(s) {', '.join(drifted)} drifted beyond the contract's limits "
            f"(contract {contract.dataset} {contract.version}); nothing was stored",
            drift=found["report"],
        )
    return found


def record(batch: Batch, services: IngestContext) -> Batch:
    """Publish the snapshot and profile the data, then number and record the version with the
    run and its COMPLETE event in one short transaction: the dataset lock (on SQLite the
    database's write lock) is held for the bookkeeping only, never for an upload or a scan."""
    snapshot = batch.snapshot
    assert snapshot is not None
    assert batch.report is not None
    rows = batch.stored_rows
    schema = pl.read_parquet_schema(snapshot.parts[0].path)
    profile = batch.profile
    with Session(services.engine) as session:
        dataset_row = dataset_by_name(session, batch.contract.dataset)
        known = version_by_hash(session, dataset_row, snapshot.content_hash)
    drift = None if known is not None else measure_drift(batch, services, snapshot)
    started = time.perf_counter()  # "record": what follows; "drift" is timed on its own
    key = snapshot.key(batch.contract.dataset, batch.job.run_id)
    published: str | None = None
    if known is None:  # identical data already stored needs no new object
        publish_version(services.snapshots, snapshot, key)
        published = key
        checkpoint(services, "record:published")
    held: str | None = None
    try:
        held = batch.stash_held(services)
        with unit_of_work(services.engine) as session:
            dataset = lock_dataset(session, batch.contract.dataset)
            run = lock_running_run(session, batch.job.run_id)
            if run is None:
                raise Interrupted(
                    "this ingest was marked interrupted while it ran; nothing was stored, "
                    "upload again"
                )
            existing = version_by_hash(session, dataset, snapshot.content_hash)
            if existing is None and published is None:
                # The identical version was deleted (retention, erasure) since it was looked
                # up: this data is stored anew. Rare, so under the lock.
                publish_version(services.snapshots, snapshot, key)
                published = key
            if existing is not None:
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
                    validation_summary={**batch.report.summary(), **batch.extra_summary()},
                    pii_summary=pii_report(batch.pii),
                    created_at=utcnow(),
                    drift=drift,
                )
                dataset.latest_version = number
                session.add(dataset)
                session.add(stored)
                created = True
            batch = replace(batch, version=stored, created=created)
            event = ingest_complete(
                batch.job,
                utcnow(),
                stored_output(batch, services, profile),
                held=batch.held_output(),
            )
            # The run row is written in this transaction, so its "record" time excludes the commit.
            batch.timings["record"] = time.perf_counter() - started
            finish_run(run, batch, "accepted" if held is None else "quarantined")
            if held is not None:
                session.add(batch.held_batch(services, held, stored.number))
            session.add(run)
            store_event(session, event)
    except BaseException:
        if published is not None:
            delete_version(services.snapshots, published)  # this run's own: nobody refers to it
        if held is not None:
            services.snapshots.delete(held)
        raise
    if published is not None and not created:
        delete_version(services.snapshots, published)  # an identical upload got there first
    services.lineage.notify()
    return batch


# After the last part. Each name is also a stage of PART_STAGES but "record": a run shows the
# stage it is in, and its timings add up each stage's time over every part.
STAGES: tuple[tuple[str, Callable[[Batch, IngestContext], Batch]], ...] = (
    ("validate", finish_validation),
    ("redact", finish_redaction),
    ("version", version),
    ("record", record),
)
STAGE_NAMES = ("parse", "validate", "redact", "version", "record")
