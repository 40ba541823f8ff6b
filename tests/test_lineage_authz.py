"""Lineage and training runs cannot be forged: the gateway's namespace and models are Datagate's
own, inputs stay within a key's datasets, and a run id belongs to one job (finding 6)."""

from __future__ import annotations

import copy
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from tests.conftest import upload_versions
from tests.test_lineage_api import RUN_EVENT

LINEAGE = "/api/v1/lineage"
TRAINING = "/api/v1/training-runs"


def _key(client: TestClient, role: str, datasets: list[str]) -> dict[str, str]:
    created = client.post("/api/v1/keys", json={"role": role, "datasets": datasets})
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


def _event(
    job: tuple[str, str] = ("airflow", "features.build"),
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    run_id: str = "01900000-0000-7000-8000-00000000aaaa",
) -> dict[str, Any]:
    event = copy.deepcopy(RUN_EVENT)
    event["job"] = {"namespace": job[0], "name": job[1], "facets": {}}
    event["run"]["runId"] = run_id
    event["inputs"] = inputs if inputs is not None else []
    event["outputs"] = outputs if outputs is not None else []
    return event


def _dataset(namespace: str, name: str, version: str | None = None) -> dict[str, Any]:
    facets: dict[str, Any] = {}
    if version is not None:
        facets["version"] = {
            "_producer": "https://example.com/x",
            "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json",
            "datasetVersion": version,
        }
    return {"namespace": namespace, "name": name, "facets": facets}


def _graph_versions(client: TestClient, node: str) -> set[str]:
    graph = client.get("/api/v1/lineage", params={"nodeId": node}).json()["graph"]
    return {str(v) for n in graph if n["id"] == node for v in n["data"].get("versions", [])}


@pytest.fixture
def history(client: TestClient, customers_frame: pl.DataFrame) -> TestClient:
    upload_versions(client, customers_frame, 1)
    return client


def test_a_producer_cannot_write_the_gateways_jobs_datasets_or_models(
    history: TestClient,
) -> None:
    scoped = _key(history, "producer", ["transactions"])
    trained = {
        "model": {"name": "churn", "version": "1"},
        "inputs": [{"dataset": "customers", "version": 1}],
    }
    assert history.post(TRAINING, json=trained).status_code == 201
    before = history.get("/api/v1/lineage", params={"nodeId": "dataset:datagate:customers"}).text
    forgeries = [
        # The reported attack: an ingest of another dataset with an invented version 999.
        _event(
            ("datagate", "ingest.customers"), outputs=[_dataset("datagate", "customers", "999")]
        ),
        _event(("datagate", "train.fraud"), outputs=[_dataset("model", "fraud", "1")]),
        _event(outputs=[_dataset("datagate", "customers", "999")]),
        _event(outputs=[_dataset("datagate", "transactions", "5")]),
        # A model that Datagate's training runs produce.
        _event(outputs=[_dataset("model", "churn", "2")]),
    ]
    for event in forgeries:
        refused = history.post(LINEAGE, json=event, headers=scoped)
        assert refused.status_code == 403, event
        assert refused.json()["type"].endswith("/forbidden")
    dataset_event = {
        "eventTime": "2026-11-01T10:00:00.000Z",
        "producer": "https://example.com/x",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent",
        "dataset": _dataset("datagate", "customers", "999"),
    }
    assert history.post(LINEAGE, json=dataset_event, headers=scoped).status_code == 403
    after = history.get("/api/v1/lineage", params={"nodeId": "dataset:datagate:customers"}).text
    assert after == before
    provenance = history.get("/api/v1/audit/models/fraud/provenance", params={"version": "1"})
    assert provenance.status_code == 404
    churn = history.get("/api/v1/audit/models/churn/provenance", params={"version": "2"})
    assert churn.status_code == 404
    churn = history.get("/api/v1/audit/models/churn/provenance", params={"version": "2"})
    assert churn.status_code == 404


def test_inputs_from_the_gateway_stay_within_the_keys_datasets_and_versions(
    history: TestClient,
) -> None:
    scoped = _key(history, "producer", ["transactions"])
    reads_customers = _event(inputs=[_dataset("datagate", "customers", "1")])
    assert history.post(LINEAGE, json=reads_customers, headers=scoped).status_code == 403
    allowed = _key(history, "consumer", ["customers"])
    assert history.post(LINEAGE, json=reads_customers, headers=allowed).status_code == 201
    invented = _event(
        inputs=[_dataset("datagate", "customers", "999")],
        run_id="01900000-0000-7000-8000-00000000bbbb",
    )
    refused = history.post(LINEAGE, json=invented, headers=allowed)
    assert refused.status_code == 422
    assert refused.json()["type"].endswith("/unknown-dataset-version")
    assert "999" not in _graph_versions(history, "dataset:datagate:customers")
    # Other namespaces are the producers' own business.
    elsewhere = _event(
        inputs=[_dataset("s3://lake", "raw/x")], run_id="01900000-0000-7000-8000-00000000cccc"
    )
    assert history.post(LINEAGE, json=elsewhere, headers=scoped).status_code == 201


def test_a_training_run_reads_only_the_keys_datasets(history: TestClient) -> None:
    consumer = _key(history, "consumer", ["transactions"])
    report = {
        "model": {"name": "fraud", "version": "1"},
        "inputs": [{"dataset": "customers", "version": 1}],
    }
    refused = history.post(TRAINING, json=report, headers=consumer)
    assert refused.status_code == 403
    assert history.get("/api/v1/audit/models/fraud/provenance?version=1").status_code == 404
    allowed = _key(history, "consumer", ["customers"])
    assert history.post(TRAINING, json=report, headers=allowed).status_code == 201
    ingest_job = {**report, "job": {"namespace": "datagate", "name": "ingest.customers"}}
    assert history.post(TRAINING, json=ingest_job, headers=allowed).status_code == 403


def test_a_run_id_belongs_to_one_job(history: TestClient) -> None:
    ingest_run = history.get("/api/v1/datasets/customers/versions/1").json()["run_id"]
    report = {
        "model": {"name": "fraud", "version": "2"},
        "inputs": [{"dataset": "customers", "version": 1}],
        "run_id": ingest_run,
        "status": "START",
    }
    reused = history.post(TRAINING, json=report, headers={})
    assert reused.status_code == 409
    assert reused.json()["type"].endswith("/conflict")
    assert history.post(LINEAGE, json=_event(run_id=ingest_run)).status_code == 409
    first = _event(run_id="01900000-0000-7000-8000-00000000dddd")
    first["eventType"] = "START"
    assert history.post(LINEAGE, json=first).status_code == 201
    same_job = _event(run_id="01900000-0000-7000-8000-00000000dddd")
    assert history.post(LINEAGE, json=same_job).status_code == 201
    other_job = _event(("airflow", "other"), run_id="01900000-0000-7000-8000-00000000dddd")
    assert history.post(LINEAGE, json=other_job).status_code == 409
    started = history.post(TRAINING, json={**report, "run_id": None}).json()["run_id"]
    close = {**report, "run_id": started, "status": "COMPLETE"}
    assert history.post(TRAINING, json=close).status_code == 201
