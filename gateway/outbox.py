"""The lineage outbox: events are stored first, then delivered, retried and never lost.

Datagate's own events are written in the same transaction as the state they describe. A
background thread hands undelivered ones, oldest first, to the configured OpenLineage transport
(the openlineage-python client's own, from its standard configuration). A failure stops the
pass (so a run's COMPLETE never overtakes its START) and is retried with exponential back-off;
an unreachable backend never fails or slows an upload. Rows are claimed with a short lease
(``SKIP LOCKED`` on PostgreSQL), so several replicas can share one outbox.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import RunEvent
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from gateway.db import unit_of_work
from gateway.metrics import LINEAGE_DELIVERY_FAILURES
from gateway.models import LineageEdge, LineageEvent, as_utc, utcnow
from lineage import event_to_dict

log = logging.getLogger(__name__)

DATAGATE = "datagate"
EXTERNAL = "external"
CLAIM_LEASE = timedelta(seconds=120)
BATCH = 100
CLOSE_TIMEOUT_SECONDS = 5.0


def store_event(session: Session, event: RunEvent) -> LineageEvent:
    """Add one of Datagate's own events to the outbox, in the caller's transaction."""
    payload = event_to_dict(event)
    row = LineageEvent(
        origin=DATAGATE,
        event_kind="RunEvent",
        run_id=event.run.runId,
        event_type=str(payload["eventType"]),
        job_namespace=event.job.namespace,
        job_name=event.job.name,
        event_time=datetime.fromisoformat(event.eventTime),
        payload=payload,
    )
    session.add(row)
    _add_edges(session, row)
    return row


def store_external_event(session: Session, payload: dict[str, Any], kind: str) -> LineageEvent:
    """Keep an event another producer sent (already validated); it is not forwarded."""
    run = payload.get("run") or {}
    job = payload.get("job") or {}
    row = LineageEvent(
        origin=EXTERNAL,
        event_kind=kind,
        run_id=run.get("runId"),
        event_type=payload.get("eventType"),
        job_namespace=job.get("namespace"),
        job_name=job.get("name"),
        event_time=datetime.fromisoformat(str(payload["eventTime"]).replace("Z", "+00:00")),
        payload=payload,
    )
    session.add(row)
    _add_edges(session, row)
    return row


def node_id(kind: str, namespace: str, name: str) -> str:
    """Marquez's node id: ``dataset:<namespace>:<name>`` or ``job:<namespace>:<name>``."""
    return f"{kind}:{namespace}:{name}"


def _version_of(dataset: dict[str, Any]) -> str | None:
    version = ((dataset.get("facets") or {}).get("version") or {}).get("datasetVersion")
    return None if version is None else str(version)


def _dropped(dataset: Any) -> bool:
    facets = dataset.get("facets") if isinstance(dataset, dict) else None
    change = (facets or {}).get("lifecycleStateChange") if isinstance(facets, dict) else None
    return isinstance(change, dict) and change.get("lifecycleStateChange") == "DROP"


def _add_edges(session: Session, row: LineageEvent) -> None:
    # The graph is kept as edges (run, job, dataset, direction, version) so that lineage and
    # audit queries are indexed lookups, whatever the size of the history.
    job = row.payload.get("job")
    if not isinstance(job, dict):
        return
    session.flush()  # the event's id
    assert row.id is not None
    job_node = node_id("job", str(job.get("namespace")), str(job.get("name")))
    for direction, key in (("in", "inputs"), ("out", "outputs")):
        for dataset in row.payload.get(key) or []:
            if _dropped(dataset):
                continue  # no data written: a deleted version (retention, erasure) is no output
            session.add(
                LineageEdge(
                    event_id=row.id,
                    run_id=row.run_id,
                    job=job_node,
                    dataset=node_id(
                        "dataset", str(dataset.get("namespace")), str(dataset.get("name"))
                    ),
                    direction=direction,
                    dataset_version=_version_of(dataset),
                )
            )


