"""Ingest runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.dependencies import SessionDep
from gateway.api.views import run_view
from gateway.store import run_by_id

router = APIRouter(tags=["runs"])


@router.get("/runs/{run_id}")
def get_run(run_id: str, session: SessionDep) -> dict[str, Any]:
    """One ingest run: status, stage timings, validation and PII reports, resulting version."""
    return run_view(run_by_id(session, run_id))
