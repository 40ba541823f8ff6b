"""Quarantine review: the rows a contract with ``on_invalid: "quarantine"`` held back.

Producers of the dataset and admins act (replay, corrections, discard); auditors read. A key
limited to datasets sees only their batches (another's answers 404, as if it did not exist).
Every action, and every read of held rows, is in the audit trail.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from gateway.api.bodies import documented_body, json_body
from gateway.api.dependencies import PrincipalDep, ServicesDep, SessionDep
from gateway.api.views import quarantine_url, version_url, version_view
from gateway.contracts import DATASET_NAME
from gateway.errors import NotFound, UnreadableUpload
from gateway.keys import Principal, require
from gateway.models import QuarantineBatch
from gateway.review import (
    Release,
    discard,
    get_batch,
    list_batches,
    read_corrections,
    release,
    shown_rows,
)
from gateway.schemas import (
    DiscardIn,
    QuarantineDetail,
    QuarantineList,
    QuarantineOut,
    ReleaseOut,
)
from gateway.services import Services
from gateway.uploads import UploadSpool, receive_upload

router = APIRouter(tags=["quarantine"])

READERS = ("producer", "auditor")
ACTORS = ("producer",)
BatchPath = Annotated[
    str,
    Path(
        pattern=r"^[0-9a-f-]{36}$",
        description="A quarantine batch id (a UUID).",
        examples=["01938f7c-2b1e-7c4e-9d2a-5b6c7d8e9f01"],
    ),
]
Status = Literal["open", "replayed", "discarded", "expired"]


def batch_view(batch: QuarantineBatch) -> dict[str, Any]:
    """A batch as the API shows it: counts and check names, never a value."""
    return {
        "id": batch.id,
        "dataset": batch.dataset,
        "status": batch.status,
        "run_id": batch.run_id,
        "rows_total": batch.rows_total,
        "rows_held": batch.rows_held,
        "rows_released": batch.rows_released,
        "rows_discarded": batch.rows_discarded,
        "failures": batch.failures,
        "held_failures": batch.held_failures,
        "base_version": batch.base_version,
        "contract_version": batch.contract_version,
        "uploader": batch.uploader,
        "revision": batch.revision,
        "created_at": batch.created_at,
        "expires_at": batch.expires_at,
        "closed_at": batch.closed_at,
        "closed_by": batch.closed_by,
        "close_reason": batch.close_reason,
        "links": {
            "run": f"/api/v1/runs/{batch.run_id}",
            "version": version_url(batch.dataset, batch.base_version)
            if batch.base_version
            else None,
        },
    }


def _visible(
    services: Services,
    principal: Principal,
    batch_id: str,
    roles: tuple[str, ...],
    request: Request,
) -> QuarantineBatch:
    """The batch, if the caller's role and datasets reach it (else 404: ids are not probed)."""
    with Session(services.engine) as session:
        batch = get_batch(session, batch_id)
    request.state.dataset = batch.dataset  # for the audit entry, refusals included
    require(principal, roles)
    if not principal.may_use_dataset(batch.dataset):
        raise NotFound(f"no quarantine batch {batch_id!r}")
    return batch