class LineageDelivery:
    """Delivers the outbox through the configured transport on one background thread."""

    def __init__(
        self,
        engine: Engine,
        client: OpenLineageClient | None,
        retry_seconds: float = 2.0,
        max_retry_seconds: float = 300.0,
        poll_seconds: float = 5.0,
    ) -> None:
        self.engine = engine
        self.client = client
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.poll_seconds = poll_seconds
        self.failures = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if client is not None:
            self._thread = threading.Thread(target=self._run, name="lineage-delivery", daemon=True)
            self._thread.start()

    def notify(self) -> None:
        """New events were committed: deliver them now rather than at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delivered = self.deliver_pending()
            except Exception:
                log.exception("lineage delivery pass failed; retrying")
                delivered = 0
            if delivered < BATCH:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def _backoff(self, attempts: int) -> timedelta:
        return timedelta(
            seconds=min(self.max_retry_seconds, self.retry_seconds * 2 ** (attempts - 1))
        )

    def _claim(self, now: datetime) -> list[tuple[int, str | None, dict[str, Any]]]:
        # Oldest first; an event waiting for its retry holds back the later events of its run,
        # so a run's COMPLETE never overtakes its START. Other runs go on.
        with unit_of_work(self.engine) as session:
            query = (
                select(LineageEvent)
                .where(LineageEvent.origin == DATAGATE, col(LineageEvent.delivered_at).is_(None))
                .order_by(col(LineageEvent.id))
                .limit(BATCH * 4)
            )
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            held: set[str | None] = set()
            claimed: list[tuple[int, str | None, dict[str, Any]]] = []
            for row in session.exec(query).all():
                due = row.next_attempt_at is None or as_utc(row.next_attempt_at) <= now
                if not due or row.run_id in held:
                    held.add(row.run_id)
                    continue
                row.next_attempt_at = now + CLAIM_LEASE
                session.add(row)
                assert row.id is not None
                claimed.append((row.id, row.run_id, row.payload))
                if len(claimed) == BATCH:
                    break
            return claimed

    def deliver_pending(self) -> int:
        """One pass over due events; returns how many were delivered."""
        if self.client is None:
            return 0
        claimed = self._claim(utcnow())
        delivered: set[int] = set()
        failed: set[int] = set()
        failed_runs: set[str | None] = set()
        for row_id, run_id, payload in claimed:
            if run_id in failed_runs:
                continue
            try:
                self.client.transport.emit(payload)  # type: ignore[arg-type]
            except Exception as exc:
                failed.add(row_id)
                failed_runs.add(run_id)
                self.failures += 1
                LINEAGE_DELIVERY_FAILURES.inc()
                log.warning(
                    "lineage delivery of event %d failed (%s); will retry",
                    row_id,
                    type(exc).__name__,
                )
                continue
            delivered.add(row_id)
        now = utcnow()
        with unit_of_work(self.engine) as session:
            retry_at: dict[str | None, datetime] = {}
            for row_id, run_id, _ in claimed:
                row = session.get(LineageEvent, row_id)
                if row is None:
                    continue
                if row_id in delivered:
                    row.delivered_at = now
                    row.delivery_attempts += 1
                    row.next_attempt_at = None
                elif row_id in failed:
                    row.delivery_attempts += 1
                    row.next_attempt_at = now + self._backoff(row.delivery_attempts)
                    retry_at[run_id] = row.next_attempt_at
                else:
                    # Held back behind its run's failed event; retried right after it.
                    row.next_attempt_at = retry_at.get(run_id)
                session.add(row)
        return len(delivered)

    def backlog(self) -> dict[str, Any]:
        """Undelivered events (when a transport is configured) and the age of the oldest."""
        if self.client is None:
            return {"pending": 0, "oldest_pending_seconds": None, "delivery_failures": 0}
        with Session(self.engine) as session:
            pending, oldest = session.exec(
                select(func.count(), func.min(LineageEvent.event_time)).where(
                    LineageEvent.origin == DATAGATE, col(LineageEvent.delivered_at).is_(None)
                )
            ).one()
        age = None if oldest is None else round((utcnow() - as_utc(oldest)).total_seconds(), 3)
        return {
            "pending": int(pending),
            "oldest_pending_seconds": age,
            "delivery_failures": self.failures,
        }

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Stop the delivery thread, waiting up to ``timeout`` for the current pass."""
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout)
