"""Loaded contracts: columns, dtypes, checks and PII policy."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.dependencies import PrincipalDep, ServicesDep
from gateway.errors import ContractNotFound
from gateway.keys import ROLES, require
from gateway.schemas import ContractList, ContractOut

router = APIRouter(tags=["contracts"])


@router.get("/contracts", response_model=ContractList)
def list_contracts(services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    """Every loaded contract, and every contract file that failed to load."""
    require(principal, ROLES)
    catalog = services.catalog
    return {
        "contracts": [c.describe() for _, c in sorted(catalog.contracts.items())],
        "errors": [{"file": e.file, "reason": e.reason} for e in catalog.errors],
    }


@router.get("/contracts/{name}", response_model=ContractOut)
def get_contract(name: str, services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    """One contract."""
    require(principal, ROLES)
    contract = services.catalog.get(name)
    if contract is None:
        raise ContractNotFound(f"no contract named {name!r}")
    return contract.describe()
