"""Crash recovery: nothing half-done outlives the process that was doing it.

Every gateway process registers itself in ``gateway_instance`` and keeps a heartbeat. Ingest
runs, staging files and spooled request bodies carry their process's id. When a process dies
(SIGKILL, OOM, power loss), the next process to start — or a live replica, once the dead one's
heartbeat is stale — fails its runs (with a FAIL event), removes its staging and spool files,
and, at start-up, removes published snapshot files that no version row references (a crash
between publishing a file and committing its version). Everything removed is logged.

A version becomes visible only with its row, in one transaction, and numbers are allocated in
that transaction, so a crash never leaves a partial version or a gap in the numbering.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from gateway.context import Instance
from gateway.db import unit_of_work
from gateway.errors import DatasetNotFound, Interrupted
from gateway.lifecycle import stored_keys
from gateway.models import (
    DatasetVersion,
    GatewayInstance,
    IngestRun,
    QuarantineBatch,
    as_utc,
    utcnow,
)
from gateway.outbox import store_event
from gateway.problems import problem_for
from gateway.processes import pid_alive
from gateway.quarantine import HELD_KEY_RUN, QUARANTINE_PREFIX
from gateway.revalidation import requeue_revalidations
from gateway.runs import job_for_run
from gateway.snapshots import MANIFEST, sweep_owned_folders
from gateway.spread import requeue_parts
from gateway.staging import MAX_ATTEMPTS, STAGING_PREFIX, IngestOrder, discard_staged, order_key
from gateway.store import list_datasets, lock_dataset
from lineage import ingest_fail

if TYPE_CHECKING:
    from gateway.context import WorkerContext

log = logging.getLogger(__name__)

STALE_BEATS = 6
# The run id in a snapshot key (``StagedVersion.key``): a file, or a folder of parts.
_RUN_OF_KEY = re.compile(
    r"-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:\.parquet$|/)"
)
# A folder whose owner the database does not know is left alone this long: its process may
# have registered after the sweep read the instance table.
UNKNOWN_OWNER_GRACE = timedelta(hours=1)

# Instances living in this very process (tests build several apps in one process).
_LIVE_HERE: set[str] = set()


def register_instance(engine: Engine) -> Instance:
    """Record this process as a live instance."""
    instance = Instance(id=uuid.uuid4().hex, host=socket.gethostname(), pid=os.getpid())
    now = utcnow()
    with unit_of_work(engine) as session:
        session.add(
            GatewayInstance(
                id=instance.id,
                host=instance.host,
                pid=instance.pid,
                started_at=now,
                heartbeat_at=now,
            )
        )
    _LIVE_HERE.add(instance.id)
    return instance


def deregister_instance(engine: Engine, instance: Instance) -> None:
    """Remove this process's row on a clean shutdown."""
    _LIVE_HERE.discard(instance.id)
    with unit_of_work(engine) as session:
        row = session.get(GatewayInstance, instance.id)
        if row is not None:
            session.delete(row)


def beat(engine: Engine, instance: Instance) -> None:
    """Refresh this process's heartbeat (re-registering it if another process removed it)."""
    with unit_of_work(engine) as session:
        row = session.get(GatewayInstance, instance.id)
        now = utcnow()
        if row is None:
            row = GatewayInstance(
                id=instance.id,
                host=instance.host,
                pid=instance.pid,
                started_at=now,
                heartbeat_at=now,
            )
        row.heartbeat_at = now
        session.add(row)


def is_dead(row: GatewayInstance, me: Instance, now: datetime, stale_after: timedelta) -> bool:
    """Whether ``row`` is a process that has stopped."""
    if row.id in _LIVE_HERE:
        return False
    if row.host == me.host and (row.pid == me.pid or not pid_alive(row.pid)):
        return True
    return now - as_utc(row.heartbeat_at) > stale_after


@dataclass
class RecoveryReport:
    """What one recovery pass did."""

    dead_instances: list[str] = field(default_factory=list)
    interrupted_runs: list[str] = field(default_factory=list)
    requeued_runs: list[str] = field(default_factory=list)
    requeued_parts: list[str] = field(default_factory=list)
    requeued_revalidations: list[str] = field(default_factory=list)
    removed_files: list[str] = field(default_factory=list)
    orphan_snapshots: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.dead_instances
            or self.interrupted_runs
            or self.requeued_runs
            or self.requeued_parts
            or self.requeued_revalidations
            or self.removed_files
            or self.orphan_snapshots
        )


