"""Subject erasure (GDPR art. 17): every stored version holding a person's identifiers loses its
data, each affected dataset gets a version without the person's rows, and the models trained
on any affected version are flagged for retraining.

The identifiers are turned into the forms their columns store them in (``hash`` pseudonyms,
``encrypt`` tokens, ``keep`` values, nested text values included; as subject search does) and
into one keyed digest that stands for the request in the audit trail and the erasure record;
the raw identifiers are never stored or logged. Running the same erasure again finds nothing
more to erase and changes nothing (idempotent).

Per affected dataset, in one transaction under its lock: the replacement version (the
dataset's latest version without the subject's rows, when that version holds any; otherwise
the latest version already is one), the tombstones of the affected versions (reason
``erasure``, a hold overridden only when asked, and recorded), the lineage event (the versions
read and dropped, the version created). Their objects are deleted once it commits.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlmodel import Session, col, select

from gateway.db import unit_of_work
from gateway.drift import DriftPolicy
from gateway.errors import Conflict
from gateway.graph import version_impact
from gateway.lifecycle import delete_objects, tombstone
from gateway.models import (
    DatasetVersion,
    ErasureRequest,
    IngestRun,
    ModelFlag,
    utcnow,
)
from gateway.review import erase_held, held_subject_rows
from gateway.snapshots import StagedVersion, publish_version, version_files
from gateway.stages import version_drift
from gateway.store import dataset_by_name, lock_dataset, version_by_hash
from gateway.subjects import (
    SubjectForms,
    identifier_variants,
    search_subjects,
    searchable_columns,
    subject_forms,
)
from privacy import RedactionKey

if TYPE_CHECKING:
    from gateway.context import IngestContext, WorkerContext

log = logging.getLogger(__name__)


def subject_digest(identifiers: Sequence[str], key: RedactionKey) -> str:
    """A keyed digest standing for one subject's identifiers (order and case do not matter):
    the same request gives the same digest, and nobody without the key can tell whose."""
    normalised = sorted({v.strip().lower() for v in identifier_variants(identifiers)})
    mac = hmac.new(key.derive("erasure-subject"), "\n".join(normalised).encode(), "sha256")
    return mac.hexdigest()


@dataclass
class DatasetErasure:
    """What an erasure does (or would) to one dataset."""

    dataset: str
    versions: list[int]
    rows: dict[int, int]  # rows holding the subject, per affected version
    held: list[int]  # affected versions under a hold
    replaced_by: int | None = None
    new_version: int | None = None  # written by this erasure
    rows_kept: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """As JSON (counts and version numbers, never a value)."""
        return {
            "dataset": self.dataset,
            "versions": self.versions,
            "rows": [{"version": v, "rows": n} for v, n in sorted(self.rows.items())],
            "held": self.held,
            "replaced_by": self.replaced_by,
            "new_version": self.new_version,
            "rows_kept": self.rows_kept,
        }


@dataclass
class ErasureOutcome:
    """What an erasure found and did."""

    id: str
    digest: str
    dry_run: bool
    datasets: list[DatasetErasure] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    previous: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)  # batch, dataset, rows

    def as_dict(self) -> dict[str, Any]:
        """As JSON."""
        return {
            "id": self.id,
            "subject": self.digest,
            "dry_run": self.dry_run,
            "datasets": [d.as_dict() for d in self.datasets],
            "models": self.models,
            "quarantine": self.quarantine,
            "previous_requests": self.previous,
        }


def erase_subject(
    services: WorkerContext,
    identifiers: Sequence[str],
    actor: str,
    *,
    dry_run: bool = True,
    override_holds: bool = False,
) -> ErasureOutcome:
    """Find (``dry_run``) or erase every stored trace of one subject's identifiers.

    Raises:
        Conflict: an affected version is held and ``override_holds`` was not asked for
            (nothing is erased), or a dataset changed while the erasure ran.
    """
    key = services.redaction_key
    digest = subject_digest(identifiers, key)
    outcome = ErasureOutcome(id=str(uuid.uuid4()), digest=digest, dry_run=dry_run)
    with Session(services.engine) as session:
        matches, _ = search_subjects(session, services.snapshots, identifiers, key)
        outcome.previous = [
            {"id": r.id, "at": r.created_at.isoformat(), "by": r.requested_by}
            for r in session.exec(
                select(ErasureRequest)
                .where(ErasureRequest.digest == digest)
                .order_by(col(ErasureRequest.created_at))
            ).all()
        ]
        by_dataset: dict[str, dict[int, int]] = {}
        for match in matches:
            counts = by_dataset.setdefault(match.dataset, {})
            counts[match.version] = max(counts.get(match.version, 0), match.rows)
        for name, counts in sorted(by_dataset.items()):
            dataset = dataset_by_name(session, name)
            numbers = sorted(counts)
            held = [  # (a JSON column's None is JSON null, not SQL NULL: tested here)
                v.number
                for v in session.exec(
                    select(DatasetVersion).where(
                        DatasetVersion.dataset_id == dataset.id,
                        col(DatasetVersion.number).in_(numbers),
                    )
                ).all()
                if v.hold is not None
            ]
            outcome.datasets.append(DatasetErasure(name, numbers, counts, sorted(held)))
        models: dict[tuple[str, str | None], dict[str, Any]] = {}
        namespace = services.settings.namespace
        for affected in outcome.datasets:
            for number in affected.versions:
                for model in version_impact(session, namespace, affected.dataset, number)["models"]:
                    entry = models.setdefault(
                        (model["model"], model["version"]),
                        {"model": model["model"], "version": model["version"], "inputs": []},
                    )
                    entry["inputs"].append({"dataset": affected.dataset, "version": number})
        outcome.models = [models[k] for k in sorted(models, key=lambda k: (k[0], str(k[1])))]
    forms = subject_forms(identifiers, key)
    # Rows held for review are raw: the subject's are found (and removed) there too.
    held_rows = held_subject_rows(services, forms)
    outcome.quarantine = [
        {"batch": batch.id, "dataset": batch.dataset, "rows": int(marked.sum())}
        for batch, _, marked in held_rows
    ]
    held_names = [f"{d.dataset}@{v}" for d in outcome.datasets for v in d.held]
    if held_names and not override_holds and not dry_run:
        raise Conflict(
            f"held version(s) hold this subject: {', '.join(held_names[:20])}; nothing was "
            "erased. Lift the holds, or ask again with override_holds (it is recorded)",
            held=held_names[:100],
        )
    if dry_run:
        return outcome
    for affected in outcome.datasets:
        _erase_in(services, affected, forms, actor, outcome, override_holds)
    for batch, rows_held, marked in held_rows:
        erase_held(services, batch, rows_held, marked, outcome.id)
    with unit_of_work(services.engine) as session:
        session.add(
            ErasureRequest(
                id=outcome.id,
                digest=digest,
                requested_by=actor,
                override_holds=override_holds,
                outcome=outcome.as_dict(),
                created_at=utcnow(),
            )
        )
    services.lineage.notify()
    return outcome


def _flag_models(session: Session, outcome: ErasureOutcome, dataset: str) -> None:
    """Flag the models trained on ``dataset``'s affected versions, in the transaction that
    erases them (so an erasure stopped half-way has flagged what it erased). One flag per
    model version and subject: a later dataset of the same erasure, or a later run of it,
    adds its inputs to it."""
    for model in outcome.models:
        inputs = [i for i in model["inputs"] if i["dataset"] == dataset]
        if not inputs:
            continue
        flags = session.exec(
            select(ModelFlag).where(
                ModelFlag.model == model["model"],
                ModelFlag.model_version == model["version"],
                ModelFlag.reason == "erasure",
            )
        ).all()
        mine = [f for f in flags if (f.detail or {}).get("subject") == outcome.digest]
        if mine:
            known = mine[0].detail.get("inputs", [])
            added = [i for i in inputs if i not in known]
            if added:
                mine[0].detail = {**mine[0].detail, "inputs": [*known, *added]}
                session.add(mine[0])
            continue
        session.add(
            ModelFlag(
                model=model["model"],
                model_version=model["version"],
                reason="erasure",
                detail={"subject": outcome.digest, "inputs": inputs},
                erasure_id=outcome.id,
                created_at=utcnow(),
            )
        )


def _erase_in(
    services: IngestContext,
    affected: DatasetErasure,
    forms: SubjectForms,
    actor: str,
    outcome: ErasureOutcome,
    override_holds: bool,
) -> None:
    store = services.snapshots
    with Session(services.engine) as session:
        dataset = dataset_by_name(session, affected.dataset)
        latest = session.exec(
            select(DatasetVersion)
            .where(
                DatasetVersion.dataset_id == dataset.id, col(DatasetVersion.deleted_at).is_(None)
            )
            .order_by(col(DatasetVersion.number).desc())
        ).first()
    assert latest is not None, "an affected dataset has a live version"
    run_id = str(uuid.uuid4())
    staged: StagedVersion | None = None
    key: str | None = None
    kept = 0
    drift: dict[str, Any] | None = None
    if latest.number in affected.versions:
        stored = pl.scan_parquet(version_files(store, latest.storage_key))
        subject = forms.held_in_any(searchable_columns(latest), stored.collect_schema())
        plan = stored.filter(~subject)
        staged = StagedVersion((store.stage(plan),))
        key = staged.key(affected.dataset, run_id)
        kept = int(pl.scan_parquet(staged.parts[0].path).select(pl.len()).collect().item())
        contract = services.catalog.get(affected.dataset)
        policy = contract.drift if contract is not None else DriftPolicy()
        # Measured, never enforced: an erasure is owed whatever it does to the distribution.
        drift = version_drift(services, affected.dataset, [staged.parts[0].path], kept, policy)
    published = False
    try:
        if staged is not None and key is not None:
            publish_version(store, staged, key)
            published = True
        with unit_of_work(services.engine) as session:
            dataset = lock_dataset(session, affected.dataset)
            versions = session.exec(
                select(DatasetVersion).where(
                    DatasetVersion.dataset_id == dataset.id,
                    col(DatasetVersion.number).in_(affected.versions),
                    col(DatasetVersion.deleted_at).is_(None),
                )
            ).all()
            newest = session.exec(
                select(DatasetVersion.number)
                .where(
                    DatasetVersion.dataset_id == dataset.id,
                    col(DatasetVersion.deleted_at).is_(None),
                )
                .order_by(col(DatasetVersion.number).desc())
            ).first()
            if newest != latest.number:
                raise Conflict(
                    f"{affected.dataset} got a new version while the erasure ran; ask again"
                )
            replaced_by = latest.number
            if staged is not None and key is not None:
                replaced_by, created = _record(
                    session, dataset, latest, staged, key, run_id, actor, kept, drift
                )
                if not created:
                    published = False  # the same data is stored already: ours goes
                    store.delete(key)
                else:
                    affected.new_version, affected.rows_kept = replaced_by, kept
            affected.replaced_by = replaced_by
            doomed = tombstone(
                session,
                store,
                dataset,
                versions,
                reason="erasure",
                actor=actor,
                namespace=services.settings.namespace,
                created=affected.new_version,
                read=(latest.number,) if affected.new_version is not None else (),
                detail={"erasure": outcome.id, "replaced_by": replaced_by},
            )
            _flag_models(session, outcome, affected.dataset)
            overridden = [v for v in versions if v.hold is not None]
            for version in overridden:  # only with override_holds: recorded on the tombstone
                version.tombstone = {**(version.tombstone or {}), "hold_overridden": version.hold}
                session.add(version)
            if overridden:
                log.warning(
                    "erasure %s overrode the hold on %s version(s) %s",
                    outcome.id,
                    affected.dataset,
                    ", ".join(str(v.number) for v in overridden),
                )
    except BaseException:
        if published and key is not None:
            store.delete(key)
        raise
    finally:
        if staged is not None and not published:
            store.discard(staged.parts[0])
    delete_objects(store, doomed)


def _record(
    session: Session,
    dataset: Any,
    base: DatasetVersion,
    staged: StagedVersion,
    key: str,
    run_id: str,
    actor: str,
    rows: int,
    drift: dict[str, Any] | None,
) -> tuple[int, bool]:
    """The version without the subject's rows, with its run; (number, created)."""
    existing = version_by_hash(session, dataset, staged.content_hash)
    if existing is not None:
        return existing.number, False
    number = dataset.latest_version + 1
    now = utcnow()
    session.add(
        IngestRun(
            id=run_id,
            dataset=dataset.name,
            status="accepted",
            stage="record",
            rows_total=base.row_count,
            rows_done=rows,
            uploader=actor,
            contract_name=base.contract_name,
            contract_version=base.contract_version,
            contract_fingerprint=base.contract_fingerprint,
            version=number,
            created_version=True,
            kind="erasure",
            started_at=now,
            finished_at=now,
        )
    )
    session.flush()
    session.add(
        DatasetVersion(
            dataset_id=dataset.id,
            number=number,
            content_hash=staged.content_hash,
            row_count=rows,
            byte_size=staged.byte_size,
            storage_key=key,
            schema_fields=base.schema_fields,
            contract_name=base.contract_name,
            contract_version=base.contract_version,
            contract_fingerprint=base.contract_fingerprint,
            source=f"erasure of version {base.number}",
            uploader=actor,
            run_id=run_id,
            validation_summary={
                **(base.validation_summary or {}),
                "erased_from_version": base.number,
                "rows_erased": base.row_count - rows,
            },
            pii_summary=base.pii_summary,
            created_at=now,
            drift=drift,
        )
    )
    dataset.latest_version = number
    session.add(dataset)
    return number, True
