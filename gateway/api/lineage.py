"""OpenLineage in: the same contract as Marquez's endpoint, so any producer's client works."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gateway.api.dependencies import PrincipalDep, ServicesDep, SessionDep
from gateway.db import unit_of_work
from gateway.errors import InvalidLineageEvent
from gateway.graph import MAX_DEPTH, lineage_graph
from gateway.keys import ROLES, require
from gateway.outbox import store_external_event
from gateway.problems import PROBLEM_MEDIA_TYPE
from lineage.validation import InvalidEvent, validate_event

router = APIRouter(tags=["lineage"])
MAX_EVENT_BYTES = 5 * 1024 * 1024


@router.post(
    "/lineage",
    status_code=201,
    response_class=Response,
    responses={
        400: {"description": "Not a valid OpenLineage event.", "content": {PROBLEM_MEDIA_TYPE: {}}}
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def post_lineage(
    request: Request, services: ServicesDep, principal: PrincipalDep
) -> Response:
    """Accept an OpenLineage RunEvent, DatasetEvent or JobEvent, validate it and store it."""
    require(principal, ("producer", "consumer"))
    body = await request.body()
    if len(body) > MAX_EVENT_BYTES:
        raise InvalidLineageEvent(f"an event is limited to {MAX_EVENT_BYTES} bytes")
    try:
        event: Any = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidLineageEvent(
            f"the body is not JSON ({exc.msg if hasattr(exc, 'msg') else exc})"
        ) from exc
    try:
        kind = validate_event(event)
    except InvalidEvent as exc:
        raise InvalidLineageEvent(str(exc)) from exc

    def store() -> None:
        with unit_of_work(services.engine) as session:
            store_external_event(session, event, kind)

    await run_in_threadpool(store)
    return Response(status_code=201)


@router.get("/lineage", responses={404: {"description": "No such node in the graph"}})
def get_lineage(
    session: SessionDep,
    principal: PrincipalDep,
    node_id: str = Query(alias="nodeId", pattern=r"^(dataset|job):.+:.+$"),
    depth: int = Query(20, ge=0, le=MAX_DEPTH),
) -> dict[str, Any]:
    """The lineage graph around a node, in Marquez's shape, with the dataset versions seen."""
    require(principal, ROLES)
    return lineage_graph(session, node_id, depth)
