"""Datasets, their versions and data, and uploads."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from sqlmodel import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from gateway.api.dependencies import (
    DatasetPath,
    PrincipalDep,
    ServicesDep,
    SessionDep,
    VersionPath,
    respond_async,
)
from gateway.api.views import dataset_view, version_url, version_view
from gateway.contracts import Contract
from gateway.errors import DatagateError, UnreadableUpload, UploadTooLarge
from gateway.exports import EXPORT_MEDIA_TYPES, ExportFormat, export_chunks, joined_parts
from gateway.jobs import start_queued_run
from gateway.keys import ROLES, require
from gateway.pipeline import run_pipeline
from gateway.problems import PROBLEM_MEDIA_TYPE
from gateway.runs import fail_run, new_run_id, parse_source, start_run
from gateway.schemas import (
    DatasetList,
    DatasetOut,
    RunAccepted,
    RunAcceptedLinks,
    UploadOut,
    VersionList,
    VersionOut,
)
from gateway.sealed import run_key
from gateway.services import Services
from gateway.snapshots import version_files
from gateway.store import (
    dataset_by_name,
    list_datasets,
    live_version,
    version_by_number,
    version_count,
    versions_of,
)
from gateway.uploads import ReceivedUpload, UploadSpool, receive_upload
from lineage import IngestJob

router = APIRouter(tags=["datasets"])

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_MEDIA_TYPE: {}}}
UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "description": (
            "Taken for asynchronous ingest (asked with 'Prefer: respond-async', or larger than "
            "DATAGATE_SYNC_MAX_BYTES): follow Location, the run, to its outcome."
        ),
        "model": RunAccepted,
    },
    200: {
        "description": "Identical content is already stored; that version is returned.",
        "model": UploadOut,
    },
    201: {"description": "Stored as a new version.", "model": UploadOut},
    400: {"description": "Unreadable or empty upload.", **_PROBLEM},
    404: {"description": "No contract for this dataset.", **_PROBLEM},
    503: {"description": "The dataset's contract files must be fixed first.", **_PROBLEM},
    413: {"description": "Upload too large, on the wire or decoded.", **_PROBLEM},
    415: {"description": "Unsupported format.", **_PROBLEM},
    422: {"description": "Rejected by the contract; the body holds the report.", **_PROBLEM},
}


@router.get("/datasets", response_model=DatasetList)
def get_datasets(
    services: ServicesDep, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Every dataset (the key may see) with its contract and latest version."""
    require(principal, ROLES)
    views = []
    for dataset in list_datasets(session):
        if not principal.may_use_dataset(dataset.name):
            continue
        latest = (
            version_by_number(session, dataset, dataset.latest_version)
            if dataset.latest_version
            else None
        )
        views.append(
            dataset_view(
                dataset, services.catalog.get(dataset.name), latest, version_count(session, dataset)
            )
        )
    return {"datasets": views}


