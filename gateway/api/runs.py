"""Ingest runs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Query
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from gateway.api.dependencies import PrincipalDep, ServicesDep
from gateway.api.views import run_view
from gateway.keys import ROLES, require
from gateway.models import IngestRun
from gateway.schemas import RunOut
from gateway.services import Services
from gateway.spread import run_parts
from gateway.store import run_by_id

router = APIRouter(tags=["runs"])


UNFINISHED = ("queued", "running")
POLL_SECONDS = 0.25


@router.get("/runs/{run_id}", response_model=RunOut)
async def get_run(
    run_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    wait: float = Query(
        0,
        ge=0,
        le=60,
        description="Seconds to wait for a queued or running run to finish (long poll).",
    ),
) -> dict[str, Any]:
    """One ingest run: status (and the stage of an asynchronous one), stage timings, validation
    and PII reports, resulting version."""
    deadline = time.monotonic() + wait
    while True:
        run = await run_in_threadpool(_read_run, services, run_id)
        require(principal, ROLES, run.dataset)
        if run.status not in UNFINISHED or time.monotonic() >= deadline:
            return run_view(run, await run_in_threadpool(run_parts, services, run_id))
        await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def _read_run(services: Services, run_id: str) -> IngestRun:
    with Session(services.engine) as session:
        return run_by_id(session, run_id)
