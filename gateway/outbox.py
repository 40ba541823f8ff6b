"""Lineage events: stored in the metadata database first, then handed to the OpenLineage client.

Delivery runs on one background thread, so a slow or unreachable backend never slows or fails
an upload; an event that could not be delivered stays in the outbox (``delivered_at`` null).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from datetime import datetime

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import RunEvent
from sqlalchemy import Engine
from sqlmodel import Session, col, update

from gateway.db import unit_of_work
from gateway.models import LineageEvent, utcnow
from lineage import event_to_dict

log = logging.getLogger(__name__)


def store_event(session: Session, event: RunEvent) -> LineageEvent:
    """Add ``event`` to the outbox in the caller's transaction."""
    payload = event_to_dict(event)
    row = LineageEvent(
        run_id=event.run.runId,
        event_type=str(payload["eventType"]),
        job_namespace=event.job.namespace,
        job_name=event.job.name,
        event_time=datetime.fromisoformat(event.eventTime),
        payload=payload,
    )
    session.add(row)
    return row


_STOP = None
CLOSE_TIMEOUT_SECONDS = 5.0


class LineageDelivery:
    """Hands stored events to the configured OpenLineage client on one background thread.

    The thread is a daemon: at shutdown it gets a few seconds to finish, and whatever it has
    not delivered by then is still in the outbox.
    """

    def __init__(self, engine: Engine, client: OpenLineageClient | None) -> None:
        self.engine = engine
        self.client = client
        self._queue: queue.Queue[list[tuple[int | None, RunEvent]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        if client is not None:
            self._thread = threading.Thread(target=self._run, name="lineage-delivery", daemon=True)
            self._thread.start()

    def deliver(self, pending: Sequence[tuple[int | None, RunEvent]]) -> None:
        """Queue (row id, event) pairs for delivery, in order."""
        if self._thread is not None:
            self._queue.put(list(pending))

    def _run(self) -> None:
        while (batch := self._queue.get()) is not _STOP:
            self._emit(batch)

    def _emit(self, pending: list[tuple[int | None, RunEvent]]) -> None:
        assert self.client is not None
        delivered: list[int] = []
        for row_id, event in pending:
            try:
                self.client.emit(event)
            except Exception as exc:
                log.warning(
                    "lineage delivery failed for run %s (%s); kept in the outbox",
                    event.run.runId,
                    type(exc).__name__,
                )
                continue
            if row_id is not None:
                delivered.append(row_id)
        if not delivered:
            return
        try:
            with unit_of_work(self.engine) as session:
                session.exec(
                    update(LineageEvent)
                    .where(col(LineageEvent.id).in_(delivered))
                    .values(
                        delivered_at=utcnow(),
                        delivery_attempts=LineageEvent.delivery_attempts + 1,
                    )
                )
        except Exception:
            log.exception("could not mark %d lineage events as delivered", len(delivered))

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Ask the delivery thread to stop after queued work, waiting up to ``timeout``."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