class Recovery:
    """Finds dead processes and undoes what they left half-done."""

    def __init__(self, services: WorkerContext) -> None:
        self.services = services
        self.stale_after = timedelta(seconds=services.settings.heartbeat_seconds * STALE_BEATS)

    def run(self, *, orphans: bool) -> RecoveryReport:
        """One pass; ``orphans`` also compares stored snapshot files with version rows."""
        report = RecoveryReport()
        services = self.services
        # A folder of a process that registers after this read has an unknown owner and a
        # fresh mtime, so the grace period keeps it.
        with Session(services.engine) as session:
            rows = session.exec(select(GatewayInstance)).all()
        now = utcnow()
        me = services.instance
        dead = {r.id for r in rows if is_dead(r, me, now, self.stale_after)}
        known = {r.id for r in rows}
        report.dead_instances = sorted(dead)

        def owner_dead(name: str, mtime: float) -> bool:
            if name in dead:
                return True
            if name in known:
                return False
            return time.time() - mtime > UNKNOWN_OWNER_GRACE.total_seconds()

        report.removed_files += services.snapshots.sweep_staging(owner_dead)
        report.removed_files += sweep_owned_folders(services.settings.tmp_dir, owner_dead)
        outcomes = self._interrupt_runs(dead, known, now)
        report.interrupted_runs = [run for run, outcome in outcomes if outcome == "failed"]
        report.requeued_runs = [run for run, outcome in outcomes if outcome == "queued"]
        report.requeued_parts = requeue_parts(services, dead)  # after the runs' fate
        report.requeued_revalidations = requeue_revalidations(services, dead, known, now)
        if orphans:
            report.orphan_snapshots = self._remove_orphan_snapshots()
            report.removed_files += self._remove_finished_uploads()
        if dead:
            with unit_of_work(services.engine) as session:
                for row_id in dead:
                    row = session.get(GatewayInstance, row_id)
                    if row is not None:
                        session.delete(row)
        _log(report)
        return report

    def _interrupt_runs(
        self, dead: set[str], known: set[str], now: datetime
    ) -> list[tuple[str, str]]:
        services = self.services
        with Session(services.engine) as session:
            running = session.exec(select(IngestRun).where(IngestRun.status == "running")).all()
        orphaned = [
            run.id
            for run in running
            if run.instance is None
            or run.instance in dead
            or (run.instance not in known and now - as_utc(run.started_at) > UNKNOWN_OWNER_GRACE)
        ]
        interrupted = []
        for run_id in orphaned:
            outcome = self._interrupt(run_id)
            if outcome is not None:
                interrupted.append((run_id, outcome))
        if interrupted:
            services.lineage.notify()
        return interrupted

    def _interrupt(self, run_id: str) -> str | None:
        """Fail a run whose process died ("failed"), or queue it again ("queued")."""
        services = self.services
        error = Interrupted(
            "the gateway process running this ingest stopped before it finished; "
            "nothing was stored, upload again"
        )
        problem = problem_for(error)
        with unit_of_work(services.engine) as session:
            run = session.exec(
                select(IngestRun).where(IngestRun.id == run_id).with_for_update()
            ).first()
            if run is None or run.status != "running":
                return None  # another replica got there first
            if self._requeue(session, run):
                return "queued"
            job = job_for_run(services, run)
            run.status = "failed"
            run.error = {
                "type": problem.type,
                "title": problem.title,
                "status": problem.status,
                "detail": error.detail,
            }
            run.finished_at = utcnow()
            session.add(run)
            store_event(session, ingest_fail(job, run.finished_at, f"{problem.title}: {error}"))
        return "failed"

    def _requeue(self, session: Session, run: IngestRun) -> bool:
        """A queued run whose worker died goes back to the queue, its upload still staged,
        for another worker (at most ``MAX_ATTEMPTS`` times in all): nothing of it was stored,
        and the version is recorded in one transaction, so it still yields one version."""
        services = self.services
        if services.queue is None:
            return False
        try:
            order = IngestOrder.from_json(services.snapshots.get_bytes(order_key(run.id)))
        except FileNotFoundError:
            return False  # a synchronous upload: its body died with its process
        if order.attempts >= MAX_ATTEMPTS:
            return False
        retried = replace(order, attempts=order.attempts + 1)
        services.snapshots.put_bytes(order_key(run.id), retried.to_json())
        run.status, run.instance, run.stage = "queued", None, None
        session.add(run)
        services.queue.requeue(session, run.id)
        return True

    def _remove_finished_uploads(self) -> list[str]:
        """Staged uploads of runs that have their outcome (a worker died before removing
        them). One whose run is not recorded yet is left: it may be committing right now."""
        services = self.services
        keys = services.snapshots.keys(f"{STAGING_PREFIX}/")
        run_ids = sorted({key.split("/")[1] for key in keys if key.count("/") >= 2})
        if not run_ids:
            return []
        with Session(services.engine) as session:
            finished = list(
                session.exec(
                    select(IngestRun.id).where(
                        col(IngestRun.id).in_(run_ids),
                        col(IngestRun.status).not_in(("queued", "running")),
                    )
                ).all()
            )
        for run_id in finished:
            discard_staged(services, run_id)
        return [key for key in keys if key.split("/")[1] in finished]

    def _remove_orphan_snapshots(self) -> list[str]:
        services = self.services
        removed: list[str] = []
        with Session(services.engine) as session:
            names = [d.name for d in list_datasets(session)]
        for name in names:
            # Publishing happens under this lock, so no live upload is between its rename
            # and its commit while we compare.
            with unit_of_work(services.engine) as session:
                try:
                    dataset = lock_dataset(session, name)
                except DatasetNotFound:
                    continue
                live = session.exec(
                    select(DatasetVersion.storage_key).where(
                        col(DatasetVersion.dataset_id) == dataset.id,
                        col(DatasetVersion.deleted_at).is_(None),
                    )
                ).all()
                # A version of parts refers to its parts through its manifest (a replayed
                # version to parts of another version); a tombstone to nothing.
                referenced: set[str] = set()
                for key in live:
                    referenced |= stored_keys(services.snapshots, key)
                folders = tuple(
                    key.rsplit("/", 1)[0] + "/" for key in live if key.endswith(MANIFEST)
                )
                # A run publishes before it takes the lock: its object is no orphan while it
                # is still running (its key names it).
                unreferenced = [
                    k
                    for k in services.snapshots.keys(f"{name}/")
                    if k not in referenced and not (folders and k.startswith(folders))
                ]
                owners = {k: m.group(1) for k in unreferenced if (m := _RUN_OF_KEY.search(k))}
                busy = _busy(session, owners.values())
                for key in unreferenced:
                    if owners.get(key) not in busy:
                        services.snapshots.delete(key)
                        removed.append(key)
        return removed + self._remove_orphan_held_rows()

    def _remove_orphan_held_rows(self) -> list[str]:
        """Sealed held rows no quarantine batch refers to (a run that died between storing
        them and recording its batch; unreadable anyway, their seed was never stored)."""
        services = self.services
        keys = services.snapshots.keys(f"{QUARANTINE_PREFIX}/")
        if not keys:
            return []
        removed: list[str] = []
        with Session(services.engine) as session:
            referenced = set(
                session.exec(
                    select(QuarantineBatch.storage_key).where(
                        col(QuarantineBatch.storage_key).is_not(None)
                    )
                ).all()
            )
            owners = {k: m.group(1) for k in keys if (m := HELD_KEY_RUN.search(k))}
            busy = _busy(session, owners.values())
        for key in keys:
            if key not in referenced and owners.get(key) not in busy:
                services.snapshots.delete(key)
                removed.append(key)
        return removed


