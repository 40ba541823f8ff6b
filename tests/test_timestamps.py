"""Every time the API gives carries an explicit UTC offset, on SQLite (which stores none) as on
PostgreSQL: every GET route of the OpenAPI document is walked after an upload and a training run."""

from __future__ import annotations

import re
from typing import Any

import polars as pl
from fastapi.testclient import TestClient

from gateway.db import unit_of_work
from gateway.models import QuarantineBatch, utcnow
from gateway.schemas import TrainingRunOut, UploadOut
from tests.conftest import csv_bytes

# An ISO 8601 date-time: a time of day after the date.
ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")
BATCH = "01938f7c-2b1e-7c4e-9d2a-5b6c7d8e9f01"
SKIPPED = {"/metrics", "/api/v1/datasets/{dataset}/versions/{version}/data"}  # not JSON


def _naive_times(value: Any, where: str = "") -> list[str]:
    if isinstance(value, dict):
        return [n for key, item in value.items() for n in _naive_times(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [n for i, item in enumerate(value) for n in _naive_times(item, f"{where}[{i}]")]
    if isinstance(value, str) and ISO_TIME.match(value) and not OFFSET.search(value):
        return [f"{where}: {value}"]
    return []


def test_every_route_gives_times_with_their_utc_offset(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    created = client.post(
        "/api/v1/datasets/customers/uploads",
        content=csv_bytes(customers_frame),
        headers={"Content-Type": "text/csv"},
    )
    assert created.status_code == 201, created.text
    trained = client.post(
        "/api/v1/training-runs",
        json={
            "model": {"name": "churn", "version": "3"},
            "inputs": [{"dataset": "customers", "version": 1}],
        },
    )
    assert trained.status_code == 201, trained.text
    # These two answer with a JSONResponse (status 200/201, Location): FastAPI does not check
    # them against their documented models, so this does.
    UploadOut.model_validate(created.json())
    TrainingRunOut.model_validate(trained.json())
    key = client.post(
        "/api/v1/keys", json={"role": "auditor", "name": "audit", "expires_at": "2099-01-01"}
    )
    assert key.status_code == 201, key.text
    # A closed quarantine batch (the default contracts reject instead), for its routes' times.
    services = client.app.state.services  # type: ignore[attr-defined]
    now = utcnow()
    with unit_of_work(services.engine) as session:
        session.add(
            QuarantineBatch(
                id=BATCH,
                dataset="customers",
                run_id=created.json()["run_id"],
                status="discarded",
                format="csv",
                rows_total=1,
                rows_held=0,
                rows_discarded=1,
                failures=[{"column": "country", "check": "isin", "rows": 1}],
                held_failures=[],
                contract_version="1",
                contract_fingerprint="0" * 64,
                uploader="admin-key",
                created_at=now,
                expires_at=now,
                updated_at=now,
                closed_at=now,
                closed_by="admin-key",
                close_reason="test",
            )
        )
    loaded = client.get("/api/v1/contracts/customers").json()["version"]
    revalidation = client.post(
        "/api/v1/contracts/customers/revalidate", json={}, headers={"Prefer": "respond-async"}
    )
    assert revalidation.status_code == 202, revalidation.text
    values = {
        "ref": loaded,
        "batch_id": BATCH,
        "dataset": "customers",
        "name": "customers",
        "version": "1",
        "run_id": created.json()["run_id"],
        "model": "churn",
        "other": "1",
        "revalidation_id": revalidation.json()["id"],
    }
    queries = {
        "/api/v1/lineage": {"nodeId": "dataset:datagate:customers"},
        "/api/v1/audit/models/{model}/provenance": {"version": "3"},
        "/api/v1/contracts/{name}/diff": {"from": loaded},
    }
    naive = _naive_times(created.json(), "POST upload") + _naive_times(key.json(), "POST key")
    walked = 0
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        if "get" not in operations or path in SKIPPED:
            continue
        url = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        response = client.get(url, params=queries.get(path))
        assert response.status_code == 200, (url, response.text)
        naive += _naive_times(response.json(), url)
        walked += 1
    assert walked >= 19
    assert naive == []
