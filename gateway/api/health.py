"""Liveness, readiness and metrics: open to everyone, so they show no secret, no path, no column
or file name and no other text a user or contract author chose — counts and states only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from gateway.api.dependencies import ServicesDep
from gateway.db import pending_migrations
from gateway.jobs import queue_state
from gateway.review import open_counts
from gateway.schemas import Liveness, Readiness

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(services.metrics), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", response_model=Liveness)
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


def _check_database(services: Any) -> dict[str, Any]:
    try:
        with services.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        if pending_migrations(services.engine):
            return {"status": "fail", "detail": "database schema is not at the newest migration"}
    except Exception as exc:
        return {"status": "fail", "detail": f"database unreachable ({type(exc).__name__})"}
    return {"status": "ok", "detail": services.engine.dialect.name}


def _check_storage(services: Any) -> dict[str, Any]:
    try:
        services.snapshots.check_writable()
    except OSError as exc:
        return {"status": "fail", "detail": f"snapshot store not writable ({type(exc).__name__})"}
    scheme = services.settings.resolved_storage_url.split(":", 1)[0]
    return {"status": "ok", "detail": f"writable ({scheme})"}


def _check_contracts(services: Any) -> dict[str, Any]:
    # Which files failed and why is shown to API keys only (GET /api/v1/contracts).
    catalog = services.catalog
    result: dict[str, Any] = {
        "status": "fail" if catalog.errors or not catalog.contracts else "ok",
        "loaded": len(catalog.contracts),
        "failed": len(catalog.errors),
    }
    if catalog.errors:
        result["detail"] = (
            f"{len(catalog.errors)} contract problem(s); GET /api/v1/contracts names them"
        )
    elif not catalog.contracts:
        result["detail"] = "no contracts found"
    else:
        result["detail"] = f"{len(catalog.contracts)} contract(s) loaded"
    return result


def _check_lineage(services: Any) -> dict[str, Any]:
    # A backlog means the backend is slow or down: reported, never a reason to stop ingesting.
    try:
        backlog = services.lineage.backlog()
    except Exception as exc:
        return {"status": "fail", "detail": f"outbox unreadable ({type(exc).__name__})"}
    detail = f"{backlog['pending']} event(s) waiting for {services.transport}"
    return {"status": "ok", "detail": detail, "transport": services.transport, **backlog}


def _check_queue(services: Any) -> dict[str, Any]:
    # Uploads waiting for a worker: reported, never a reason to stop taking them.
    try:
        waiting, age = queue_state(services.engine)
    except Exception as exc:
        return {"status": "fail", "detail": f"queue unreadable ({type(exc).__name__})"}
    where = "this process" if services.engine.dialect.name == "sqlite" else "datagate worker"
    return {
        "status": "ok",
        "detail": f"{waiting} upload(s) waiting for {where}",
        "queued": waiting,
        "oldest_queued_seconds": age,
    }


def _check_quarantine(services: Any) -> dict[str, Any]:
    # Rows waiting for review: reported, never a reason to stop taking uploads.
    try:
        counts = open_counts(services.engine)
    except Exception as exc:
        return {"status": "fail", "detail": f"quarantine unreadable ({type(exc).__name__})"}
    batches = sum(count for count, _ in counts.values())
    rows = sum(held for _, held in counts.values())
    return {
        "status": "ok",
        "detail": f"{batches} quarantine batch(es) holding {rows} row(s) wait for review",
        "open_batches": batches,
        "held_rows": rows,
    }


def _check_pii(services: Any) -> dict[str, Any]:
    # Pattern-only still redacts structured PII but finds no names: ready, and said loudly (the
    # reason, which may name a path, is in the start-up log).
    engine = services.pii_engine
    if engine.has_model:
        return {"status": "ok", "mode": engine.status["mode"], "detail": "NER model loaded"}
    return {
        "status": "degraded",
        "mode": engine.status["mode"],
        "detail": "patterns only: no NER model (see the start-up log)",
    }


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: a check failed."}},
)
def readyz(services: ServicesDep) -> JSONResponse:
    """Ready when the database, storage and contracts are; 503 with each check's detail if not."""
    checks = {
        "database": _check_database(services),
        "storage": _check_storage(services),
        "contracts": _check_contracts(services),
        "pii": _check_pii(services),
        "lineage": _check_lineage(services),
        "queue": _check_queue(services),
        "quarantine": _check_quarantine(services),
    }
    ready = all(check["status"] in ("ok", "degraded") for check in checks.values())
    answer = Readiness.model_validate(
        {"status": "ready" if ready else "not ready", "checks": checks}
    )
    return JSONResponse(answer.model_dump(mode="json"), status_code=200 if ready else 503)
