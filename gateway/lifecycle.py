"""The end of a version's data: retention, holds, released model claims, and tombstones.

Deleting a version's data leaves its row as a **tombstone**: ``deleted_at`` and why, by whom,
what replaced it (an erasure) and which stored objects went. Its data endpoints answer 410
Gone; its metadata, lineage and provenance stay. The row is marked, and the lineage event
(``lifecycleStateChange: DROP``) stored, in one transaction under the dataset lock; the
objects are deleted once it commits. A process that dies in between leaves objects no live
version refers to, which recovery's orphan sweep removes. Parts shared with a live version
(a quarantine replay's version refers to its base version's parts) are kept.

Retention (a contract's ``retention: {keep_last, max_age_days}``) never removes the latest
version, a version an admin holds, or a version a model was trained on (directly or through
downstream datasets) unless an admin released that claim.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from gateway.audit_log import AuditRecord
from gateway.db import unit_of_work
from gateway.errors import Conflict
from gateway.graph import version_impact
from gateway.models import Dataset, DatasetVersion, as_utc, utcnow
from gateway.outbox import store_event
from gateway.runs import scrub
from gateway.snapshots import SnapshotStore, part_keys
from gateway.store import list_datasets, lock_dataset, version_by_number
from lineage import LifecycleJob, lifecycle_event

if TYPE_CHECKING:
    from gateway.context import IngestContext
    from gateway.contracts import ContractCatalog, RetentionPolicy

log = logging.getLogger(__name__)

RETENTION_ACTOR = "system:retention"
MAX_REASON_CHARS = 500


def stored_keys(store: SnapshotStore, storage_key: str) -> set[str]:
    """Every object a version's data is: its key, and its parts' keys (a manifest's)."""
    try:
        return {storage_key, *part_keys(store, storage_key)}
    except FileNotFoundError:  # its manifest is gone already
        return {storage_key}


def tombstone(
    session: Session,
    store: SnapshotStore,
    dataset: Dataset,
    versions: Sequence[DatasetVersion],
    *,
    reason: str,
    actor: str,
    namespace: str,
    created: int | None = None,
    read: tuple[int, ...] = (),
    detail: dict[str, Any] | None = None,
) -> list[str]:
    """Mark ``versions`` deleted and store the lifecycle event, in ``session``'s transaction
    (which must hold the dataset lock). Returns the object keys to delete once it commits:
    those no live version of the dataset still refers to."""
    dropped = {v.number for v in versions}
    live = session.exec(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset.id, col(DatasetVersion.deleted_at).is_(None)
        )
    ).all()
    kept: set[str] = set()
    for other in live:
        if other.number not in dropped:
            kept |= stored_keys(store, other.storage_key)
    now = utcnow()
    doomed: list[str] = []
    for version in versions:
        keys = sorted(stored_keys(store, version.storage_key) - kept)
        # Parts first, the manifest (or single file) last.
        keys.sort(key=lambda k: k == version.storage_key)
        doomed += keys
        version.deleted_at = now
        version.tombstone = {
            "reason": reason,
            "by": actor,
            "at": now.isoformat(),
            "replaced_by": created,
            "keys": keys,
            **(detail or {}),
        }
        session.add(version)
    store_event(
        session,
        lifecycle_event(
            LifecycleJob(
                run_id=str(uuid.uuid4()),
                namespace=namespace,
                dataset=dataset.name,
                kind=reason,
                dropped=tuple(sorted(dropped)),
                created=created,
                read=read,
            ),
            now,
        ),
    )
    return doomed


def delete_objects(store: SnapshotStore, keys: Iterable[str]) -> None:
    """Delete objects after their tombstones committed (what fails is left to the orphan
    sweep, which finds no live version referring to it)."""
    for key in keys:
        try:
            store.delete(key)
        except OSError as exc:
            log.warning("could not delete %s now (%s); recovery will", key, type(exc).__name__)


def purge_cached(store: SnapshotStore, engine: Any, since: datetime | None) -> int:
    """Remove this process's cached copies of data deleted since ``since`` (None: ever) —
    another replica may have deleted it, and each keeps a cache of its own."""
    purge = getattr(store, "purge_cached", None)
    if purge is None:
        return 0
    query = select(DatasetVersion.tombstone).where(col(DatasetVersion.deleted_at).is_not(None))
    if since is not None:
        query = query.where(col(DatasetVersion.deleted_at) >= since)
    with Session(engine) as session:
        gone = session.exec(query).all()
    keys = [key for stone in gone for key in (stone or {}).get("keys", [])]
    return int(purge(keys))


# -- holds and released claims ----------------------------------------------------------------


def set_hold(
    services: IngestContext, dataset: str, number: int, actor: str, reason: str | None
) -> DatasetVersion:
    """Place an admin's hold: retention never removes the version.

    Raises:
        DatasetNotFound, VersionNotFound: no such version.
        Conflict: its data is already deleted.
    """
    return _mark(services, dataset, number, "hold", {"by": actor, "reason": reason})