def _busy(session: Session, run_ids: Iterable[str]) -> set[str]:
    """Those of ``run_ids`` still queued or running (their objects are not orphans yet)."""
    return set(
        session.exec(
            select(IngestRun.id).where(
                col(IngestRun.id).in_(set(run_ids)),
                col(IngestRun.status).in_(("queued", "running")),
            )
        ).all()
    )


def _log(report: RecoveryReport) -> None:
    if report.dead_instances:
        log.warning("recovery: gateway process(es) stopped: %s", ", ".join(report.dead_instances))
    for run_id in report.interrupted_runs:
        log.warning("recovery: run %s was interrupted; marked failed", run_id)
    for run_id in report.requeued_runs:
        log.warning("recovery: run %s was interrupted; queued again for another worker", run_id)
    for part in report.requeued_parts:
        log.warning("recovery: part %s of a run was interrupted; queued again", part)
    for revalidation in report.requeued_revalidations:
        log.warning("recovery: revalidation %s was interrupted; queued again", revalidation)
    for path in report.removed_files:
        log.warning("recovery: removed unfinished file %s", path)
    for key in report.orphan_snapshots:
        log.warning("recovery: removed snapshot %s (no version refers to it)", key)


class Heartbeat:
    """A daemon thread that beats this process's heartbeat and recovers dead replicas."""

    def __init__(
        self,
        services: WorkerContext,
        periodic: Sequence[tuple[float, Callable[[], object]]] = (),
    ) -> None:
        self.services = services
        self.recovery = Recovery(services)
        # Further duties, each every so many seconds (expiring quarantine batches).
        self.periodic = [(every, duty, [0.0]) for every, duty in periodic]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="datagate-heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        interval = self.services.settings.heartbeat_seconds
        while not self._stop.wait(interval):
            try:
                beat(self.services.engine, self.services.instance)
                self.recovery.run(orphans=False)
            except Exception as exc:  # keep beating through a database outage
                log.warning("heartbeat failed: %s", type(exc).__name__)
            now = time.monotonic()
            for every, duty, last in self.periodic:
                if now - last[0] < every:
                    continue
                last[0] = now
                try:
                    duty()
                except Exception as exc:
                    log.warning("periodic duty failed: %s", type(exc).__name__)

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._thread.join(timeout=5)
