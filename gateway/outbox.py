"""Lineage events: stored in the metadata database first, then handed to the OpenLineage client."""

from __future__ import annotations

import logging
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


class LineageDelivery:
    """Hands stored events to the configured OpenLineage client; never raises to the caller."""

    def __init__(self, engine: Engine, client: OpenLineageClient | None) -> None:
        self.engine = engine
        self.client = client

    def deliver(self, pending: Sequence[tuple[int | None, RunEvent]]) -> None:
        """Emit each (row id, event) and mark the delivered rows; failures stay pending."""
        if self.client is None:
            return
        delivered: list[int] = []
        for row_id, event in pending:
            try:
                self.client.emit(event)
            except Exception:
                log.warning(
                    "lineage delivery failed for run %s; kept in the outbox", event.run.runId
                )
                continue
            if row_id is not None:
                delivered.append(row_id)
        if delivered:
            with unit_of_work(self.engine) as session:
                session.exec(
                    update(LineageEvent)
                    .where(col(LineageEvent.id).in_(delivered))
                    .values(
                        delivered_at=utcnow(), delivery_attempts=LineageEvent.delivery_attempts + 1
                    )
                )
