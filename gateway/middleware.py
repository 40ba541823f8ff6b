"""Per request: an id, a structured log event, a latency metric, and an audit-trail entry for
every state-changing request and data download."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from gateway.audit_log import AuditRecord, append
from gateway.errors import redacted_traceback
from gateway.logs import get_logger
from gateway.metrics import HTTP_SECONDS
from gateway.services import Services

log = logging.getLogger(__name__)
request_log = get_logger("gateway.request")
# Probes and scrapes are logged at DEBUG: they come every few seconds.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

AUDITED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_PREFIX = "/api/v1"
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,100}$")


def _audited(request: Request) -> bool:
    path = request.url.path
    if not path.startswith(API_PREFIX + "/"):
        return False
    return request.method in AUDITED_METHODS or (request.method == "GET" and path.endswith("/data"))


def _route_template(request: Request) -> str | None:
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    if template is None:
        return None
    if request.url.path.startswith(API_PREFIX) and not template.startswith(API_PREFIX):
        template = API_PREFIX + template  # routes of an included router lack its prefix
    return str(template)


def _outcome(status: int) -> str:
    return "ok" if status < 400 else "refused" if status < 500 else "error"


def install_request_middleware(app: FastAPI, services: Services) -> None:
    """Give every response an ``X-Request-ID``, log and time it, and audit what changes state or
    reads data."""

    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        offered = request.headers.get("x-request-id", "")
        request_id = offered if REQUEST_ID.match(offered) else uuid.uuid4().hex
        request.state.request_id = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        response = await call_next(request)
        response.headers["X-Request-ID"] = request_id
        template = _route_template(request)
        seconds = time.perf_counter() - started
        HTTP_SECONDS.labels(request.method, template or "unmatched", response.status_code).observe(
            seconds
        )
        dataset = request.scope.get("path_params", {}).get("dataset")
        fields = {
            "method": request.method,
            "route": template or "unmatched",
            "status": response.status_code,
            "outcome": _outcome(response.status_code),
            "duration_ms": round(seconds * 1000, 2),
            "dataset": dataset,
            "run_id": getattr(request.state, "run_id", None),
        }
        level = logging.DEBUG if request.url.path in QUIET_PATHS else logging.INFO
        request_log.log(level, "request", **{k: v for k, v in fields.items() if v is not None})
        if _audited(request):
            template = template or request.url.path
            principal = getattr(request.state, "principal", None)
            record = AuditRecord(
                actor=principal.name if principal else "anonymous",
                role=principal.role if principal else None,
                action=f"{request.method} {template}",
                target=request.url.path,
                dataset=dataset,
                outcome=response.status_code,
                request_id=request_id,
                client=request.client.host if request.client else None,
            )
            try:
                await run_in_threadpool(append, services.engine, record)
            except Exception as exc:
                log.error(
                    "audit entry for request %s not written: %s",
                    request_id,
                    redacted_traceback(exc),
                )
        return response