@router.get("/datasets/{dataset}", response_model=DatasetOut)
def get_dataset(
    dataset: DatasetPath, services: ServicesDep, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """One dataset with its contract and latest version."""
    require(principal, ROLES, dataset)
    row = dataset_by_name(session, dataset)
    latest = version_by_number(session, row, row.latest_version) if row.latest_version else None
    return dataset_view(row, services.catalog.get(dataset), latest, version_count(session, row))


@router.get("/datasets/{dataset}/versions", response_model=VersionList)
def get_versions(
    dataset: DatasetPath, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Every version of a dataset, oldest first."""
    require(principal, ROLES, dataset)
    row = dataset_by_name(session, dataset)
    return {
        "dataset": dataset,
        "versions": [version_view(dataset, v) for v in versions_of(session, row)],
    }


@router.get("/datasets/{dataset}/versions/{version}", response_model=VersionOut)
def get_version(
    dataset: DatasetPath, version: VersionPath, session: SessionDep, principal: PrincipalDep
) -> dict[str, Any]:
    """One version's metadata."""
    require(principal, ROLES, dataset)
    row = dataset_by_name(session, dataset)
    return version_view(dataset, version_by_number(session, row, version))


@router.get(
    "/datasets/{dataset}/versions/{version}/data",
    response_class=FileResponse,
    responses={200: {"content": {media: {} for media in EXPORT_MEDIA_TYPES.values()}}},
)
def get_version_data(
    dataset: DatasetPath,
    version: VersionPath,
    services: ServicesDep,
    session: SessionDep,
    principal: PrincipalDep,
    format: ExportFormat = "parquet",
) -> Response:
    """The stored (redacted) snapshot as Parquet, CSV or NDJSON (consumers and admins); CSV and
    NDJSON are streamed as they are written. A version stored in parts is one Parquet file
    here, its parts joined in order."""
    require(principal, ("consumer",), dataset)
    return version_data(services, session, dataset, version, format)


def version_data(
    services: Services, session: Session, dataset: str, version: int, format: ExportFormat
) -> Response:
    """A live version's stored data as a download (the console's twin sends the same).

    Raises:
        DatasetNotFound, VersionNotFound, VersionGone: no such version, or its data deleted.
    """
    row = live_version(session, dataset_by_name(session, dataset), version)
    files = version_files(services.snapshots, row.storage_key)
    filename = f"{dataset}-v{version}.{format}"
    if format == "parquet":
        if len(files) == 1:
            return FileResponse(files[0], media_type=EXPORT_MEDIA_TYPES[format], filename=filename)
        joined = joined_parts(files, services.settings.tmp_dir)
        return FileResponse(
            joined,
            media_type=EXPORT_MEDIA_TYPES[format],
            filename=filename,
            background=BackgroundTask(joined.unlink, missing_ok=True),
        )
    return StreamingResponse(
        export_chunks(files, format),
        media_type=EXPORT_MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _start(
    request: Request, services: Services, contract: Contract, source: str | None, uploader: str
) -> IngestJob:
    job = await run_in_threadpool(
        start_run, services, contract, source, uploader, request.state.request_id
    )
    request.state.run_id = job.run_id
    structlog.contextvars.bind_contextvars(dataset=contract.dataset, run_id=job.run_id)
    return job


def _bound_for_a_worker(request: Request, services: Services) -> bool:
    """Whether the upload will be queued whatever its body holds: the client asked, or the
    length it declares is above ``DATAGATE_SYNC_MAX_BYTES``."""
    length = request.headers.get("content-length", "")
    declared = int(length) if length.isdigit() else 0
    return respond_async(request) or declared > services.settings.sync_max_bytes


async def _queue(
    request: Request,
    services: Services,
    contract: Contract,
    source: str | None,
    uploader: str,
    received: ReceivedUpload,
    format: str | None,
    run_id: str | None,
) -> JSONResponse:
    job = await run_in_threadpool(
        start_queued_run,
        services,
        contract,
        source,
        uploader,
        request.state.request_id,
        received,
        format,
        run_id,
    )
    request.state.run_id = job.run_id
    location = f"/api/v1/runs/{job.run_id}"
    headers = {"Location": location, "Retry-After": "1"}
    if respond_async(request):
        headers["Preference-Applied"] = "respond-async"
    answer = RunAccepted(run_id=job.run_id, status="queued", links=RunAcceptedLinks(run=location))
    return JSONResponse(answer.model_dump(mode="json"), status_code=202, headers=headers)


@router.post(
    "/datasets/{dataset}/uploads",
    status_code=201,
    responses=UPLOAD_RESPONSES,
    openapi_extra={
        "requestBody": {
            "description": "The file: a raw body, or multipart/form-data with field 'file'.",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
        }
    },
)
async def upload(
    dataset: DatasetPath,
    request: Request,
    services: ServicesDep,
    principal: PrincipalDep,
    format: str | None = Query(None, description="csv, parquet, ndjson, json or arrow"),
    source: str | None = Query(None, description="Where the data came from: '<namespace>:<name>'"),
) -> JSONResponse:
    """Upload a file: validated, redacted and stored as a new version (201) or matched (200);
    or, asynchronously (202), queued for a worker."""
    require(principal, ("producer",), dataset)
    contract = services.catalog.require(dataset)
    parse_source(source, services.settings.namespace, dataset, "-")  # refuse before the body
    uploader = principal.name
    spool = UploadSpool(services.work_dir)
    job = None
    # A body bound for a worker (asked for, or declared larger than the synchronous limit) is
    # sealed under its run's key as it arrives: never on disk in the clear, never read twice.
    queued_as = new_run_id() if _bound_for_a_worker(request, services) else None
    seal_key = None if queued_as is None else run_key(services.redaction_key, queued_as)
    try:
        try:
            received = await receive_upload(
                request.stream(),
                dict(request.headers),
                spool,
                services.settings.max_upload_bytes,
                seal_key=seal_key,
            )
        except ClientDisconnect as exc:
            # The body never arrived: there is nothing to record but the audit entry.
            raise UnreadableUpload(
                "the client disconnected before the upload was complete"
            ) from exc
        except UploadTooLarge:
            raise  # refused while it streamed: no run either
        except DatagateError as error:
            # The whole body arrived but is unusable (empty, malformed multipart): a failed run.
            job = await _start(request, services, contract, source, uploader)
            await run_in_threadpool(fail_run, services, job, error)
            raise
        # The run starts only now that the whole body has arrived from an authorised caller.
        if received.sealed or received.size > services.settings.sync_max_bytes:
            return await _queue(
                request, services, contract, source, uploader, received, format, queued_as
            )
        job = await _start(request, services, contract, source, uploader)
        outcome = await run_in_threadpool(
            run_pipeline, services, job, contract, received, spool, format, uploader
        )
    except DatagateError as error:
        if job is not None:
            error.extensions.setdefault("run_id", job.run_id)
        raise
    finally:
        spool.close()
    location = version_url(dataset, outcome.version.number)
    return JSONResponse(
        {
            "run_id": outcome.run_id,
            "created": outcome.created,
            "version": version_view(dataset, outcome.version),
            **({"quarantine": outcome.quarantine} if outcome.quarantine else {}),
        },
        status_code=201 if outcome.created else 200,
        headers={"Location": location},
    )
