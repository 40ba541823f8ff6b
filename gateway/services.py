"""Everything a Datagate process needs, built once from one Settings object."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from gateway.audit_log import AuditTrail
from gateway.context import Instance, JobQueue
from gateway.contracts import ContractCatalog, load_contracts
from gateway.db import make_engine, migrate
from gateway.jobs import LocalQueue, build_queue, queue_state, resume_local_jobs
from gateway.lifecycle import apply_retention, purge_cached
from gateway.limits import PerKeyLimit
from gateway.metrics import build_registry
from gateway.models import utcnow
from gateway.outbox import LineageDelivery
from gateway.recovery import Heartbeat, Recovery, deregister_instance, register_instance
from gateway.review import expire_due, open_counts
from gateway.settings import Settings
from gateway.snapshots import SnapshotStore, open_store
from gateway.store import drift_gauges, hold_back_incompatible, sync_contracts
from lineage import configured_client, describe_transport
from privacy import PiiEngine, RedactionKey

log = logging.getLogger(__name__)


@dataclass
class Services:
    """The composed parts of the gateway: database, contracts, storage, privacy, lineage."""

    settings: Settings
    engine: Engine
    catalog: ContractCatalog
    snapshots: SnapshotStore
    redaction_key: RedactionKey
    pii_engine: PiiEngine
    lineage: LineageDelivery
    transport: str
    metrics: CollectorRegistry
    instance: Instance
    audit: AuditTrail
    heartbeat: Heartbeat | None = field(default=None)
    queue: JobQueue | None = field(default=None)
    # Diffs read two whole versions: a key runs at most two at once in each process.
    diffs: PerKeyLimit = field(default_factory=lambda: PerKeyLimit(2, "diffs"))

    @property
    def work_dir(self) -> Path:
        """This process's own folder for spooled bodies and exports (swept if it dies)."""
        return self.settings.tmp_dir / self.instance.id

    def close(self) -> None:
        """Finish queued lineage deliveries, stop PII workers, release database connections."""
        if self.queue is not None:
            self.queue.close()
        if self.heartbeat is not None:
            self.heartbeat.close()
        try:
            self.audit.flush()
        except Exception as exc:  # the database may be gone
            log.warning("could not write the counted audit entries: %s", type(exc).__name__)
        self.lineage.close()
        self.pii_engine.close()
        try:
            deregister_instance(self.engine, self.instance)
        except Exception as exc:  # the database may be gone; a stale heartbeat will tell
            log.warning("could not deregister this process: %s", type(exc).__name__)
        self.engine.dispose()


def build_services(settings: Settings, pii_engine: PiiEngine | None = None) -> Services:
    """Migrate the database, load contracts and open storage; log what was found.

    Raises:
        ValueError: a setting cannot be used (e.g. a PII key that is too short).
    """
    problems = settings.production_problems()
    if problems:
        raise ValueError("refusing to start in production mode: " + "; ".join(problems))
    redaction_key = RedactionKey(settings.resolved_pii_key())
    settings.home.mkdir(parents=True, exist_ok=True)
    # Nothing under the home (database, snapshots, spooled uploads) is anyone else's to read,
    # whatever modes files made before this start have.
    settings.home.chmod(0o700)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    catalog = load_contracts(settings.contracts_dir)
    for error in catalog.errors:
        log.error("contract not loaded: %s: %s", error.file, error.reason)
    hold_back_incompatible(engine, catalog, redaction_key)
    log.info("contracts loaded: %s", ", ".join(sorted(catalog.contracts)) or "none")
    sync_contracts(engine, catalog, redaction_key)
    engine_for_pii = pii_engine or PiiEngine(settings.spacy_model or None, settings.pii_workers)
    status = engine_for_pii.status
    if engine_for_pii.has_model:
        log.info("PII engine: %s, model %s", status["mode"], status["model"])
    else:
        log.warning("PII engine runs pattern-only: %s", status["reason"])
    client = configured_client(os.environ)
    transport = describe_transport(client)
    log.info("lineage transport: %s", transport)
    instance = register_instance(engine)
    lineage = LineageDelivery(
        engine,
        client,
        retry_seconds=settings.lineage_retry_seconds,
        max_retry_seconds=settings.lineage_retry_max_seconds,
    )
    snapshots = open_store(settings.resolved_storage_url, instance.id, settings.home)
    services = Services(
        settings=settings,
        engine=engine,
        catalog=catalog,
        snapshots=snapshots,
        redaction_key=redaction_key,
        pii_engine=engine_for_pii,
        lineage=lineage,
        transport=transport,
        metrics=build_registry(
            lineage,
            lambda: queue_state(engine),
            lambda: open_counts(engine),
            lambda: drift_gauges(engine, catalog),
        ),
        instance=instance,
        audit=audit_trail(settings, engine, snapshots, instance.id),
    )
    services.queue = build_queue(services)
    Recovery(services).run(orphans=True)
    # Whatever was deleted while this process was away leaves its cache too.
    purge_cached(snapshots, engine, since=None)
    services.heartbeat = Heartbeat(
        services,
        periodic=(
            (
                settings.quarantine_sweep_seconds,
                lambda: expire_due(services, services.audit.record),
            ),
            (settings.retention_sweep_seconds, lambda: _retention_duty(services)),
        ),
    )
    if isinstance(services.queue, LocalQueue):
        resumed = resume_local_jobs(services, services.queue)
        if resumed:
            log.info("resumed %d queued ingest(s)", resumed)
    return services


def _retention_duty(services: Services) -> None:
    """Apply retention, and drop this process's cached copies of data deleted since the last
    pass (by any replica: each has its own cache)."""
    since = utcnow() - timedelta(seconds=services.settings.retention_sweep_seconds * 2)
    apply_retention(services, services.catalog, record=services.audit.record)
    purge_cached(services.snapshots, services.engine, since)


def audit_trail(
    settings: Settings, engine: Engine, store: SnapshotStore, writer: str
) -> AuditTrail:
    """The audit trail, keyed from the PII secret, checkpointed in the snapshot store."""
    key = RedactionKey(settings.resolved_pii_key()).derive_raw("audit-chain")
    return AuditTrail(
        engine,
        key,
        checkpoints=store,
        writer=writer,
        anonymous_per_minute=settings.audit_anonymous_per_minute,
    )
