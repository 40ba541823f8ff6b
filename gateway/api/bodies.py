"""JSON request bodies: read only once the route has checked the caller's role, bounded while
they stream, parsed and validated off the event loop, and never nested deeper than a limit.

FastAPI reads a body parameter before any dependency runs, so a route that declared one would
read (and parse) whatever an unauthorised caller sends. Routes with JSON bodies call
``json_body`` after ``require`` instead; ``documented_body`` keeps the body in the OpenAPI
document.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from gateway.errors import BodyTooLarge, InvalidRequest

MAX_JSON_DEPTH = 64
Model = TypeVar("Model", bound=BaseModel)
# Models of request bodies read by json_body; install_openapi adds their schemas.
BODY_MODELS: dict[str, type[BaseModel]] = {}


def documented_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the route's required JSON body."""
    BODY_MODELS[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused as soon as it passes ``limit`` bytes.

    Raises:
        BodyTooLarge: the body (declared or received) is longer than ``limit``.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body exceeds the limit of {limit} bytes", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the request body exceeds the limit of {limit} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def depth_of(value: Any) -> int:
    """How deeply objects and arrays nest in a parsed JSON value (a scalar is 0).

    Raises:
        InvalidRequest: a string or key holds a NUL character (no name or value may: PostgreSQL
            cannot store one in text).
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if any("\x00" in key for key in item):
                raise InvalidRequest("a key in the JSON body holds a NUL character (\\u0000)")
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            if isinstance(item, str) and "\x00" in item:
                raise InvalidRequest("a string in the JSON body holds a NUL character (\\u0000)")
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a JSON body.

    Raises:
        InvalidRequest: not UTF-8 JSON, nested deeper than ``max_depth``, or holding a NUL.
    """
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise InvalidRequest(f"the JSON body is nested deeper than {max_depth} levels") from exc
    except UnicodeDecodeError as exc:
        raise InvalidRequest("the body is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not JSON ({exc.msg} at offset {exc.pos})") from exc
    if depth_of(value) > max_depth:
        raise InvalidRequest(f"the JSON body is nested deeper than {max_depth} levels")
    return value


def _validated(raw: bytes, model: type[Model]) -> Model:
    value = parse_json(raw)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        # Shown as 400 invalid-request with each field's location and message, never its input.
        raise RequestValidationError(
            [{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        ) from exc


async def json_body(request: Request, model: type[Model], limit: int) -> Model:
    """Read, parse and validate the JSON body as ``model`` (off the event loop).

    Raises:
        BodyTooLarge: longer than ``limit`` bytes.
        InvalidRequest: not JSON, or too deeply nested.
        RequestValidationError: JSON that is not a valid ``model``.
    """
    raw = await read_body(request, limit)
    return await run_in_threadpool(_validated, raw, model)
