"""The outermost layer of every request, as pure ASGI.

Per request: an ``X-Request-ID``; for ``/api/v1`` the API key is checked and a declared body
size refused *before any byte of the body is read*; unhandled errors become a problem+json 500
here (so they are logged, timed, audited and carry the request id like every other response);
one structured log event, a latency metric with bounded labels, and an audit-trail entry for
every state-changing request, data download and server error.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import unquote_to_bytes

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.audit_log import AuditRecord
from gateway.contracts import DATASET_NAME
from gateway.errors import (
    BodyTooLarge,
    DatagateError,
    InvalidRequest,
    Unauthorized,
    UploadTooLarge,
    redacted_traceback,
)
from gateway.keys import Principal, authenticate
from gateway.logs import get_logger
from gateway.metrics import HTTP_SECONDS
from gateway.problems import INTERNAL, problem_for, problem_response
from gateway.services import Services

log = logging.getLogger(__name__)
request_log = get_logger("gateway.request")
# Probes and scrapes are logged at DEBUG: they come every few seconds.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

AUDITED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KNOWN_METHODS = frozenset({"GET", "HEAD", "OPTIONS", *AUDITED_METHODS})
API_PREFIX = "/api/v1"
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,100}$")
UPLOAD_PATH = re.compile(rf"^{API_PREFIX}/(datasets/[^/]+/uploads|quarantine/[^/]+/corrections)$")
LINEAGE_PATH = f"{API_PREFIX}/lineage"
# A multipart envelope around an upload: boundaries and part headers.
MULTIPART_SLACK = 64 * 1024
# Targets are kept when they are plain paths of this shape; otherwise the route template is.
PLAIN_TARGET = re.compile(r"^[A-Za-z0-9/_.\-]{1,300}$")


def _documented_route(scope: Scope) -> tuple[str, dict[str, str]] | None:
    # A request refused before routing (no key) is still named by the operation it asked for,
    # as the OpenAPI document names it.
    app = scope.get("app")
    openapi = getattr(app, "openapi", None)
    if app is None or openapi is None:
        return None
    templates: list[tuple[re.Pattern[str], frozenset[str], str]] | None = getattr(
        app.state, "operation_templates", None
    )
    if templates is None:
        templates = [
            (compile_path(path)[0], frozenset(m.upper() for m in operations), path)
            for path, operations in openapi().get("paths", {}).items()
        ]
        app.state.operation_templates = templates
    for pattern, methods, template in templates:
        matched = pattern.match(scope["path"])
        if scope["method"] in methods and matched:
            return template, matched.groupdict()
    return None


def _path_params(scope: Scope) -> dict[str, Any]:
    if "path_params" in scope:
        return dict(scope["path_params"])
    documented = _documented_route(scope)
    return {} if documented is None else dict(documented[1])


def _route_template(scope: Scope) -> str | None:
    template = getattr(scope.get("route"), "path", None)
    if template is None:
        documented = _documented_route(scope)
        return None if documented is None else documented[0]
    if scope["path"].startswith(API_PREFIX) and not template.startswith(API_PREFIX):
        template = API_PREFIX + template  # routes of an included router lack its prefix
    return str(template)


def _outcome(status: int) -> str:
    return "ok" if status < 400 else "refused" if status < 500 else "error"


def _is_api(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


class RequestContext:
    """Request id, auth gate, error boundary, log line, latency metric and audit entry."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    def body_limit(self, path: str) -> int:
        """The most bytes a request body to ``path`` may have."""
        settings = self.services.settings
        if UPLOAD_PATH.match(path):
            return settings.max_upload_bytes + MULTIPART_SLACK
        if path == LINEAGE_PATH:
            return settings.max_lineage_event_bytes
        return settings.max_json_bytes

    async def _gate(self, scope: Scope, headers: Headers) -> DatagateError | None:
        """Authenticate an API request and check its declared size, reading no body."""
        path = scope["path"]
        if not _is_api(path):
            return None
        admin_key = self.services.settings.admin_key
        try:
            principal = await run_in_threadpool(
                authenticate,
                self.services.engine,
                headers.get("authorization"),
                admin_key.get_secret_value() if admin_key else None,
            )
        except Unauthorized as error:
            return error
        scope["state"]["principal"] = principal
        if "\x00" in path or b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
            # No name or value holds one, and PostgreSQL cannot even compare text with one.
            return InvalidRequest("the request's path or query holds a NUL character")
        declared = headers.get("content-length", "")
        limit = self.body_limit(path)
        if declared.isdigit() and int(declared) > limit:
            kind = UploadTooLarge if UPLOAD_PATH.match(path) else BodyTooLarge
            return kind(f"the request body exceeds the limit of {limit} bytes", limit=limit)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        offered = headers.get("x-request-id", "")
        request_id = offered if REQUEST_ID.match(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            refusal = await self._gate(scope, headers)
            if refusal is not None:
                response = problem_response(
                    problem_for(refusal),
                    refusal.detail,
                    headers={"WWW-Authenticate": "Bearer"}
                    if isinstance(refusal, Unauthorized)
                    else None,
                )
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log.error(
                "unhandled error on %s %s: %s",
                scope["method"],
                _route_template(scope) or "unmatched",
                redacted_traceback(exc),
            )
            if not response_started:
                response = problem_response(
                    INTERNAL, "an unexpected error occurred; it has been logged"
                )
                await response(scope, receive, send_with_id)
            status = 500
        await self._finish(scope, status, time.perf_counter() - started, request_id)

    async def _finish(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        method = str(scope["method"])
        method_label = method if method in KNOWN_METHODS else "OTHER"
        template = _route_template(scope)
        HTTP_SECONDS.labels(method_label, template or "unmatched", status).observe(seconds)
        state: dict[str, Any] = scope["state"]
        dataset = _path_params(scope).get("dataset") or state.get("dataset")
        if not (isinstance(dataset, str) and DATASET_NAME.match(dataset)):
            dataset = None
        fields = {
            "method": method_label,
            "route": template or "unmatched",
            "status": status,
            "outcome": _outcome(status),
            "duration_ms": round(seconds * 1000, 2),
            "dataset": dataset,
            "run_id": state.get("run_id"),
        }
        level = logging.DEBUG if scope["path"] in QUIET_PATHS else logging.INFO
        request_log.log(level, "request", **{k: v for k, v in fields.items() if v is not None})
        if not self._audited(scope, status):
            return
        principal: Principal | None = state.get("principal")
        path = scope["path"]
        client = scope.get("client")
        record = AuditRecord(
            actor=principal.name if principal else "anonymous",
            role=principal.role if principal else None,
            action=f"{method_label} {template or '(no route)'}",
            target=state.get("audit_target") or (path if PLAIN_TARGET.match(path) else template),
            dataset=dataset,
            outcome=status,
            request_id=request_id,
            client=str(client[0])[:100] if client else None,
        )
        try:
            await run_in_threadpool(self.services.audit.record, record, anonymous=principal is None)
        except Exception as exc:
            log.error(
                "audit entry for request %s not written: %s", request_id, redacted_traceback(exc)
            )

    @staticmethod
    def _audited(scope: Scope, status: int) -> bool:
        if status >= 500:
            return True
        path = scope["path"]
        if not path.startswith(API_PREFIX + "/"):
            return False
        method = scope["method"]
        # Reads of data: a version's, and held rows (PII as placeholders, the rest shown).
        reads_data = path.endswith("/data") or path.startswith(API_PREFIX + "/quarantine/")
        return method in AUDITED_METHODS or (method == "GET" and reads_data)
