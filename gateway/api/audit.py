"""Audit answers: provenance of a model version, impact of a dataset version."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from gateway.api.dependencies import (
    DatasetPath,
    IsoTime,
    PrincipalDep,
    ServicesDep,
    SessionDep,
    VersionPath,
)
from gateway.audit_log import Head, search
from gateway.errors import InvalidRequest
from gateway.graph import impact_markdown, model_provenance, provenance_markdown, version_impact
from gateway.keys import require
from gateway.schemas import AuditLog, AuditVerification, Impact, Provenance
from gateway.store import dataset_by_name, version_by_number

# Reports come as JSON, or as Markdown with ?format=md.
REPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/markdown": {"schema": {"type": "string"}}}}
}
router = APIRouter(tags=["audit"])
Format = Literal["json", "md"]


@router.get(
    "/audit/models/{model}/provenance", response_model=Provenance, responses=REPORT_RESPONSES
)
def get_provenance(
    model: str,
    version: str,
    session: SessionDep,
    services: ServicesDep,
    principal: PrincipalDep,
    format: Format = "json",
) -> Any:
    """Everything behind a model version: input versions and their uploads, contracts, PII."""
    require(principal, ("auditor",))
    report = model_provenance(session, services.settings.namespace, model, version)
    if format == "md":
        return PlainTextResponse(provenance_markdown(report), media_type="text/markdown")
    return report


@router.get(
    "/audit/datasets/{dataset}/versions/{version}/impact",
    response_model=Impact,
    responses=REPORT_RESPONSES,
)
def get_impact(
    dataset: DatasetPath,
    version: VersionPath,
    session: SessionDep,
    services: ServicesDep,
    principal: PrincipalDep,
    format: Format = "json",
) -> Any:
    """Every model and downstream job or dataset that consumed a dataset version."""
    require(principal, ("auditor",))
    version_by_number(session, dataset_by_name(session, dataset), version)
    report = version_impact(session, services.settings.namespace, dataset, version)
    if format == "md":
        return PlainTextResponse(impact_markdown(report), media_type="text/markdown")
    return report


@router.get("/audit/log", response_model=AuditLog)
def get_audit_log(
    session: SessionDep,
    principal: PrincipalDep,
    actor: str | None = None,
    action: str | None = None,
    dataset: str | None = None,
    since: IsoTime = None,
    until: IsoTime = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """The audit trail, newest first, filtered by actor, action, dataset and time."""
    require(principal, ("auditor",))
    entries, total = search(session, actor, action, dataset, since, until, limit)
    return {
        "total": total,
        "entries": [
            {
                "seq": e.seq,
                "at": e.at.isoformat(),
                "actor": e.actor,
                "role": e.role,
                "action": e.action,
                "target": e.target,
                "dataset": e.dataset,
                "outcome": e.outcome,
                "request_id": e.request_id,
                "client": e.client,
                "count": e.count,
                "hash": e.hash,
            }
            for e in entries
        ],
    }


@router.get("/audit/verify", response_model=AuditVerification)
def get_audit_verify(
    principal: PrincipalDep,
    services: ServicesDep,
    expect: str | None = Query(
        None, description="A head recorded earlier (SEQ:HASH) that the trail must still hold."
    ),
) -> dict[str, Any]:
    """Recompute the audit trail's keyed chain against its newest signed checkpoint (and
    ``expect``); the first broken link, if any (admins)."""
    require(principal, ("admin",))
    try:
        head = Head.parse(expect) if expect else None
    except ValueError as exc:
        raise InvalidRequest(f"expect: {exc}") from exc
    return services.audit.verify(head)
