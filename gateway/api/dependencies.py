"""FastAPI dependencies shared by the routes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPBearer
from pydantic import BeforeValidator
from sqlmodel import Session

from gateway.errors import Unauthorized
from gateway.keys import Principal
from gateway.models import MAX_VERSION
from gateway.services import Services

# Declares the scheme in the OpenAPI document; checking is done by get_principal.
_bearer = HTTPBearer(auto_error=False, description="An API key: 'Authorization: Bearer <key>'")


def get_services(request: Request) -> Services:
    """The process's composed services."""
    services: Services = request.app.state.services
    return services


def get_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    """A read session for one request."""
    with Session(services.engine) as session:
        yield session


ServicesDep = Annotated[Services, Depends(get_services)]
SessionDep = Annotated[Session, Depends(get_session)]
DatasetPath = Annotated[
    str, Path(description="A dataset, named as its contract names it.", examples=["customers"])
]
VersionPath = Annotated[
    int, Path(ge=1, le=MAX_VERSION, description="A version number (from 1).", examples=[1])
]
OtherVersionPath = Annotated[
    int, Path(ge=1, le=MAX_VERSION, description="The version to compare with.", examples=[2])
]


def _iso_time(value: Any) -> Any:
    # Pydantic would also read 0 or "0.5" as Unix times; the API documents ISO 8601 only.
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    raise ValueError("expected an ISO 8601 time string")


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_time)]
IsoTime = Annotated[
    IsoDateTime | None, Query(description="ISO 8601 time, e.g. 2026-11-26T00:00:00Z.")
]


def get_principal(
    request: Request, _scheme: Annotated[object, Depends(_bearer)] = None
) -> Principal:
    """The caller, as ``gateway.middleware`` authenticated it before any body was read.

    Raises:
        Unauthorized: no principal (the request did not pass the middleware's gate).
    """
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise Unauthorized("send 'Authorization: Bearer <api key>'")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def respond_async(request: Request) -> bool:
    """Whether the client asked ``Prefer: respond-async`` (RFC 7240)."""
    prefer = ",".join(request.headers.getlist("prefer"))
    return any(
        token.split(";")[0].strip().lower() == "respond-async" for token in prefer.split(",")
    )
