"""Privacy officers' endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gateway.api.bodies import documented_body, json_body
from gateway.api.dependencies import PrincipalDep, ServicesDep, SessionDep
from gateway.erasure import erase_subject, subject_digest
from gateway.errors import InvalidRequest
from gateway.graph import version_impact
from gateway.keys import require
from gateway.schemas import ErasureOut, SubjectSearchResult
from gateway.subjects import search_subjects

router = APIRouter(tags=["privacy"])


class SubjectSearch(BaseModel):
    """Raw identifiers of one data subject (emails, phone numbers, ids as uploaded)."""

    identifiers: list[Annotated[str, Field(max_length=1000)]] = Field(min_length=1, max_length=100)


@router.post(
    "/privacy/subjects/search",
    response_model=SubjectSearchResult,
    openapi_extra=documented_body(SubjectSearch),
)
async def subjects_search(
    http: Request, services: ServicesDep, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """The dataset versions whose columns hold these identifiers as they store them (``hash``:
    the keyed HMAC; ``encrypt``: the deterministic token; a justified ``keep``: the value;
    nested text values included), and the models trained on them (directly or through
    downstream datasets).

    The identifiers are turned into those forms in memory only, never stored, logged or echoed
    back. Auditors and admins.
    """
    require(principal, ("auditor",))
    request = await json_body(http, SubjectSearch, services.settings.max_json_bytes)
    matches, searched = await run_in_threadpool(
        search_subjects,
        session,
        services.snapshots,
        [i for i in request.identifiers if i.strip()],
        services.redaction_key,
    )
    namespace = services.settings.namespace
    models: dict[tuple[str, str | None], dict[str, Any]] = {}
    for dataset, version in sorted({(m.dataset, m.version) for m in matches}):
        for model in version_impact(session, namespace, dataset, version)["models"]:
            models.setdefault((model["model"], model["version"]), model)
    return {
        "identifiers_searched": len(request.identifiers),
        "versions_searched": searched,
        "matches": [
            {
                "dataset": m.dataset,
                "version": m.version,
                "column": m.column,
                "rows": m.rows,
                "links": {"version": f"/api/v1/datasets/{m.dataset}/versions/{m.version}"},
            }
            for m in matches
        ],
        "models": [models[key] for key in sorted(models, key=lambda k: (k[0], str(k[1])))],
    }


class SubjectErase(BaseModel):
    """One data subject's raw identifiers, and how to erase them."""

    model_config = ConfigDict(extra="forbid")

    identifiers: list[Annotated[str, Field(max_length=1000)]] = Field(min_length=1, max_length=100)
    dry_run: bool = Field(
        True, description="Only say what would be erased (the default: ask for false to erase)."
    )
    override_holds: bool = Field(
        False, description="Erase held versions too (recorded on their tombstones)."
    )


@router.post(
    "/privacy/subjects/erase",
    response_model=ErasureOut,
    responses={409: {"description": "A held version holds the subject (nothing was erased)."}},
    openapi_extra=documented_body(SubjectErase),
)
async def subjects_erase(
    http: Request, services: ServicesDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Erase one data subject (admins): every version holding the subject's identifiers (as
    search finds them) loses its data (a tombstone stays, reason ``erasure``); each affected
    dataset's latest version is written again without the subject's rows; the models trained
    on an affected version are flagged for retraining. ``dry_run`` (the default) only says
    what would happen. The identifiers are never stored or logged: the audit trail records
    the request by a keyed digest (``subject``). Asking again changes nothing more."""
    require(principal, ("admin",))
    request = await json_body(http, SubjectErase, services.settings.max_json_bytes)
    identifiers = [i for i in request.identifiers if i.strip()]
    if not identifiers:
        raise InvalidRequest("identifiers must hold at least one non-blank identifier")
    http.state.audit_target = f"subject:{subject_digest(identifiers, services.redaction_key)}" + (
        " (dry run)" if request.dry_run else ""
    )
    outcome = await run_in_threadpool(
        erase_subject,
        services,
        identifiers,
        principal.name,
        dry_run=request.dry_run,
        override_holds=request.override_holds,
    )
    return outcome.as_dict()
