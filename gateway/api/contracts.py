"""Loaded contracts: columns, dtypes, checks and PII policy."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from gateway.api.bodies import documented_body, json_body
from gateway.api.dependencies import PrincipalDep, ServicesDep, SessionDep, respond_async
from gateway.api.runs import POLL_SECONDS
from gateway.errors import Conflict, ContractNotFound, NotFound
from gateway.evolution import judge
from gateway.keys import ROLES, require
from gateway.models import ContractVersion, Revalidation
from gateway.revalidation import revalidate_version, start_revalidation
from gateway.schemas import (
    ContractDiffOut,
    ContractList,
    ContractOut,
    ContractVersionDetail,
    ContractVersionList,
    RevalidateIn,
    RevalidationJobOut,
    RevalidationOut,
)
from gateway.services import Services
from gateway.store import dataset_by_name, live_version, restore_contract

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


@router.post(
    "/contracts/{name}/revalidate",
    response_model=RevalidationOut,
    responses={
        202: {
            "model": RevalidationJobOut,
            "description": "Run by a worker (asked with 'Prefer: respond-async', or more "
            "stored rows than DATAGATE_REVALIDATE_SYNC_ROWS): follow Location.",
        },
        429: {"description": "Four revalidations of the dataset already wait or run."},
    },
    openapi_extra=documented_body(RevalidateIn),
)
async def revalidate(
    name: str, request: Request, services: ServicesDep, principal: PrincipalDep
) -> Any:
    """Run the loaded contract (or a recorded version of it) against stored versions: per
    version, the report an upload would get; checks of redacted columns are reported as not
    checkable, never as passed. Large ones are answered 202 and run by a worker."""
    require(principal, ("producer", "consumer", "auditor"), name)
    body = await json_body(request, RevalidateIn, services.settings.max_json_bytes)
    return await run_in_threadpool(
        _revalidate, name, body, respond_async(request), services, principal.name
    )


def _revalidate(
    name: str, body: RevalidateIn, asked_async: bool, services: Services, requested_by: str
) -> Any:
    with Session(services.engine) as session:
        return _revalidate_in(session, name, body, asked_async, services, requested_by)


def _revalidate_in(
    session: Session,
    name: str,
    body: RevalidateIn,
    asked_async: bool,
    services: Services,
    requested_by: str,
) -> Any:
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
    stored = [live_version(session, dataset, n) for n in dict.fromkeys(numbers)]
    rows = sum(v.row_count for v in stored)
    if stored and (asked_async or rows > services.settings.revalidate_sync_rows):
        job = start_revalidation(services, contract, name, stored, requested_by)
        answer = revalidation_view(job)
        headers = {"Location": answer["links"]["self"], "Retry-After": "2"}
        if asked_async:
            headers["Preference-Applied"] = "respond-async"
        content = RevalidationJobOut.model_validate(answer).model_dump(mode="json", by_alias=True)
        return JSONResponse(content, status_code=202, headers=headers)
    return {
        "contract": {"version": contract.version, "fingerprint": contract.fingerprint},
        "versions": [revalidate_version(services, contract, v) for v in stored],
    }


@router.get("/contracts/{name}/revalidations/{revalidation_id}", response_model=RevalidationJobOut)
async def get_revalidation(
    name: str,
    revalidation_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    wait: float = Query(
        0, ge=0, le=60, description="Seconds to wait for it to finish (long poll)."
    ),
) -> dict[str, Any]:
    """A revalidation run by a worker: queued, running (with the versions done so far), done
    (every version's report) or failed (why)."""
    require(principal, ("producer", "consumer", "auditor"), name)
    deadline = time.monotonic() + wait
    while True:
        row = await run_in_threadpool(_read_revalidation, services, name, revalidation_id)
        if row.status in ("done", "failed") or time.monotonic() >= deadline:
            return revalidation_view(row)
        await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def _read_revalidation(services: Services, name: str, revalidation_id: str) -> Revalidation:
    with Session(services.engine) as session:
        row = session.get(Revalidation, revalidation_id)
    if row is None or row.dataset != name:
        raise NotFound(f"contract {name!r} has no revalidation {revalidation_id!r}")
    return row


def revalidation_view(row: Revalidation) -> dict[str, Any]:
    """A revalidation as the API shows it."""
    done = len((row.result or {}).get("versions") or [])
    return {
        "id": row.id,
        "dataset": row.dataset,
        "contract": {"version": row.contract_version, "fingerprint": row.contract_fingerprint},
        "versions": row.versions,
        "rows": row.rows,
        "status": row.status,
        "versions_done": done,
        "result": row.result,
        "error": row.error,
        "requested_by": row.requested_by,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "links": {"self": f"/api/v1/contracts/{row.dataset}/revalidations/{row.id}"},
    }
