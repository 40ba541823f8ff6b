"""One upload spread over many workers.

The worker that takes an asynchronous run (the *coordinator*) reads, parses and validates the
upload part by part, as always: validation sees every part in order, so uniqueness across
parts, global row numbers and the merged report are exactly those of one worker. Redaction,
where the time goes (named-entity recognition on free text), is what spreads: each validated
part is sealed under the run's key into the store's staging area (``_uploads/<run>/``), recorded
as an ``ingest_part`` row and queued as a job of its own, in one transaction. Any worker takes
a queued part (a compare-and-set on its row, so two never take the same one), redacts it with
the classification the coordinator made of undeclared text on its first sample (kept on the
part's row: names and findings, never a value), stores the redacted part under the run's
folder and marks it done. The coordinator takes parts too once it has read everything, then
waits for the rest; the version is recorded by it, once, from the parts in order.

- A worker that dies with a part: recovery (in any live process) queues the part again.
- A coordinator that dies: recovery queues the whole run again; its next attempt cancels the
  parts of the one before and starts afresh, and a part finished for a cancelled attempt is
  removed by the worker that finished it.
- A worker whose contract differs from the coordinator's (a deployment half done) puts the part
  back for the coordinator rather than redact it under other rules.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlalchemy import ColumnElement, update
from sqlmodel import Session, col, select

from gateway.db import unit_of_work
from gateway.models import IngestPart, IngestRun, as_utc, utcnow
from gateway.sealed import run_key, seal, unseal
from gateway.snapshots import StagedSnapshot, spread_folder
from gateway.stages import checkpoint, redact_part
from gateway.staging import STAGING_PREFIX
from gateway.uploads import UploadSpool
from gateway.validation import ROW_PLACE
from privacy import ColumnOutcome, DetectionMemo, Finding, classify_undeclared

if TYPE_CHECKING:
    from gateway.context import WorkerContext
    from gateway.contracts import Contract

log = logging.getLogger(__name__)

WAIT_SECONDS = 0.2
# Parts this process's part jobs took, for the crash tests' ``part-job:N`` checkpoint.
_taken = 0


def input_key(run_id: str, attempt: int, index: int) -> str:
    """Where a validated part waits, sealed, for a worker."""
    return f"{STAGING_PREFIX}/{run_id}/part-{attempt}-{index:05d}"


def part_key(services: WorkerContext, run_id: str, attempt: int, index: int) -> bytes:
    """The key that seals one part: derived for that part alone, so a part moved to another's
    place in the store does not open there."""
    return run_key(services.redaction_key, f"{run_id}/part-{attempt}-{index}")


class PartFailed(Exception):
    """A part failed in a worker; the error's type only, never its text (it may quote data)."""


@dataclass(frozen=True)
class PartPlan:
    """What a worker needs besides a part's rows: the contract the coordinator validated it
    with, and the coordinator's classification of the upload's undeclared text so far. Kept
    on the part's row, in the database: the store is not trusted with it (whoever could edit
    it there could have a column of personal data taken for a clean one)."""

    dataset: str
    fingerprint: str
    classified: dict[str, Finding]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PartPlan:
        classified = {k: Finding(**v) for k, v in raw["classified"].items()}
        return cls(raw["dataset"], raw["fingerprint"], classified)


