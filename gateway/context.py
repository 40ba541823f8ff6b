"""What the ingest, worker and recovery code needs from the process it runs in, as protocols.

``gateway.services`` builds one object that is all of them; the modules that do the work name
only these, so none of them depends on the composition root (which depends on them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlmodel import Session

    from gateway.contracts import ContractCatalog
    from gateway.outbox import LineageDelivery
    from gateway.settings import Settings
    from gateway.snapshots import SnapshotStore
    from privacy import PiiEngine, RedactionKey


@dataclass(frozen=True)
class Instance:
    """This process, as the other processes see it."""

    id: str
    host: str
    pid: int


class JobQueue(Protocol):
    """Where ingest jobs wait for a worker."""

    def enqueue(self, session: Session, run_id: str) -> None:
        """Enqueue the run's job as part of ``session``'s transaction."""
        ...

    def requeue(self, session: Session, run_id: str) -> None:
        """Enqueue the run's job again, its earlier one abandoned (its worker died)."""
        ...

    def enqueue_part(self, session: Session, run_id: str) -> None:
        """Enqueue a job that takes the run's queued parts (``gateway.spread``), as part of
        ``session``'s transaction."""
        ...

    def enqueue_revalidation(self, session: Session, revalidation_id: str) -> None:
        """Enqueue a revalidation (``gateway.revalidation``) as part of ``session``'s
        transaction; one whose worker died is enqueued again the same way."""
        ...

    def close(self) -> None:
        """Stop taking jobs; wait for the running ones."""
        ...


class IngestContext(Protocol):
    """An ingest's stages: the database, contracts, the snapshot store, redaction (key and
    detector), lineage delivery, and which process runs them."""

    settings: Settings
    engine: Engine
    catalog: ContractCatalog
    snapshots: SnapshotStore
    redaction_key: RedactionKey
    pii_engine: PiiEngine
    lineage: LineageDelivery
    instance: Instance


class WorkerContext(IngestContext, Protocol):
    """A worker (and recovery, which hands work back to the queue): the ingest's needs, the
    queue, and this process's own folder for spooled bodies."""

    queue: JobQueue | None

    @property
    def work_dir(self) -> Path: ...
