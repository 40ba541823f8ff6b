"""The FastAPI application, built from one Settings object."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway import ui
from gateway.api import api_router, health
from gateway.api.docs import install_docs
from gateway.api.openapi import install_openapi
from gateway.middleware import RequestContext
from gateway.problems import install_problem_handlers
from gateway.services import Services, build_services
from gateway.settings import Settings
from privacy import PiiEngine

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None,
    services: Services | None = None,
    pii_engine: PiiEngine | None = None,
) -> FastAPI:
    """Build the app: migrate, load contracts, open storage, wire routes and error handlers.

    Raises:
        ValueError: a setting cannot be used.
    """
    services = services or build_services(settings or Settings(), pii_engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        services.close()

    app = FastAPI(
        title="Datagate",
        version="0.1.0",
        summary="Data governance and validation gateway",
        lifespan=lifespan,
        docs_url=None,  # served from the package's own assets (gateway.api.docs)
        redoc_url=None,
    )
    app.state.services = services
    install_problem_handlers(app)
    app.add_middleware(RequestContext, services=services)
    app.include_router(health.router)
    app.include_router(api_router)
    ui.install(app)
    install_openapi(app)
    install_docs(app)
    return app
