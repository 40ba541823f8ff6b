"""Metadata queries. Functions add and flush; the caller's unit of work commits once."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Engine, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from gateway.contracts import Contract, ContractCatalog, load_source
from gateway.db import unit_of_work
from gateway.drift import STATISTICS
from gateway.errors import (
    ContractLoadError,
    DatasetNotFound,
    RunNotFound,
    VersionGone,
    VersionNotFound,
)
from gateway.evolution import judge
from gateway.models import ContractVersion, Dataset, DatasetVersion, IngestRun, as_utc, utcnow
from privacy import RedactionKey

log = logging.getLogger(__name__)


def _ensure_dataset(engine: Engine, name: str) -> None:
    try:
        with unit_of_work(engine) as session:
            if session.exec(select(Dataset).where(Dataset.name == name)).first() is None:
                session.add(Dataset(name=name, created_at=utcnow()))
    except IntegrityError:
        pass  # another replica created it first


def _ensure_contract_version(engine: Engine, contract: Contract, key: RedactionKey) -> None:
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
                if known.source is None and contract.source:
                    known.source = contract.source
                    known.source_mac = source_mac(
                        key, contract.dataset, contract.fingerprint, contract.source
                    )
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
                    source_mac=source_mac(
                        key, contract.dataset, contract.fingerprint, contract.source
                    )
                    if contract.source
                    else None,
                    first_seen_at=utcnow(),
                    last_active_at=utcnow(),
                )
            )
    except IntegrityError:
        pass


def source_mac(key: RedactionKey, name: str, fingerprint: str, source: str) -> str:
    """The keyed MAC that vouches for a contract version's recorded code."""
    body = json.dumps([name, fingerprint, source]).encode()
    return hmac.new(key.derive_raw("contract-source"), body, hashlib.sha256).hexdigest()


def trusted_source(row: ContractVersion, key: RedactionKey) -> str | None:
    """A contract version's recorded code, if its MAC proves it is the code that was loaded
    (someone able to write the database cannot make the gateway run code of their own)."""
    if not row.source or not row.source_mac:
        return None
    expected = source_mac(key, row.name, row.fingerprint, row.source)
    return row.source if hmac.compare_digest(expected, row.source_mac) else None


def hold_back_incompatible(engine: Engine, catalog: ContractCatalog, key: RedactionKey) -> None:
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
            restored = restore_contract(previous, catalog.folder, key)
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


def restore_contract(row: ContractVersion, folder: Path, key: RedactionKey) -> Contract | None:
    """The contract version ``row`` from its recorded code (with the helpers of ``folder``),
    if the code is vouched for and loads exactly as it was."""
    source = trusted_source(row, key)
    if source is None:
        return None
    try:
        catalog = load_source(source, Path(row.source_file).name, folder)
    except OSError:
        return None
    found = catalog.contracts.get(row.name)
    if found is None or found.fingerprint != row.fingerprint:
        return None
    return replace(found, source_file=row.source_file)


def sync_contracts(engine: Engine, catalog: ContractCatalog, key: RedactionKey) -> None:
    """Record every loaded contract's definition and make sure its dataset row exists."""
    for contract in catalog.contracts.values():
        _ensure_dataset(engine, contract.dataset)
        _ensure_contract_version(engine, contract, key)


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


def live_version(session: Session, dataset: Dataset, number: int) -> DatasetVersion:
    """One version of ``dataset`` whose data is still stored.

    Raises:
        VersionNotFound: the dataset has no such version.
        VersionGone: its data was deleted (the row is a tombstone).
    """
    version = version_by_number(session, dataset, number)
    if version.deleted_at is not None:
        stone = version.tombstone or {}
        raise VersionGone(
            f"the data of {dataset.name} version {number} was deleted "
            f"({stone.get('reason', 'deleted')}, {as_utc(version.deleted_at).isoformat()})",
            deleted_at=as_utc(version.deleted_at).isoformat(),
            reason=stone.get("reason"),
            replaced_by=stone.get("replaced_by"),
        )
    return version


def version_by_hash(session: Session, dataset: Dataset, content_hash: str) -> DatasetVersion | None:
    """The live version of ``dataset`` whose snapshot has this content hash, if any (a
    tombstone's data is gone: the same data uploaded again is a new version)."""
    return session.exec(
        select(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset.id,
            DatasetVersion.content_hash == content_hash,
            col(DatasetVersion.deleted_at).is_(None),
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


def drift_gauges(
    engine: Engine, catalog: ContractCatalog
) -> list[tuple[str, str, str | None, float]]:
    """Each dataset's latest version's drift against the previous one, per column its contract
    declares: (dataset, column, statistic, value), statistic None for drifted (0 or 1)."""
    gauges: list[tuple[str, str, str | None, float]] = []
    with Session(engine) as session:
        rows = session.exec(
            select(Dataset.name, DatasetVersion.drift).where(
                DatasetVersion.dataset_id == Dataset.id,
                DatasetVersion.number == Dataset.latest_version,
            )
        ).all()
    for name, drift in rows:
        contract = catalog.get(name)
        found = (drift or {}).get("report") or {}
        if contract is None:
            continue
        declared = {c.name for c in contract.columns if not c.regex}
        for comparison in found.get("comparisons", []):
            if comparison.get("baseline") != "previous":
                continue
            for column in comparison.get("columns", []):
                if column["column"] not in declared:
                    continue
                for statistic in STATISTICS:
                    value = column.get(statistic)
                    if value is not None:
                        gauges.append((name, column["column"], statistic, float(value)))
                gauges.append((name, column["column"], None, 1.0 if column["drifted"] else 0.0))
    return gauges
