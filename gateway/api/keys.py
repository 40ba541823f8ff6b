"""API key management (admins)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from gateway.api.bodies import documented_body, json_body
from gateway.api.dependencies import IsoDateTime, PrincipalDep, ServicesDep
from gateway.keys import create_key, list_keys, require, revoke_key
from gateway.models import ApiKey, as_utc, utcnow
from gateway.schemas import KeyCreated, KeyList

router = APIRouter(tags=["keys"])


class KeyIn(BaseModel):
    """A key to create."""

    role: Literal["admin", "producer", "consumer", "auditor"]
    name: str = Field("api-key", min_length=1, max_length=200)
    datasets: list[str] | None = Field(
        None,
        max_length=1000,
        description="Producer and consumer keys: the datasets they may use, or ['*'] for all. "
        "Required for those roles; an empty list is refused. Other roles take none.",
    )
    expires_at: IsoDateTime | None = None

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        # A time without an offset is UTC; every time is kept and shown in UTC.
        if value is None:
            return None
        moment = as_utc(value).astimezone(UTC)
        if moment <= utcnow():
            raise ValueError("expires_at must be in the future")
        return moment


def key_view(row: ApiKey) -> dict[str, Any]:
    """A key's metadata; never its secret or hash."""
    return {
        "id": row.id,
        "name": row.name,
        "role": row.role,
        "datasets": row.datasets,
        "created_at": row.created_at.isoformat(),
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


@router.post(
    "/keys", status_code=201, response_model=KeyCreated, openapi_extra=documented_body(KeyIn)
)
async def post_key(
    request: Request, principal: PrincipalDep, services: ServicesDep
) -> dict[str, Any]:
    """Create a key; the response holds the key itself, shown this once only."""
    require(principal, ("admin",))
    body = await json_body(request, KeyIn, services.settings.max_json_bytes)
    row, secret = await run_in_threadpool(
        create_key, services.engine, body.role, body.name, body.datasets, body.expires_at
    )
    return {**key_view(row), "key": secret}


@router.get("/keys", response_model=KeyList)
def get_keys(principal: PrincipalDep, services: ServicesDep) -> dict[str, Any]:
    """Every key's metadata."""
    require(principal, ("admin",))
    return {"keys": [key_view(row) for row in list_keys(services.engine)]}


@router.delete("/keys/{key_id}", status_code=204, response_class=Response)
def delete_key(key_id: str, principal: PrincipalDep, services: ServicesDep) -> Response:
    """Revoke a key."""
    require(principal, ("admin",))
    revoke_key(services.engine, key_id)
    return Response(status_code=204)
