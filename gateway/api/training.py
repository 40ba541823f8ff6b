"""Training runs reported by ML pipelines."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway.api.bodies import documented_body, json_body
from gateway.api.dependencies import PrincipalDep, ServicesDep
from gateway.keys import require
from gateway.models import MAX_VERSION
from gateway.problems import PROBLEM_MEDIA_TYPE
from gateway.schemas import TrainingRunOut
from gateway.training import TrainingReport, report_training

router = APIRouter(tags=["lineage"])
_PROBLEM: dict[str, Any] = {"content": {PROBLEM_MEDIA_TYPE: {}}}


class ModelRef(BaseModel):
    """The model version a run produces."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")
    version: str = Field(min_length=1, max_length=100)


class InputRef(BaseModel):
    """One dataset version the model was trained on."""

    dataset: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1, le=MAX_VERSION)


class JobRef(BaseModel):
    """The training job, if not ``train.<model>`` in Datagate's namespace."""

    namespace: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=400)


class TrainingRunIn(BaseModel):
    """A training pipeline's report."""

    model: ModelRef
    inputs: list[InputRef] = Field(min_length=1, max_length=1000)
    job: JobRef | None = None
    status: Literal["START", "COMPLETE", "FAIL"] | None = None
    run_id: str | None = Field(None, max_length=36)
    parameters: dict[str, str | int | float | bool] | None = None
    metrics: dict[str, float] | None = None
    error: str | None = Field(None, max_length=2000)


@router.post(
    "/training-runs",
    status_code=201,
    responses={
        201: {"description": "The report is recorded.", "model": TrainingRunOut},
        400: {"description": "Invalid report.", **_PROBLEM},
        409: {"description": "The run id belongs to another job.", **_PROBLEM},
        413: {"description": "The body is too large.", **_PROBLEM},
        422: {"description": "Unknown dataset version.", **_PROBLEM},
    },
    openapi_extra=documented_body(TrainingRunIn),
)
async def post_training_run(
    request: Request, services: ServicesDep, principal: PrincipalDep
) -> JSONResponse:
    """Record a training run: START, COMPLETE or FAIL linking dataset versions to a model.

    Every input must be a dataset the key may use (403 otherwise)."""
    require(principal, ("producer", "consumer"))
    body = await json_body(request, TrainingRunIn, services.settings.max_json_bytes)
    report = TrainingReport(
        model=body.model.name,
        model_version=body.model.version,
        inputs=tuple((i.dataset, i.version) for i in body.inputs),
        job_namespace=body.job.namespace if body.job else None,
        job_name=body.job.name if body.job else None,
        status=body.status,
        run_id=body.run_id,
        parameters=tuple(sorted((k, str(v)) for k, v in (body.parameters or {}).items())),
        metrics=tuple(sorted((body.metrics or {}).items())),
        error=body.error,
    )
    run_id, states = await run_in_threadpool(
        report_training, services, report, principal, request.state.request_id
    )
    return JSONResponse(
        {"run_id": run_id, "events": states, "model": body.model.model_dump()}, status_code=201
    )
