"""HTTP routes of the v1 API and the open health endpoints."""

from fastapi import APIRouter, Depends

from gateway.api import (
    audit,
    contracts,
    datasets,
    health,
    keys,
    lineage,
    privacy,
    quarantine,
    runs,
    training,
    versions,
)
from gateway.api.dependencies import get_principal

# Every /api/v1 route needs a valid key; each route then checks role and datasets.
api_router = APIRouter(prefix="/api/v1", dependencies=[Depends(get_principal)])
api_router.include_router(datasets.router)
api_router.include_router(versions.router)
api_router.include_router(contracts.router)
api_router.include_router(runs.router)
api_router.include_router(quarantine.router)
api_router.include_router(privacy.router)
api_router.include_router(lineage.router)
api_router.include_router(training.router)
api_router.include_router(audit.router)
api_router.include_router(keys.router)

__all__ = ["api_router", "health"]