def clear_hold(services: IngestContext, dataset: str, number: int) -> DatasetVersion:
    """Lift a hold (none: nothing to do)."""
    return _mark(services, dataset, number, "hold", None)


def release_models(
    services: IngestContext, dataset: str, number: int, actor: str, reason: str | None
) -> DatasetVersion:
    """Release the claim of the models trained on a version: retention may remove it."""
    return _mark(services, dataset, number, "released", {"by": actor, "reason": reason})


def _mark(
    services: IngestContext, dataset: str, number: int, field_name: str, value: Any
) -> DatasetVersion:
    if value is not None and value.get("reason"):
        shown = scrub(services, services.catalog.get(dataset), str(value["reason"]).strip())
        value = {**value, "reason": shown[:MAX_REASON_CHARS]}
    with unit_of_work(services.engine) as session:
        row = lock_dataset(session, dataset)
        version = version_by_number(session, row, number)
        if version.deleted_at is not None and value is not None:
            raise Conflict(f"the data of {dataset} version {number} is already deleted")
        if value is not None:
            value = {**value, "at": utcnow().isoformat()}
        setattr(version, field_name, value)
        session.add(version)
        session.flush()
        session.refresh(version)
        session.expunge(version)
    return version


# -- retention ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expiry:
    """A version retention removes (or would, in a dry run), and why."""

    dataset: str
    version: int
    reason: str


@dataclass
class RetentionOutcome:
    """What a retention pass removed, and what it kept though the policy expired it."""

    expired: list[Expiry] = field(default_factory=list)
    kept: list[Expiry] = field(default_factory=list)  # reason: why it was kept
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        """As JSON."""
        return {
            "dry_run": self.dry_run,
            "expired": [e.__dict__ for e in self.expired],
            "kept": [e.__dict__ for e in self.kept],
        }


def _trained_on(session: Session, namespace: str, dataset: str, number: int) -> bool:
    return bool(version_impact(session, namespace, dataset, number)["models"])


def due(
    session: Session,
    dataset: Dataset,
    policy: RetentionPolicy,
    namespace: str,
    now: datetime,
) -> tuple[list[DatasetVersion], list[Expiry]]:
    """The live versions ``policy`` expires that may go, and those it expires but must stay
    (held, trained on and not released), with why."""
    live = session.exec(
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset.id, col(DatasetVersion.deleted_at).is_(None))
        .order_by(col(DatasetVersion.number).desc())
    ).all()
    going: list[DatasetVersion] = []
    staying: list[Expiry] = []
    for rank, version in enumerate(live):
        if rank == 0:
            continue  # the latest version always stays
        recent = policy.keep_last is not None and rank < policy.keep_last
        young = policy.max_age_days is not None and as_utc(version.created_at) > now - timedelta(
            days=policy.max_age_days
        )
        if recent or young:
            continue
        if version.hold is not None:
            staying.append(Expiry(dataset.name, version.number, "held"))
        elif version.released is None and _trained_on(
            session, namespace, dataset.name, version.number
        ):
            staying.append(Expiry(dataset.name, version.number, "models were trained on it"))
        else:
            going.append(version)
    return going, staying


def apply_retention(
    services: IngestContext,
    catalog: ContractCatalog,
    *,
    dry_run: bool = False,
    record: Callable[[AuditRecord], Any] | None = None,
    actor: str = RETENTION_ACTOR,
) -> RetentionOutcome:
    """One retention pass over every dataset whose contract declares ``retention``."""
    outcome = RetentionOutcome(dry_run=dry_run)
    namespace = services.settings.namespace
    with Session(services.engine) as session:
        names = [d.name for d in list_datasets(session)]
    for name in names:
        contract = catalog.get(name)
        if contract is None or contract.retention is None:
            continue
        with unit_of_work(services.engine) as session:
            dataset = lock_dataset(session, name)
            going, staying = due(session, dataset, contract.retention, namespace, utcnow())
            outcome.kept += staying
            why = _describe(contract.retention)
            outcome.expired += [Expiry(name, v.number, why) for v in going]
            if dry_run or not going:
                continue
            doomed = tombstone(
                session,
                services.snapshots,
                dataset,
                going,
                reason="retention",
                actor=actor,
                namespace=namespace,
                detail={"policy": why},
            )
        delete_objects(services.snapshots, doomed)
        services.lineage.notify()
        for version in going:
            log.info("retention: %s version %d deleted (%s)", name, version.number, why)
            if record is not None:
                target = f"/api/v1/datasets/{name}/versions/{version.number}"
                record(
                    AuditRecord(
                        actor=actor,
                        role=None,
                        action="RETENTION /api/v1/datasets/{dataset}/versions/{version}",
                        target=target,
                        dataset=name,
                        outcome=200,
                        request_id=f"retention-{uuid.uuid4()}",
                        client=None,
                    )
                )
    return outcome


def _describe(policy: RetentionPolicy) -> str:
    parts = []
    if policy.keep_last is not None:
        parts.append(f"not among the {policy.keep_last} newest")
    if policy.max_age_days is not None:
        parts.append(f"older than {policy.max_age_days:g} days")
    return " and ".join(parts)
