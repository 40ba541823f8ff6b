"""Metadata queries. Functions add and flush; the caller's unit of work commits once."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import Engine, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from gateway.contracts import Contract, ContractCatalog
from gateway.db import unit_of_work
from gateway.errors import DatasetNotFound, RunNotFound, VersionNotFound
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
