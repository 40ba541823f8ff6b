"""Audit answers: provenance of a model version, impact of a dataset version."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from gateway.api.dependencies import PrincipalDep, ServicesDep, SessionDep
from gateway.graph import impact_markdown, model_provenance, provenance_markdown, version_impact
from gateway.keys import require
from gateway.store import dataset_by_name, version_by_number

router = APIRouter(tags=["audit"])
Format = Literal["json", "md"]


@router.get("/audit/models/{model}/provenance")
def get_provenance(
    model: str,
    version: str,
    session: SessionDep,
    services: ServicesDep,
    principal: PrincipalDep,
    format: Format = "json",
) -> Response:
    """Everything behind a model version: input versions and their uploads, contracts, PII."""
    require(principal, ("auditor",))
    report = model_provenance(session, services.settings.namespace, model, version)
    if format == "md":
        return PlainTextResponse(provenance_markdown(report), media_type="text/markdown")
    return JSONResponse(report)


@router.get("/audit/datasets/{dataset}/versions/{version}/impact")
def get_impact(
    dataset: str,
    version: int,
    session: SessionDep,
    services: ServicesDep,
    principal: PrincipalDep,
    format: Format = "json",
) -> Response:
    """Every model and downstream job or dataset that consumed a dataset version."""
    require(principal, ("auditor",))
    version_by_number(session, dataset_by_name(session, dataset), version)
    report = version_impact(session, services.settings.namespace, dataset, version)
    if format == "md":
        return PlainTextResponse(impact_markdown(report), media_type="text/markdown")
    return JSONResponse(report)
