"""The one table from error types to RFC 9457 problem+json responses, and its handlers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from gateway import errors

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://datagate.dev/problems/"


@dataclass(frozen=True)
class Problem:
    """How one kind of error looks to an HTTP client."""

    status: int
    slug: str
    title: str

    @property
    def type(self) -> str:
        """The problem type URI."""
        return PROBLEM_BASE + self.slug


# Most specific first: the first entry the error is an instance of wins.
PROBLEMS: tuple[tuple[type[errors.DatagateError], Problem], ...] = (
    (errors.Unauthorized, Problem(401, "unauthorized", "Unauthorized")),
    (errors.Forbidden, Problem(403, "forbidden", "Forbidden")),
    (errors.DatasetNotFound, Problem(404, "dataset-not-found", "Dataset not found")),
    (errors.VersionNotFound, Problem(404, "version-not-found", "Version not found")),
    (errors.RunNotFound, Problem(404, "run-not-found", "Ingest run not found")),
    (errors.ContractNotFound, Problem(404, "contract-not-found", "Contract not found")),
    (errors.NotFound, Problem(404, "not-found", "Not found")),
    (errors.EmptyUpload, Problem(400, "empty-upload", "Empty upload")),
    (errors.UnsupportedFormat, Problem(415, "unsupported-format", "Unsupported format")),
    (errors.UploadTooLarge, Problem(413, "upload-too-large", "Upload too large")),
    (errors.UnreadableUpload, Problem(400, "unreadable-upload", "Unreadable upload")),
    (errors.UploadError, Problem(400, "bad-upload", "Bad upload")),
    (errors.DriftRejected, Problem(422, "drift-rejected", "Drift beyond the contract's limits")),
    (errors.ContractViolation, Problem(422, "contract-violation", "Contract violation")),
    (errors.UndeclaredPii, Problem(422, "undeclared-pii", "Undeclared personal data")),
    (
        errors.UnknownDatasetVersion,
        Problem(422, "unknown-dataset-version", "Unknown dataset version"),
    ),
    (
        errors.InvalidLineageEvent,
        Problem(400, "invalid-lineage-event", "Invalid OpenLineage event"),
    ),
    (errors.BodyTooLarge, Problem(413, "body-too-large", "Request body too large")),
    (errors.Conflict, Problem(409, "conflict", "Conflict")),
    (errors.VersionGone, Problem(410, "version-gone", "Version data deleted")),
    (errors.TooBusy, Problem(429, "too-busy", "Too much work waiting")),
    (
        errors.ContractUnavailable,
        Problem(503, "contract-unavailable", "Contract unavailable"),
    ),
    (errors.InvalidRequest, Problem(400, "invalid-request", "Invalid request")),
    (errors.StageFailed, Problem(500, "ingest-failed", "Ingest failed")),
    (errors.Interrupted, Problem(503, "ingest-interrupted", "Ingest interrupted")),
)
INTERNAL = Problem(500, "internal-error", "Internal server error")


def problem_for(error: errors.DatagateError) -> Problem:
    """The table entry for ``error``."""
    for kind, problem in PROBLEMS:
        if isinstance(error, kind):
            return problem
    return INTERNAL


def problem_response(
    problem: Problem, detail: str, headers: dict[str, str] | None = None, **extensions: Any
) -> JSONResponse:
    """A problem+json response."""
    body = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": detail,
    }
    body.update(extensions)
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


async def _datagate_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.DatagateError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, errors.Unauthorized) else None
    if isinstance(exc, errors.TooBusy):
        headers = {"Retry-After": str(exc.extensions.get("retry_after", 30))}
    return problem_response(problem_for(exc), exc.detail, headers=headers, **exc.extensions)


async def _request_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    invalid = [
        {"location": list(e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()
    ]
    return problem_response(
        Problem(400, "invalid-request", "Invalid request"),
        "the request's parameters are invalid",
        invalid_params=invalid,
    )


def _allowed_methods(request: Request) -> str:
    # Starlette names only the methods of the first route matching the path; a path served by
    # several routes (GET and POST /api/v1/keys) allows all of theirs.
    allowed = []
    for method in ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = HTTPStatus(exc.status_code)
    slug = status.phrase.lower().replace(" ", "-")
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        headers["Allow"] = _allowed_methods(request)
    return problem_response(
        Problem(exc.status_code, slug, status.phrase),
        str(exc.detail) if exc.detail else status.description,
        headers=headers or None,
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error response of ``app`` problem+json (unexpected errors become a 500 in
    ``gateway.middleware``, outside every other layer)."""
    app.add_exception_handler(errors.DatagateError, _datagate_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