@dataclass
class Spread:
    """The coordinator's side of a spread run: hands validated parts off, then works on them
    with the other workers and gathers the outcome."""

    services: WorkerContext
    run_id: str
    attempt: int
    contract: Contract
    memo: DetectionMemo | None = None
    spool: UploadSpool | None = None
    classified: dict[str, Finding] = field(default_factory=dict)
    handed: int = 0
    # Spread whatever the upload holds (DATAGATE_INGEST_SPREAD=always), not only free text.
    always: bool = False

    def worth(self, first: pl.DataFrame) -> bool:
        """Whether to spread an upload, given its first part as read: with free text in it
        to scan (where the time goes), or always when so configured."""
        scanned = [
            p.column for p in self.contract.policies if p.is_free_text and p.column in first.columns
        ]
        return self.always or any(first[c].null_count() < first.height for c in scanned)

    def start(self) -> None:
        """Cancel what an earlier attempt of the run left (its coordinator died)."""
        _cancel(self.services, self.run_id)

    def hand_off(self, frame: pl.DataFrame) -> None:
        """Seal a validated part into the staging area, then record and queue it at once."""
        services = self.services
        assert services.queue is not None, "a spread run without a job queue"
        assert self.spool is not None
        if self.memo is not None:
            classify_undeclared(
                frame.drop(ROW_PLACE, strict=False),
                self.contract.policies,
                self.memo,
                self.contract.detection,
                self.classified,
            )
        plan = PartPlan(self.contract.dataset, self.contract.fingerprint, self.classified)
        index = self.handed
        plain, handle = self.spool.new_file(".arrow")
        handle.close()
        sealed = plain.with_name(f"{plain.name}.sealed")
        try:
            frame.write_ipc(plain, compression="lz4")
            seal(plain, sealed, part_key(services, self.run_id, self.attempt, index))
            plain.unlink()
            services.snapshots.put_file(input_key(self.run_id, self.attempt, index), sealed)
        finally:
            sealed.unlink(missing_ok=True)
        queue = services.queue
        with unit_of_work(services.engine) as session:
            session.add(
                IngestPart(
                    run_id=self.run_id,
                    attempt=self.attempt,
                    index=index,
                    status="queued",
                    rows=frame.height,
                    plan=plan.to_dict(),
                    updated_at=utcnow(),
                )
            )
            session.flush()
            queue.enqueue_part(session, self.run_id)
        self.handed += 1

    def gather(
        self, progress: Callable[[int], None]
    ) -> tuple[list[list[ColumnOutcome]], list[StagedSnapshot]]:
        """Work on queued parts until none is left, wait for those other workers have, and
        return every part's redaction outcomes and stored file, in order.

        Raises:
            PartFailed: a part failed in a worker.
        """
        services = self.services
        done_before = -1
        while True:
            part = claim_part(services, self.run_id, self.attempt)
            if part is not None:
                work_on_part(services, part, self.contract, self.memo)
                continue
            parts = _parts(services, self.run_id, self.attempt)
            failed = [p for p in parts if p.status in ("failed", "cancelled")]
            if failed:  # (cancelled: by a later attempt of this run; this one is over)
                part = failed[0]
                raise PartFailed(f"part {part.index} {part.status} in a worker: {part.error}")
            done = sum(p.status == "done" for p in parts)
            if done != done_before:
                progress(done)
                done_before = done
            if done == len(parts) == self.handed:
                break
            self._take_back_overdue(parts)
            time.sleep(WAIT_SECONDS)  # others are on it; a dead one's part comes back queued
        outcomes = [[ColumnOutcome(**o) for o in p.outcomes or []] for p in parts]
        staged = [
            StagedSnapshot(
                path=services.snapshots.local_path(p.output_key),
                content_hash=p.content_hash or "",
                byte_size=p.byte_size or 0,
                key=p.output_key,
            )
            for p in parts
            if p.output_key is not None
        ]
        return outcomes, staged

    def _take_back_overdue(self, parts: list[IngestPart]) -> None:
        """Queue again a part a live worker has held for too long (it hangs): recovery only
        notices workers that died."""
        services = self.services
        limit = timedelta(seconds=services.settings.ingest_part_timeout_seconds)
        now = utcnow()
        for part in parts:
            if part.status != "running" or now - as_utc(part.updated_at) <= limit:
                continue
            with unit_of_work(services.engine) as session:
                again = session.execute(
                    update(IngestPart)
                    .where(*_same(part), col(IngestPart.status) == "running")
                    .values(status="queued", instance=None, updated_at=now)
                )
                if again.rowcount == 1:  # type: ignore[attr-defined]
                    assert services.queue is not None
                    services.queue.enqueue_part(session, self.run_id)
                    log.warning(
                        "run %s part %d: held by %s for over %s; queued again",
                        self.run_id,
                        part.index,
                        part.instance,
                        limit,
                    )

    def close(self, *, recorded: bool) -> None:
        """The run is over: cancel the parts still waiting or being worked on (their workers
        remove what they finish) and remove their sealed inputs; unless the version was
        ``recorded``, remove the parts already stored too."""
        _cancel(self.services, self.run_id, keep_done=recorded)


