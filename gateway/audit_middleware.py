"""Request ids, and an audit-trail entry for every state-changing request and data download."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from gateway.audit_log import AuditRecord, append
from gateway.errors import redacted_traceback
from gateway.services import Services

log = logging.getLogger(__name__)

AUDITED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_PREFIX = "/api/v1"
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,100}$")


def _audited(request: Request) -> bool:
    path = request.url.path
    if not path.startswith(API_PREFIX + "/"):
        return False
    return request.method in AUDITED_METHODS or (request.method == "GET" and path.endswith("/data"))


def install_request_audit(app: FastAPI, services: Services) -> None:
    """Give every response an ``X-Request-ID`` and audit what changes state or reads data."""

    @app.middleware("http")
    async def request_audit(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        offered = request.headers.get("x-request-id", "")
        request_id = offered if REQUEST_ID.match(offered) else uuid.uuid4().hex
        request.state.request_id = request_id
        response = await call_next(request)
        response.headers["X-Request-ID"] = request_id
        if _audited(request):
            route = request.scope.get("route")
            template = getattr(route, "path", request.url.path)
            if not template.startswith(API_PREFIX):
                template = API_PREFIX + template  # routes of an included router lack its prefix
            principal = getattr(request.state, "principal", None)
            record = AuditRecord(
                actor=principal.name if principal else "anonymous",
                role=principal.role if principal else None,
                action=f"{request.method} {template}",
                target=request.url.path,
                dataset=request.scope.get("path_params", {}).get("dataset"),
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
