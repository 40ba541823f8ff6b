"""The OpenAPI document says what the API really answers: every error is problem+json.

FastAPI documents request validation failures as 422 ``HTTPValidationError``; Datagate answers
them with 400 problem+json (``invalid-request``). Every ``/api/v1`` operation can also answer
401 and 403, an operation with a body 413, one with a path parameter 404, and the error
statuses routes declare themselves (415, 422 …) carry the ``Problem`` schema under
``application/problem+json``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.api.bodies import BODY_MODELS
from gateway.problems import PROBLEM_MEDIA_TYPE

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem; extensions (report, run_id, invalid_params…) vary.",
    "type": "object",
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_METHODS = {"get", "put", "post", "delete", "patch"}


def _problem(status: int, description: str | None = None) -> dict[str, Any]:
    return {
        "description": description or HTTPStatus(status).phrase,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}},
    }


def _is_validation_error(response: dict[str, Any]) -> bool:
    return "HTTPValidationError" in str(response.get("content", {}))


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the error responses of ``schema`` (FastAPI's generated document) in place."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            validated = _is_validation_error(responses.get("422", {}))
            if validated:
                del responses["422"]
            if validated or operation.get("parameters") or operation.get("requestBody"):
                responses.setdefault("400", _problem(400, "Invalid request"))
            if operation.get("requestBody"):
                responses.setdefault("413", _problem(413, "The body is larger than its limit"))
            if path.startswith("/api/"):
                responses.setdefault("401", _problem(401, "Missing, unknown or expired API key"))
                responses.setdefault("403", _problem(403, "The key's role or datasets forbid it"))
            if "{" in path:
                responses.setdefault("404", _problem(404))
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400:
                    response.setdefault("description", HTTPStatus(int(status)).phrase)
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}}
    return schema


def document_bodies(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the schemas of the JSON bodies routes read themselves (``gateway.api.bodies``)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, model in BODY_MODELS.items():
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[name] = body
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the rewritten document at ``/openapi.json``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(
                document_bodies(
                    get_openapi(
                        title=app.title,
                        version=app.version,
                        summary=app.summary,
                        description=app.description,
                        routes=app.routes,
                    )
                )
            )
        return app.openapi_schema

    # FastAPI's documented way to customise the document (mypy forbids assigning a method).
    setattr(app, "openapi", openapi)  # noqa: B010
