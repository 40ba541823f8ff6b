"""HTTP routes of the v1 API and the open health endpoints."""

from fastapi import APIRouter

from gateway.api import audit, contracts, datasets, health, lineage, privacy, runs, training

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(datasets.router)
api_router.include_router(contracts.router)
api_router.include_router(runs.router)
api_router.include_router(privacy.router)
api_router.include_router(lineage.router)
api_router.include_router(training.router)
api_router.include_router(audit.router)

__all__ = ["api_router", "health"]
