"""Training runs link exact dataset versions to a model version, as OpenLineage events."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from gateway.client import DatagateClient, DatagateError
from gateway.models import LineageEvent
from tests.conftest import upload_versions
from tests.openlineage_spec import validate_event


def _training_events(client: TestClient) -> list[dict[str, Any]]:
    with Session(client.app.state.services.engine) as session:  # type: ignore[attr-defined]
        rows = session.exec(
            select(LineageEvent)
            .where(col(LineageEvent.job_name).startswith("train."))
            .order_by(col(LineageEvent.id))
        ).all()
    return [row.payload for row in rows]


def test_a_reported_run_links_the_exact_input_versions_to_the_model(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    upload_versions(client, customers_frame, 2)
    response = client.post(
        "/api/v1/training-runs",
        json={
            "model": {"name": "fraud-detector", "version": "7"},
            "inputs": [
                {"dataset": "customers", "version": 1},
                {"dataset": "customers", "version": 2},
            ],
            "parameters": {"max_depth": 6},
            "metrics": {"auc": 0.91},
        },
        headers={"X-Request-ID": "train-req-1"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["events"] == ["START", "COMPLETE"]
    events = _training_events(client)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        validate_event(event)
        assert event["run"]["facets"]["datagate_request"]["requestId"] == "train-req-1"
    complete = events[1]
    assert complete["job"]["name"] == "train.fraud-detector"
    assert [(i["name"], i["facets"]["version"]["datasetVersion"]) for i in complete["inputs"]] == [
        ("customers", "1"),
        ("customers", "2"),
    ]
    (model,) = complete["outputs"]
    assert (model["namespace"], model["name"]) == ("model", "fraud-detector")
    assert model["facets"]["datasetType"]["datasetType"] == "MODEL"
    assert model["facets"]["version"]["datasetVersion"] == "7"
    assert complete["run"]["facets"]["datagate_trainingMetrics"]["metrics"] == {"auc": 0.91}


def test_unknown_dataset_versions_are_refused(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    upload_versions(client, customers_frame, 2)
    response = client.post(
        "/api/v1/training-runs",
        json={
            "model": {"name": "m", "version": "1"},
            "inputs": [{"dataset": "customers", "version": 9}],
        },
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/unknown-dataset-version")
    assert _training_events(client) == []


def test_client_reports_start_then_complete_or_fail(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    upload_versions(client, customers_frame, 2)
    datagate = DatagateClient("http://testserver", http=client)  # type: ignore[arg-type]
    with datagate.training_run("churn", version="3", inputs=[("customers", 2)]) as run:
        run.metrics["f1"] = 0.8
    with (
        pytest.raises(ZeroDivisionError),
        datagate.training_run("churn", version="4", inputs=[("customers", 1)]),
    ):
        _ = 1 / 0
    with (
        pytest.raises(DatagateError) as refused,
        datagate.training_run("churn", version="5", inputs=[("orders", 1)]),
    ):
        pass
    assert refused.value.problem["status"] == 422
    events = _training_events(client)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE", "START", "FAIL"]
    assert events[0]["run"]["runId"] == events[1]["run"]["runId"]
    assert events[3]["run"]["facets"]["errorMessage"]["message"] == "ZeroDivisionError"
