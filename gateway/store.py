"""Metadata queries. Functions add and flush; the caller's unit of work commits once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Engine, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from gateway.contracts import Contract, ContractCatalog, load_source
from gateway.db import unit_of_work
from gateway.errors import ContractLoadError, DatasetNotFound, RunNotFound, VersionNotFound
from gateway.evolution import judge
from gateway.models import ContractVersion, Dataset, DatasetVersion, IngestRun, utcnow

log = logging.getLogger(__name__)


def _ensure_dataset(engine: Engine, name: str) -> None:
    try:
        with unit_of_work(engine) as session:
            if session.exec(select(Dataset).where(Dataset.name == name)).first() is None:
                session.add(Dataset(name=name, created_at=utcnow()))
    except IntegrityError:
        pass  # another replica created it first


def _ensure_contract_version(engine: Engine, contract: Contract) -> None:
    try:
        with unit_of_work(engine) as session:
            known = session.exec(
                select(ContractVersion).where(
                    ContractVersion.name == contract.dataset,
                    ContractVersion.fingerprint == contract.fingerprint,
                )
            ).first()
            if known is not None:
                known.last_active_at = utcnow()
                if known.source is None:
                    known.source = contract.source or None
                session.add(known)
                return
            same_version = session.exec(
                select(ContractVersion).where(
                    ContractVersion.name == contract.dataset,
                    ContractVersion.version == contract.version,
                )
            ).first()
            if same_version is not None:
                log.warning(
                    "contract %s changed (fingerprint %s -> %s) but its version is still %s",
                    contract.dataset,
                    same_version.fingerprint[:12],
                    contract.fingerprint[:12],
                    contract.version,
                )
            session.add(
                ContractVersion(
                    name=contract.dataset,
                    version=contract.version,
                    fingerprint=contract.fingerprint,
                    owner=contract.owner,
                    source_file=contract.source_file,
                    definition=contract.definition,
                    source=contract.source or None,
                    first_seen_at=utcnow(),
                    last_active_at=utcnow(),
                )
            )
    except IntegrityError:
        pass


def hold_back_incompatible(engine: Engine, catalog: ContractCatalog) -> None:
    """Refuse a contract whose change from the version last active is incompatible under its
    compatibility mode without a major version bump (``gateway.evolution``): it is reported
    like a broken file, naming each offending change, and the version last active, rebuilt
    from its recorded code, keeps serving (if its code no longer loads as it was, the dataset
    is unavailable until the file is fixed)."""
    with Session(engine) as session:
        for name, contract in sorted(catalog.contracts.items()):
            previous = session.exec(
                select(ContractVersion)
                .where(ContractVersion.name == name)
                .order_by(
                    col(ContractVersion.last_active_at).desc().nulls_last(),
                    col(ContractVersion.first_seen_at).desc(),
                )
            ).first()
            if previous is None or previous.fingerprint == contract.fingerprint:
                continue
            verdict = judge(previous.definition, contract.definition)
            if not verdict.refused:
                continue
            offending = "; ".join(
                f"{c.kind} {c.column}: {c.detail}" if c.column else f"{c.kind}: {c.detail}"
                for c in verdict.breaking
            )
            reason = (
                f"version {verdict.new_version} is incompatible with {previous.version} under "
                f"compatibility '{verdict.mode}' without a major version bump: {offending}"
            )
            restored = _restore(previous, catalog.folder)
            if restored is None:
                del catalog.contracts[name]
                catalog.unavailable[name] = (
                    f"{reason}; version {previous.version} could not be loaded again from its "
                    "recorded code"
                )
                reason = catalog.unavailable[name]
            else:
                catalog.contracts[name] = restored
                reason += f"; version {previous.version} stays active"
            catalog.errors.append(ContractLoadError(contract.source_file, reason))
            log.error("contract not loaded: %s: %s", contract.source_file, reason)


def _restore(row: ContractVersion, folder: Path) -> Contract | None:
    """The contract version ``row`` from its recorded code, if it loads exactly as it was."""
    if not row.source:
        return None
    try:
        catalog = load_source(row.source, Path(row.source_file).name, folder)
    except OSError:
        return None
    found = catalog.contracts.get(row.name)
    if found is None or found.fingerprint != row.fingerprint:
        return None
    return replace(found, source_file=row.source_file)


def sync_contracts(engine: Engine, catalog: ContractCatalog) -> None:
    """Record every loaded contract's definition and make sure its dataset row exists."""
    for contract in catalog.contracts.values():
        _ensure_dataset(engine, contract.dataset)
        _ensure_contract_version(engine, contract)


def dataset_by_name(session: Session, name: str) -> Dataset:
    """The dataset row.

    Raises:
        DatasetNotFound: no such dataset.
    """
    dataset = session.exec(select(Dataset).where(Dataset.name == name)).first()
    if dataset is None:
        raise DatasetNotFound(f"no dataset named {name!r}")
    return dataset


def lock_dataset(session: Session, name: str) -> Dataset:
    """The dataset row, locked until the transaction ends (serialises version numbering).

    Raises:
        DatasetNotFound: no such dataset.
    """
    dataset = session.exec(select(Dataset).where(Dataset.name == name).with_for_update()).first()
    if dataset is None:
        raise DatasetNotFound(f"no dataset named {name!r}")
    return dataset


def list_datasets(session: Session) -> Sequence[Dataset]:
    """All datasets, by name."""
    return session.exec(select(Dataset).order_by(Dataset.name)).all()


def versions_of(session: Session, dataset: Dataset) -> Sequence[DatasetVersion]:
    """Every version of ``dataset``, oldest first."""
    return session.exec(
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset.id)
        .order_by(DatasetVersion.number)  # type: ignore[arg-type]
    ).all()


def version_by_number(session: Session, dataset: Dataset, number: int) -> DatasetVersion:
    """One version of ``dataset``.

    Raises:
        VersionNotFound: the dataset has no such version.
    """
    version = session.exec(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset.id, DatasetVersion.number == number
        )
    ).first()
    if version is None:
        raise VersionNotFound(f"dataset {dataset.name!r} has no version {number}")
    return version


def version_by_hash(session: Session, dataset: Dataset, content_hash: str) -> DatasetVersion | None:
    """The version of ``dataset`` whose snapshot has this content hash, if any."""
    return session.exec(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset.id, DatasetVersion.content_hash == content_hash
        )
    ).first()


def version_count(session: Session, dataset: Dataset) -> int:
    """How many versions ``dataset`` has."""
    return session.exec(
        select(func.count())
        .select_from(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset.id)
    ).one()


def lock_running_run(session: Session, run_id: str) -> IngestRun | None:
    """The run, locked until the transaction ends, if it is still running.

    None when it already has an outcome — e.g. recovery failed it because this process's
    heartbeat looked dead. Recovery takes the same lock, so exactly one outcome is recorded.
    """
    run = session.exec(select(IngestRun).where(IngestRun.id == run_id).with_for_update()).first()
    if run is None:
        raise RunNotFound(f"no ingest run {run_id!r}")
    return run if run.status == "running" else None


def run_by_id(session: Session, run_id: str) -> IngestRun:
    """One ingest run.

    Raises:
        RunNotFound: no run has this id.
    """
    run = session.get(IngestRun, run_id)
    if run is None:
        raise RunNotFound(f"no ingest run {run_id!r}")
    return run
