"""Asynchronous ingests: one code path for the work, two ways to schedule it.

An upload answered with 202 is staged whole in the snapshot store (``_uploads/<run>/``: the
bytes as sent, sealed under a key derived for the run (``gateway.sealed``), and an order naming
how to read them), then one transaction records the queued run, its START event and the job. A
worker later runs the same pipeline as a synchronous upload and deletes the staged files,
whatever the outcome.

- PostgreSQL: the queue is procrastinate's, in the metadata database; the job is inserted by
  ``procrastinate_defer_jobs_v1`` inside the run's transaction, so there is never a run without
  a job or a job without a run. ``datagate worker`` processes, on any machine that reaches the
  database and the snapshot store, take the jobs.
- SQLite (the embedded default): the gateway runs jobs in its own thread pool, submitted when
  the run's transaction commits; at start it resubmits runs still queued from before a stop.

A run with free text to scan is spread: its parts are jobs of their own (``PART_TASK``), taken
by any worker (``gateway.spread``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event, func, text
from sqlmodel import Session, select

from gateway.db import unit_of_work
from gateway.errors import DatagateError, StageFailed, UnsupportedFormat
from gateway.formats import declared_format
from gateway.models import IngestPart, IngestRun, Revalidation, as_utc, utcnow
from gateway.pipeline import run_pipeline
from gateway.revalidation import run_revalidation
from gateway.runs import fail_run, job_for_run, new_run_id, scrub, shown_filename, start_run
from gateway.sealed import run_key, unseal
from gateway.spread import Spread, run_part_job
from gateway.staging import (
    IngestOrder,
    discard_staged,
    order_key,
    stage_upload,
    upload_key,
)
from gateway.uploads import ReceivedUpload, UploadSpool

if TYPE_CHECKING:
    from gateway.context import JobQueue, WorkerContext
    from gateway.contracts import Contract
    from lineage import IngestJob

log = logging.getLogger(__name__)

QUEUE = "ingest"
INGEST_TASK = "datagate.ingest"
PART_TASK = "datagate.ingest_part"
REVALIDATE_TASK = "datagate.revalidate"


class ProcrastinateQueue:
    """The job goes into procrastinate's table in the same PostgreSQL transaction."""

    def enqueue(self, session: Session, run_id: str) -> None:
        self._defer(session, INGEST_TASK, run_id=run_id)

    def enqueue_part(self, session: Session, run_id: str) -> None:
        self._defer(session, PART_TASK, run_id=run_id)

    def enqueue_revalidation(self, session: Session, revalidation_id: str) -> None:
        # A worker that died mid-way left its job "doing": finish it, as for a run.
        self._finish_abandoned(session, REVALIDATE_TASK, "revalidation_id", revalidation_id)
        self._defer(session, REVALIDATE_TASK, revalidation_id=revalidation_id)

    @staticmethod
    def _defer(session: Session, task: str, **args: str) -> None:
        session.execute(
            text(
                "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, :task, 0, NULL, NULL, "
                "CAST(:args AS jsonb), NULL)::procrastinate_job_to_defer_v1])"
            ),
            {"queue": QUEUE, "task": task, "args": json.dumps(args)},
        )

    @staticmethod
    def _finish_abandoned(session: Session, task: str, arg: str, value: str) -> None:
        session.execute(
            text(
                "SELECT procrastinate_finish_job_v1(id, 'failed', false) FROM procrastinate_jobs "
                "WHERE status = 'doing' AND task_name = :task AND args->>:arg = :value"
            ),
            {"task": task, "arg": arg, "value": value},
        )

    def requeue(self, session: Session, run_id: str) -> None:
        # The dead worker's job would stay "doing" for ever: finish it as failed, through
        # procrastinate's own function, then defer a new one.
        self._finish_abandoned(session, INGEST_TASK, "run_id", run_id)
        self.enqueue(session, run_id)

    def close(self) -> None:
        return None


