"""OpenLineage in: the same contract as Marquez's endpoint, so any producer's client works."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from gateway.api.bodies import parse_json, read_body
from gateway.api.dependencies import PrincipalDep, ServicesDep, SessionDep
from gateway.db import unit_of_work
from gateway.errors import InvalidLineageEvent, InvalidRequest
from gateway.graph import MAX_DEPTH, lineage_graph
from gateway.keys import ROLES, require
from gateway.lineage_policy import check_external_event
from gateway.outbox import store_external_event
from gateway.problems import PROBLEM_MEDIA_TYPE
from gateway.schemas import LineageAccepted, LineageGraph
from lineage.validation import InvalidEvent, validate_event

router = APIRouter(tags=["lineage"])
_PROBLEM: dict[str, Any] = {"content": {PROBLEM_MEDIA_TYPE: {}}}


@router.post(
    "/lineage",
    status_code=201,
    response_model=LineageAccepted,
    responses={
        400: {"description": "Not a valid OpenLineage event.", **_PROBLEM},
        409: {"description": "The run id belongs to another job.", **_PROBLEM},
        413: {"description": "The event is too large.", **_PROBLEM},
        422: {"description": "An input names an unknown dataset version.", **_PROBLEM},
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
) -> LineageAccepted:
    """Accept an OpenLineage RunEvent, DatasetEvent or JobEvent, validate it and store it.

    Datagate's namespace and the ``model`` namespace are written by Datagate alone (403); inputs
    from Datagate's datasets must be ones the key may use, at versions that exist; a run id
    belongs to one job (409)."""
    require(principal, ("producer", "consumer"))
    body = await read_body(request, services.settings.max_lineage_event_bytes)

    def accept() -> LineageAccepted:
        try:
            event: Any = parse_json(body)
            kind = validate_event(event)
        except InvalidRequest as exc:
            raise InvalidLineageEvent(exc.detail) from exc
        except InvalidEvent as exc:
            raise InvalidLineageEvent(str(exc)) from exc
        with unit_of_work(services.engine) as session:
            check_external_event(session, event, kind, principal, services.settings.namespace)
            store_external_event(session, event, kind)
        run_id = event["run"]["runId"] if kind == "RunEvent" else None
        return LineageAccepted(event_type=kind, run_id=run_id)

    return await run_in_threadpool(accept)


@router.get(
    "/lineage",
    response_model=LineageGraph,
    responses={404: {"description": "No such node in the graph"}},
)
def get_lineage(
    session: SessionDep,
    principal: PrincipalDep,
    node_id: str = Query(alias="nodeId", pattern=r"^(dataset|job):.+:.+$"),
    depth: int = Query(20, ge=0, le=MAX_DEPTH),
) -> dict[str, Any]:
    """The lineage graph around a node, in Marquez's shape, with the dataset versions seen."""
    require(principal, ROLES)
    return lineage_graph(session, node_id, depth)
