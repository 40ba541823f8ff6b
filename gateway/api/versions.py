"""A version's lifecycle and history: holds, released model claims (retention), diff, drift."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from gateway.api.bodies import documented_body, json_body
from gateway.api.dependencies import (
    DatasetPath,
    OtherVersionPath,
    PrincipalDep,
    ServicesDep,
    SessionDep,
    VersionPath,
)
from gateway.api.views import version_view
from gateway.db import unit_of_work
from gateway.diff import Side, diff_versions
from gateway.errors import Conflict
from gateway.keys import ROLES, require
from gateway.lifecycle import clear_hold, release_models, set_hold
from gateway.models import MAX_VERSION, DatasetVersion
from gateway.schemas import DriftOut, DriftReferenceOut, VersionDiffOut, VersionOut
from gateway.services import Services
from gateway.snapshots import version_files
from gateway.store import dataset_by_name, live_version, lock_dataset, version_by_number

router = APIRouter(tags=["datasets"])


class VersionMarkIn(BaseModel):
    """Why (optional; personal data in it is replaced before it is stored)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=1000)


@router.post(
    "/datasets/{dataset}/versions/{version}/hold",
    response_model=VersionOut,
    responses={409: {"description": "The version's data is already deleted."}},
    openapi_extra=documented_body(VersionMarkIn),
)
async def hold_version(
    dataset: DatasetPath,
    version: VersionPath,
    request: Request,
    services: ServicesDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """Place a hold (admins): retention never removes a held version; an erasure removes it
    only when asked to override holds, and records that it did."""
    require(principal, ("admin",))
    body = await json_body(request, VersionMarkIn, services.settings.max_json_bytes)
    row = await run_in_threadpool(set_hold, services, dataset, version, principal.name, body.reason)
    return version_view(dataset, row)


@router.delete("/datasets/{dataset}/versions/{version}/hold", response_model=VersionOut)
async def lift_hold(
    dataset: DatasetPath, version: VersionPath, services: ServicesDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Lift a hold (admins)."""
    require(principal, ("admin",))
    row = await run_in_threadpool(clear_hold, services, dataset, version)
    return version_view(dataset, row)


@router.post(
    "/datasets/{dataset}/versions/{version}/release",
    response_model=VersionOut,
    responses={409: {"description": "The version's data is already deleted."}},
    openapi_extra=documented_body(VersionMarkIn),
)
async def release_version(
    dataset: DatasetPath,
    version: VersionPath,
    request: Request,
    services: ServicesDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """Release the claim of the models trained on a version (admins): retention may then
    remove it like any other (their provenance will list it as deleted)."""
    require(principal, ("admin",))
    body = await json_body(request, VersionMarkIn, services.settings.max_json_bytes)
    row = await run_in_threadpool(
        release_models, services, dataset, version, principal.name, body.reason
    )
    return version_view(dataset, row)


@router.get(
    "/datasets/{dataset}/versions/{version}/diff/{other}",
    response_model=VersionDiffOut,
    responses={
        410: {"description": "A version's data was deleted."},
        429: {"description": "This key already has two diffs running (Retry-After)."},
    },
)
def diff(
    dataset: DatasetPath,
    version: VersionPath,
    other: OtherVersionPath,
    services: ServicesDep,
    session: SessionDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    """What changed from one version to another: schema, rows added / removed / changed
    (matched by the contract's primary_key, else by whole-row hashes), changed cells per
    column, and a sample of keys as keyed pseudonyms. Computed on the stored data."""
    require(principal, ROLES, dataset)
    with services.diffs.slot(principal.key_id or principal.name):
        return diff_of(services, session, dataset, version, other)


def diff_of(
    services: Services, session: Session, dataset: str, version: int, other: int
) -> dict[str, Any]:
    """What changed from ``version`` to ``other`` of ``dataset`` (both live).

    Raises:
        DatasetNotFound, VersionNotFound: no such version.
        VersionGone: a version's data was deleted.
    """
    row = dataset_by_name(session, dataset)
    sides = [_side(services, live_version(session, row, n)) for n in (version, other)]
    contract = services.catalog.get(dataset)
    key = contract.primary_key if contract is not None else ()
    found = diff_versions(sides[0], sides[1], key, services.redaction_key)
    return {"dataset": dataset, **found}


def _side(services: Services, version: DatasetVersion) -> Side:
    columns = ((version.pii_summary or {}).get("columns")) or []
    return Side(
        number=version.number,
        files=version_files(services.snapshots, version.storage_key),
        schema={f["name"]: f["type"] for f in version.schema_fields},
        hashed=frozenset(c["column"] for c in columns if c.get("action") == "hash"),
    )


@router.get("/datasets/{dataset}/versions/{version}/drift", response_model=DriftOut)
def get_drift(
    dataset: DatasetPath, version: VersionPath, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """The version's drift report against the previous version (and the pinned reference):
    per column its statistics, thresholds and whether it drifted. Status ``none`` when there
    was nothing to compare with, or the version was stored before drift was measured."""
    require(principal, ROLES, dataset)
    row = version_by_number(session, dataset_by_name(session, dataset), version)
    found = (row.drift or {}).get("report") or {"status": "none", "comparisons": []}
    return {"dataset": dataset, "version": version, **found}


class DriftReferenceIn(BaseModel):
    """The version every new version's drift is also measured against."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=MAX_VERSION)


@router.put(
    "/datasets/{dataset}/drift/reference",
    response_model=DriftReferenceOut,
    openapi_extra=documented_body(DriftReferenceIn),
)
async def pin_reference(
    dataset: DatasetPath, request: Request, services: ServicesDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Pin a reference version (admins): each new version's drift is then measured against it
    as well as against the previous version (its profile outlives its data)."""
    require(principal, ("admin",))
    body = await json_body(request, DriftReferenceIn, services.settings.max_json_bytes)
    return await run_in_threadpool(_set_reference, services, dataset, body.version)


@router.delete("/datasets/{dataset}/drift/reference", response_model=DriftReferenceOut)
async def unpin_reference(
    dataset: DatasetPath, services: ServicesDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Unpin the reference version (admins)."""
    require(principal, ("admin",))
    return await run_in_threadpool(_set_reference, services, dataset, None)


def _set_reference(services: Services, dataset: str, number: int | None) -> dict[str, Any]:
    with unit_of_work(services.engine) as session:
        row = lock_dataset(session, dataset)
        if number is not None:
            version = version_by_number(session, row, number)
            if not (version.drift or {}).get("profile"):
                raise Conflict(
                    f"{dataset} version {number} has no drift profile (stored before drift "
                    "was measured)"
                )
        row.drift_reference = number
        session.add(row)
    return {"dataset": dataset, "reference": number}