class LocalQueue:
    """The embedded default: jobs run in this process's threads, submitted on commit."""

    def __init__(
        self,
        workers: int,
        run: Callable[[str], None],
        run_parts: Callable[[str], object],
        revalidate: Callable[[str], object],
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
        self._run = run
        self._run_parts = run_parts
        self._revalidate = revalidate

    def enqueue(self, session: Session, run_id: str) -> None:
        event.listen(session, "after_commit", lambda _: self.submit(run_id), once=True)

    def enqueue_part(self, session: Session, run_id: str) -> None:
        event.listen(
            session,
            "after_commit",
            lambda _: self._pool.submit(self._logged, run_id, self._run_parts),
            once=True,
        )

    def enqueue_revalidation(self, session: Session, revalidation_id: str) -> None:
        event.listen(
            session,
            "after_commit",
            lambda _: self.submit_revalidation(revalidation_id),
            once=True,
        )

    def submit_revalidation(self, revalidation_id: str) -> None:
        """Run a revalidation in the pool."""
        self._pool.submit(self._logged, revalidation_id, self._revalidate)

    def requeue(self, session: Session, run_id: str) -> None:
        self.enqueue(session, run_id)  # a thread of a process that died left nothing behind

    def submit(self, run_id: str) -> None:
        """Run the job in the pool."""
        self._pool.submit(self._logged, run_id, self._run)

    @staticmethod
    def _logged(run_id: str, job: Callable[[str], object]) -> None:
        # A pool swallows what its jobs raise: say it (the run stays running until recovery).
        try:
            job(run_id)
        except Exception as exc:
            log.error("job for %s failed: %s", run_id, type(exc).__name__)

    def close(self) -> None:
        # Jobs not started stay queued runs; the next start resubmits them.
        self._pool.shutdown(wait=True, cancel_futures=True)


def build_queue(services: WorkerContext) -> JobQueue:
    """procrastinate on PostgreSQL; this process's threads on SQLite."""
    if services.engine.dialect.name == "postgresql":
        return ProcrastinateQueue()
    return LocalQueue(
        services.settings.local_ingest_workers,
        lambda run: run_ingest(services, run),
        lambda run: run_part_job(services, run),
        lambda revalidation: run_revalidation(services, revalidation),
    )


def queue_state(engine: Engine) -> tuple[int, float | None]:
    """How many jobs wait for a worker (queued uploads, parts of uploads spread over workers,
    revalidations), and for how many seconds the oldest has."""
    with Session(engine) as session:
        runs, oldest_run = session.exec(
            select(func.count(), func.min(IngestRun.started_at)).where(IngestRun.status == "queued")
        ).one()
        parts, oldest_part = session.exec(
            select(func.count(), func.min(IngestPart.updated_at)).where(
                IngestPart.status == "queued"
            )
        ).one()
        checks, oldest_check = session.exec(
            select(func.count(), func.min(Revalidation.created_at)).where(
                Revalidation.status == "queued"
            )
        ).one()
    moments = (oldest_run, oldest_part, oldest_check)
    waiting = [as_utc(moment) for moment in moments if moment is not None]
    age = None if not waiting else round((utcnow() - min(waiting)).total_seconds(), 3)
    return int(runs) + int(parts) + int(checks), age


def resume_local_jobs(services: WorkerContext, queue: LocalQueue) -> int:
    """Resubmit the runs and revalidations a previous process queued but never started
    (SQLite only)."""
    with Session(services.engine) as session:
        queued = session.exec(select(IngestRun.id).where(IngestRun.status == "queued")).all()
        revalidations = session.exec(
            select(Revalidation.id).where(Revalidation.status == "queued")
        ).all()
    for run_id in queued:
        queue.submit(run_id)
    for revalidation_id in revalidations:
        queue.submit_revalidation(revalidation_id)
    return len(queued) + len(revalidations)


def start_queued_run(
    services: WorkerContext,
    contract: Contract,
    source: str | None,
    uploader: str,
    request_id: str | None,
    received: ReceivedUpload,
    requested_format: str | None,
    run_id: str | None = None,
) -> IngestJob:
    """Stage the upload, then record the queued run (``run_id``: the one the upload was
    sealed for as it arrived), its START event and its job at once.

    Raises:
        InvalidRequest: ``source`` is malformed.
        UnsupportedFormat: ``?format=`` or the Content-Type names a format Datagate cannot read.
    """
    assert services.queue is not None, "services without a job queue"
    queue = services.queue
    # Refused now rather than by the worker; and what waits is a format, not client text.
    try:
        declared = declared_format(requested_format, received.content_type)
    except UnsupportedFormat as error:
        error.detail = scrub(services, contract, error.detail)  # it quotes the client's words
        raise
    assert run_id is not None or not received.sealed, "a sealed upload without its run"
    run_id = run_id or new_run_id()
    order = IngestOrder(
        run_id=run_id,
        size=received.size,
        filename=shown_filename(services, contract, received.filename),
        content_type=received.content_type if declared else None,
        requested_format=declared if requested_format else None,
        uploader=uploader,
        request_id=request_id,
    )
    stage_upload(services, order, received.path, sealed=received.sealed)
    try:
        return start_run(
            services,
            contract,
            source,
            uploader,
            request_id,
            run_id=run_id,
            queued=lambda session: queue.enqueue(session, run_id),
        )
    except BaseException:
        discard_staged(services, run_id)
        raise


def run_ingest(services: WorkerContext, run_id: str) -> None:
    """The job: take the queued run, run the pipeline on its staged upload, clean up.

    A run that is no longer queued (already taken, or failed by recovery) is left alone, so a
    job delivered twice ingests once. Refusals and failures are recorded on the run, as for a
    synchronous upload; the job itself succeeds.
    """
    with unit_of_work(services.engine) as session:
        run = session.exec(
            select(IngestRun).where(IngestRun.id == run_id).with_for_update()
        ).first()
        if run is None or run.status != "queued":
            log.info("run %s is not queued (%s); nothing to do", run_id, run and run.status)
            return
        run.status = "running"
        run.instance = services.instance.id
        session.add(run)
    job = job_for_run(services, run)
    spool = UploadSpool(services.work_dir)
    try:
        try:
            order = IngestOrder.from_json(services.snapshots.get_bytes(order_key(run_id)))
            job = replace(job, request_id=order.request_id)  # the upload's, for its events
            contract = services.catalog.require(run.dataset)
            opened, handle = spool.new_file()
            handle.close()
            unseal(
                services.snapshots.local_path(upload_key(run_id)),
                opened,
                run_key(services.redaction_key, run_id),
            )
            received = ReceivedUpload(
                path=opened,
                size=order.size,
                filename=order.filename,
                content_type=order.content_type,
            )
        except DatagateError as error:  # the contract is gone or broken since the upload
            fail_run(services, job, error)
            return
        except Exception as exc:  # the staged upload cannot be read
            log.error("run %s: staged upload unreadable: %s", run_id, type(exc).__name__)
            fail_run(services, job, StageFailed("queue", exc))
            return
        spread = None
        mode = services.settings.ingest_spread
        if mode != "never":
            always = mode == "always"
            spread = Spread(services, run_id, order.attempts, contract, always=always)
        with contextlib.suppress(DatagateError):  # recorded on the run, like any refusal
            run_pipeline(
                services,
                job,
                contract,
                received,
                spool,
                order.requested_format,
                run.uploader,
                followed=True,
                spread=spread,
            )
    finally:
        spool.close()
        discard_staged(services, run_id)


def procrastinate_app(services: WorkerContext) -> Any:
    """A procrastinate app whose ``datagate.ingest`` task runs ``run_ingest`` (workers)."""
    import procrastinate

    url = services.engine.url.set(drivername="postgresql")
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=url.render_as_string(hide_password=False))
    )

    @app.task(name=INGEST_TASK, queue=QUEUE, pass_context=False)
    def ingest(run_id: str) -> None:
        run_ingest(services, run_id)

    @app.task(name=PART_TASK, queue=QUEUE, pass_context=False)
    def ingest_part(run_id: str) -> None:
        run_part_job(services, run_id)

    @app.task(name=REVALIDATE_TASK, queue=QUEUE, pass_context=False)
    def revalidate(revalidation_id: str) -> None:
        run_revalidation(services, revalidation_id)

    return app
