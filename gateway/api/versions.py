"""A version's lifecycle and history: holds, released model claims (retention), diff, drift."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gateway.api.bodies import documented_body, json_body
from gateway.api.dependencies import DatasetPath, PrincipalDep, ServicesDep, VersionPath
from gateway.api.views import version_view
from gateway.keys import require
from gateway.lifecycle import clear_hold, release_models, set_hold
from gateway.schemas import VersionOut

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
