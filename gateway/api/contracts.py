"""Loaded contracts: columns, dtypes, checks and PII policy."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from sqlmodel import Session, col, select

from gateway.api.dependencies import PrincipalDep, ServicesDep, SessionDep
from gateway.errors import Conflict, ContractNotFound
from gateway.evolution import judge
from gateway.keys import ROLES, require
from gateway.models import ContractVersion
from gateway.revalidation import revalidate_version
from gateway.schemas import (
    ContractDiffOut,
    ContractList,
    ContractOut,
    ContractVersionDetail,
    ContractVersionList,
    RevalidateIn,
    RevalidationOut,
)
from gateway.services import Services
from gateway.store import dataset_by_name, restore_contract, version_by_number

router = APIRouter(tags=["contracts"])


@router.get("/contracts", response_model=ContractList)
def list_contracts(services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    """Every loaded contract, and every contract file that failed to load."""
    require(principal, ROLES)
    catalog = services.catalog
    return {
        "contracts": [c.describe() for _, c in sorted(catalog.contracts.items())],
        "errors": [{"file": e.file, "reason": e.reason} for e in catalog.errors],
    }


@router.get("/contracts/{name}", response_model=ContractOut)
def get_contract(name: str, services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    """One contract."""
    require(principal, ROLES)
    contract = services.catalog.get(name)
    if contract is None:
        raise ContractNotFound(f"no contract named {name!r}")
    return contract.describe()


def _versions(session: Session, name: str) -> list[ContractVersion]:
    rows = session.exec(
        select(ContractVersion)
        .where(ContractVersion.name == name)
        .order_by(col(ContractVersion.first_seen_at), col(ContractVersion.id))
    ).all()
    if not rows:
        raise ContractNotFound(f"no contract named {name!r} was ever loaded")
    return list(rows)


def _pick(rows: list[ContractVersion], ref: str) -> ContractVersion:
    """A version by fingerprint (or a prefix of 12 or more characters), or by version string
    (the latest loaded with it)."""
    if len(ref) >= 12 and all(c in "0123456789abcdef" for c in ref):
        found = [r for r in rows if r.fingerprint.startswith(ref)]
        if len(found) == 1:
            return found[0]
    named = [r for r in rows if r.version == ref]
    if named:
        return named[-1]
    raise ContractNotFound(f"no version {ref[:100]!r} of contract {rows[0].name!r}")


def _version_view(row: ContractVersion, services: Services) -> dict[str, Any]:
    loaded = services.catalog.get(row.name)
    return {
        "name": row.name,
        "version": row.version,
        "fingerprint": row.fingerprint,
        "owner": row.owner,
        "source_file": row.source_file,
        "first_seen_at": row.first_seen_at,
        "last_active_at": row.last_active_at,
        "active": loaded is not None and loaded.fingerprint == row.fingerprint,
        "links": {"self": f"/api/v1/contracts/{row.name}/versions/{row.fingerprint}"},
    }


@router.get("/contracts/{name}/versions", response_model=ContractVersionList)
def get_contract_versions(
    name: str, services: ServicesDep, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    """Every version of a contract ever loaded: version, fingerprint, when it was first and
    last active."""
    require(principal, ROLES)
    rows = _versions(session, name)
    return {"name": name, "versions": [_version_view(r, services) for r in rows]}


@router.get("/contracts/{name}/versions/{ref}", response_model=ContractVersionDetail)
def get_contract_version(
    name: str, ref: str, services: ServicesDep, principal: PrincipalDep, session: SessionDep
) -> dict[str, Any]:
    """One version, by fingerprint (a dataset version records the one it passed) or by version
    string: its canonical schema and its code."""
    require(principal, ROLES)
    row = _pick(_versions(session, name), ref)
    return {**_version_view(row, services), "definition": row.definition, "source": row.source}


@router.get("/contracts/{name}/diff", response_model=ContractDiffOut)
def get_contract_diff(
    name: str,
    services: ServicesDep,
    principal: PrincipalDep,
    session: SessionDep,
    from_: str = Query(alias="from", description="A version string or fingerprint."),
    to: str | None = Query(None, description="Another one; default the version loaded now."),
) -> dict[str, Any]:
    """Every change from one version to another, labelled for backward and forward
    compatibility under the newer one's mode."""
    require(principal, ROLES)
    rows = _versions(session, name)
    old = _pick(rows, from_)
    if to is None:
        loaded = services.catalog.get(name)
        if loaded is None:
            raise ContractNotFound(f"contract {name!r} is not loaded now; name 'to'")
        new_definition = loaded.definition
    else:
        new_definition = _pick(rows, to).definition
    return judge(old.definition, new_definition).as_dict()


@router.post("/contracts/{name}/revalidate", response_model=RevalidationOut)
def revalidate(
    name: str,
    body: RevalidateIn,
    services: ServicesDep,
    principal: PrincipalDep,
    session: SessionDep,
) -> dict[str, Any]:
    """Run the loaded contract (or a recorded version of it) against stored versions: per
    version, the report an upload would get; checks of redacted columns are reported as not
    checkable, never as passed."""
    require(principal, ("producer", "consumer", "auditor"), name)
    if body.contract is None:
        contract = services.catalog.get(name)
        if contract is None:
            raise ContractNotFound(f"contract {name!r} is not loaded now; name a recorded one")
    else:
        row = _pick(_versions(session, name), body.contract)
        contract = restore_contract(row, services.catalog.folder, services.redaction_key)
        if contract is None:
            raise Conflict(f"version {row.version} of contract {name!r} no longer loads as it was")
    dataset = dataset_by_name(session, name)
    numbers = body.versions or ([dataset.latest_version] if dataset.latest_version else [])
    stored = [version_by_number(session, dataset, n) for n in dict.fromkeys(numbers)]
    return {
        "contract": {"version": contract.version, "fingerprint": contract.fingerprint},
        "versions": [revalidate_version(services, contract, v) for v in stored],
    }