def _parts(services: WorkerContext, run_id: str, attempt: int) -> list[IngestPart]:
    with Session(services.engine) as session:
        return list(
            session.exec(
                select(IngestPart)
                .where(IngestPart.run_id == run_id, IngestPart.attempt == attempt)
                .order_by(col(IngestPart.index))
            ).all()
        )


def run_parts(services: WorkerContext, run_id: str) -> list[IngestPart]:
    """The parts of a run's latest attempt, in order (empty when it was not spread)."""
    with Session(services.engine) as session:
        latest = session.exec(
            select(IngestPart.attempt)
            .where(IngestPart.run_id == run_id)
            .order_by(col(IngestPart.attempt).desc())
            .limit(1)
        ).first()
    return [] if latest is None else _parts(services, run_id, latest)


def claim_part(
    services: WorkerContext, run_id: str, attempt: int | None = None
) -> IngestPart | None:
    """Take the first queued part of the run (of ``attempt`` only, when given) for this
    process: a compare-and-set on its row, so no two workers take the same part."""
    while True:
        with Session(services.engine) as session:
            query = select(IngestPart).where(
                IngestPart.run_id == run_id, IngestPart.status == "queued"
            )
            if attempt is not None:
                query = query.where(IngestPart.attempt == attempt)
            part = session.exec(
                query.order_by(col(IngestPart.attempt), col(IngestPart.index)).limit(1)
            ).first()
        if part is None:
            return None
        with unit_of_work(services.engine) as session:
            taken = session.execute(
                update(IngestPart)
                .where(*_same(part), col(IngestPart.status) == "queued")
                .values(
                    status="running",
                    instance=services.instance.id,
                    taken=col(IngestPart.taken) + 1,
                    updated_at=utcnow(),
                )
            )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            part.status, part.instance = "running", services.instance.id
            return part
        # Another worker took it first: look again.


def _same(part: IngestPart) -> tuple[ColumnElement[bool], ...]:
    return (
        col(IngestPart.run_id) == part.run_id,
        col(IngestPart.attempt) == part.attempt,
        col(IngestPart.index) == part.index,
    )


def _finish(services: WorkerContext, part: IngestPart, **values: object) -> bool:
    """Record a part's end, if it is still this process's to record."""
    with unit_of_work(services.engine) as session:
        result = session.execute(
            update(IngestPart)
            .where(
                *_same(part),
                col(IngestPart.status) == "running",
                col(IngestPart.instance) == services.instance.id,
            )
            .values(updated_at=utcnow(), **values)
        )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def work_on_part(
    services: WorkerContext,
    part: IngestPart,
    contract: Contract,
    memo: DetectionMemo | None,
    *,
    hang_at: str | None = None,
) -> None:
    """Redact a part this process took and store it; a part whose run was cancelled or given
    to another worker meanwhile leaves nothing behind. (``hang_at``: the crash tests'
    checkpoint, between redacting and storing.)"""
    assert part.plan is not None, "a part without its plan"
    plan = PartPlan.from_dict(part.plan)
    spool = UploadSpool(services.work_dir)
    output: str | None = None
    try:
        opened, handle = spool.new_file(".arrow")
        handle.close()
        source = input_key(part.run_id, part.attempt, part.index)
        unseal(
            services.snapshots.local_path(source),
            opened,
            part_key(services, part.run_id, part.attempt, part.index),
        )
        frame = pl.read_ipc(opened)
        redacted, outcomes = redact_part(
            frame, contract, services.redaction_key, memo, dict(plan.classified)
        )
        del frame
        if hang_at is not None:
            checkpoint(services, hang_at)
        staged = None
        if redacted is not None:
            staged = services.snapshots.stage(redacted.lazy())
            del redacted
            name = f"part-{part.index:05d}-{uuid.uuid4().hex[:8]}.parquet"
            output = f"{spread_folder(plan.dataset, part.run_id)}/{name}"
            services.snapshots.publish(staged, output)
        recorded = _finish(
            services,
            part,
            status="done",
            output_key=output,
            content_hash=None if staged is None else staged.content_hash,
            byte_size=None if staged is None else staged.byte_size,
            outcomes=[asdict(o) for o in outcomes],
        )
        if not recorded:
            log.info("run %s part %d: no longer this worker's; dropped", part.run_id, part.index)
            if output is not None:
                services.snapshots.delete(output)
            return
        services.snapshots.delete(source)
    except Exception as exc:
        log.error("run %s part %d failed: %s", part.run_id, part.index, type(exc).__name__)
        if output is not None:
            services.snapshots.delete(output)
        _finish(services, part, status="failed", error=type(exc).__name__)
    finally:
        spool.close()