@router.get("/quarantine", response_model=QuarantineList)
def get_quarantine(
    principal: PrincipalDep,
    session: SessionDep,
    dataset: str | None = Query(
        None, pattern=DATASET_NAME.pattern, description="Only this dataset."
    ),
    status: Annotated[Status | None, Query(description="Only batches in this state.")] = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> QuarantineList:
    """Quarantine batches, newest first, with their counts by check."""
    require(principal, READERS, dataset)
    scope = None if principal.role in ("admin", "auditor") else principal.datasets
    batches, total = list_batches(
        session, dataset=dataset, status=status, datasets=scope, limit=limit, offset=offset
    )
    return QuarantineList.model_validate(
        {
            "batches": [batch_view(b) for b in batches],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )


@router.get("/quarantine/{batch_id}", response_model=QuarantineDetail)
async def get_quarantine_batch(
    batch_id: BatchPath,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=50_000_000),
) -> QuarantineDetail:
    """A batch and a page of its held rows, each with its failures; PII as placeholders."""
    batch = await run_in_threadpool(_visible, services, principal, batch_id, READERS, request)
    rows = await run_in_threadpool(shown_rows, services, batch, offset=offset, limit=limit)
    return QuarantineDetail.model_validate(
        {"batch": batch_view(batch), "rows": rows, "limit": limit, "offset": offset}
    )


def _release_view(dataset: str, outcome: Release) -> ReleaseOut:
    return ReleaseOut.model_validate(
        {
            "run_id": outcome.run_id,
            "released": outcome.released,
            "still_held": outcome.still_held,
            "created": outcome.created,
            "version": version_view(dataset, outcome.version) if outcome.version else None,
            "report": outcome.report,
            "batch": batch_view(outcome.batch),
        }
    )


@router.post(
    "/quarantine/{batch_id}/replay",
    response_model=ReleaseOut,
    responses={
        404: {"description": "No such batch (or not one this key may see)."},
        409: {"description": "The batch is closed, or changed while this replay ran."},
    },
)
async def replay_batch(
    batch_id: BatchPath, request: Request, principal: PrincipalDep, services: ServicesDep
) -> ReleaseOut:
    """Re-validate every held row under the current contract; the rows that pass are added
    to the version holding the upload's valid rows, as a new version. Rows still failing
    stay held."""
    batch = await run_in_threadpool(_visible, services, principal, batch_id, ACTORS, request)
    spool = UploadSpool(services.work_dir)
    try:
        outcome = await run_in_threadpool(
            release, services, batch.id, principal.name, spool, request.state.request_id
        )
    finally:
        spool.close()
    request.state.run_id = outcome.run_id
    return _release_view(batch.dataset, outcome)


@router.post(
    "/quarantine/{batch_id}/corrections",
    response_model=ReleaseOut,
    responses={
        400: {"description": "Unreadable, or rows that match no held row."},
        404: {"description": "No such batch (or not one this key may see)."},
        409: {"description": "The batch is closed, or changed meanwhile."},
        413: {"description": "Too large, on the wire or decoded."},
    },
    openapi_extra={
        "requestBody": {
            "description": "Corrected rows, in any upload format, with the contract's key "
            "columns: a raw body, or multipart/form-data with field 'file'.",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def correct_batch(
    batch_id: BatchPath,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
    format: str | None = Query(None, description="csv, parquet, ndjson, json or arrow"),
) -> ReleaseOut:
    """Corrected rows for a batch: each replaces the held row(s) with its key, is validated,
    and, if it passes, is added to the version like a replayed row."""
    batch = await run_in_threadpool(_visible, services, principal, batch_id, ACTORS, request)
    contract = services.catalog.require(batch.dataset)
    spool = UploadSpool(services.work_dir)
    try:
        try:
            received = await receive_upload(
                request.stream(), dict(request.headers), spool, services.settings.max_upload_bytes
            )
        except ClientDisconnect as exc:
            raise UnreadableUpload("the client disconnected before the body was complete") from exc
        corrections = await run_in_threadpool(
            read_corrections, services, received, spool, format, contract
        )
        outcome = await run_in_threadpool(
            release,
            services,
            batch.id,
            principal.name,
            spool,
            request.state.request_id,
            corrections,
        )
    finally:
        spool.close()
    request.state.run_id = outcome.run_id
    return _release_view(batch.dataset, outcome)


@router.post(
    "/quarantine/{batch_id}/discard",
    response_model=QuarantineOut,
    responses={409: {"description": "The batch is not open."}},
    openapi_extra=documented_body(DiscardIn),
)
async def discard_batch(
    batch_id: BatchPath,
    request: Request,
    principal: PrincipalDep,
    services: ServicesDep,
) -> QuarantineOut:
    """Discard a batch: its held rows and their key are destroyed; the batch stays as a
    tombstone with counts, the reason, who and when."""
    batch = await run_in_threadpool(_visible, services, principal, batch_id, ACTORS, request)
    body = await json_body(request, DiscardIn, services.settings.max_json_bytes)
    closed = await run_in_threadpool(discard, services, batch.id, principal.name, body.reason)
    return QuarantineOut.model_validate(batch_view(closed))


__all__ = ["batch_view", "quarantine_url", "router"]
