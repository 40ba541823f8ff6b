"""Ingest runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.dependencies import PrincipalDep, SessionDep
from gateway.api.views import run_view
from gateway.keys import ROLES, require
from gateway.schemas import RunOut
from gateway.store import run_by_id

router = APIRouter(tags=["runs"])


@router.get("/runs/{run_id}", response_model=RunOut)
def get_run(run_id: str, session: SessionDep, principal: PrincipalDep) -> dict[str, Any]:
    """One ingest run: status, stage timings, validation and PII reports, resulting version."""
    run = run_by_id(session, run_id)
    require(principal, ROLES, run.dataset)
    return run_view(run)