def run_part_job(services: WorkerContext, run_id: str) -> int:
    """The part job: take the run's queued parts one after another until none is left.
    Returns how many this worker redacted."""
    global _taken
    engine = services.pii_engine
    memo = None if engine is None else DetectionMemo(engine)
    worked = 0
    try:
        while (part := claim_part(services, run_id)) is not None:
            assert part.plan is not None, "a part without its plan"
            plan = PartPlan.from_dict(part.plan)
            contract = services.catalog.get(plan.dataset)
            if contract is None or contract.fingerprint != plan.fingerprint:
                # Not the contract the upload was validated with: leave it to the coordinator.
                _finish(services, part, status="queued", instance=None)
                log.warning(
                    "run %s: this worker's contract %s differs from the coordinator's; "
                    "part %d left to it",
                    run_id,
                    plan.dataset,
                    part.index,
                )
                return worked
            _taken += 1
            work_on_part(services, part, contract, memo, hang_at=f"part-job:{_taken}")
            worked += 1
    finally:
        if memo is not None:
            memo.close()
    return worked


def _cancel(services: WorkerContext, run_id: str, *, keep_done: bool = False) -> None:
    """Cancel a run's parts not done yet (and the done ones too unless ``keep_done``), and
    remove what they left in the store: sealed inputs, and the parts stored for them."""
    with unit_of_work(services.engine) as session:
        statuses = ("queued", "running") if keep_done else ("queued", "running", "done")
        parts = list(
            session.exec(
                select(IngestPart).where(
                    IngestPart.run_id == run_id, col(IngestPart.status).in_(statuses)
                )
            ).all()
        )
        for part in parts:
            part.status = "cancelled"
            part.updated_at = utcnow()
            session.add(part)
    for part in parts:
        services.snapshots.delete(input_key(part.run_id, part.attempt, part.index))
        if part.output_key is not None:
            services.snapshots.delete(part.output_key)


def requeue_parts(services: WorkerContext, dead: set[str]) -> list[str]:
    """Queue again the parts the dead processes were working on, for runs still running
    (recovery; the parts of a run that ended are cancelled); returns ``<run>/<index>`` of
    each part queued again."""
    if not dead or services.queue is None:
        return []
    requeued: list[str] = []
    with unit_of_work(services.engine) as session:
        parts = session.exec(
            select(IngestPart, IngestRun.status)
            .join(IngestRun, col(IngestRun.id) == col(IngestPart.run_id))
            .where(IngestPart.status == "running", col(IngestPart.instance).in_(dead))
            .with_for_update()
        ).all()
        again: set[str] = set()
        for part, run_status in parts:
            part.instance, part.updated_at = None, utcnow()
            if run_status == "running":
                part.status = "queued"
                again.add(part.run_id)
                requeued.append(f"{part.run_id}/{part.index}")
            else:
                part.status = "cancelled"
            session.add(part)
        session.flush()
        for run_id in sorted(again):
            services.queue.enqueue_part(session, run_id)
    return requeued
