"""FastAPI dependencies shared by the routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlmodel import Session

from gateway.keys import Principal, authenticate
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


def get_principal(
    request: Request,
    services: Annotated[Services, Depends(get_services)],
    _scheme: Annotated[object, Depends(_bearer)] = None,
) -> Principal:
    """The caller, from the ``Authorization: Bearer`` header (401 without a valid key)."""
    admin_key = services.settings.admin_key
    principal = authenticate(
        services.engine,
        request.headers.get("authorization"),
        admin_key.get_secret_value() if admin_key else None,
    )
    request.state.principal = principal  # for the audit trail
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
