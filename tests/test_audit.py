"""Lineage graph, model provenance and version impact, over Datagate's and external events."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from tests.conftest import upload_versions


def _external_run(
    job: str, inputs: list[tuple[str, str, str]], outputs: list[tuple[str, str, str]]
) -> dict[str, Any]:
    def dataset(namespace: str, name: str, version: str) -> dict[str, Any]:
        facet = {
            "_producer": "https://example.com",
            "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
            "datasetVersion": version,
        }
        return {"namespace": namespace, "name": name, "facets": {"version": facet}}

    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-11-20T10:00:00Z",
        "producer": "https://example.com/airflow",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": f"01900000-0000-7000-8000-{sum(map(ord, job)):012d}"},
        "job": {"namespace": "airflow", "name": job},
        "inputs": [dataset(*i) for i in inputs],
        "outputs": [dataset(*o) for o in outputs],
    }


@pytest.fixture
def history(client: TestClient, customers_frame: pl.DataFrame) -> TestClient:
    """customers v1 and v2; model churn v1 on customers v1; an external pipeline reads v1 into
    warehouse features f1, and an external training job turns f1 into model fraud v3."""
    upload_versions(client, customers_frame, 2, "?source=crm:exports/customers.csv")
    trained = client.post(
        "/api/v1/training-runs",
        json={
            "model": {"name": "churn", "version": "1"},
            "inputs": [{"dataset": "customers", "version": 1}],
        },
    )
    assert trained.status_code == 201
    for event in (
        _external_run(
            "features.build", [("datagate", "customers", "1")], [("warehouse", "features", "f1")]
        ),
        _external_run("train.fraud", [("warehouse", "features", "f1")], [("model", "fraud", "3")]),
    ):
        assert client.post("/api/v1/lineage", json=event).status_code == 201
    return client


def test_lineage_graph_has_marquez_shape_and_keeps_versions(history: TestClient) -> None:
    response = history.get(
        "/api/v1/lineage", params={"nodeId": "dataset:datagate:customers", "depth": 20}
    )
    assert response.status_code == 200
    nodes = {n["id"]: n for n in response.json()["graph"]}
    assert {
        "dataset:datagate:customers",
        "job:datagate:ingest.customers",
        "job:datagate:train.churn",
        "dataset:model:churn",
        "job:airflow:features.build",
        "dataset:warehouse:features",
        "job:airflow:train.fraud",
        "dataset:model:fraud",
    } <= set(nodes)
    customers = nodes["dataset:datagate:customers"]
    assert customers["type"] == "DATASET"
    assert customers["data"]["versions"] == ["1", "2"]
    assert {
        "origin": "job:datagate:ingest.customers",
        "destination": "dataset:datagate:customers",
    } in customers["inEdges"]
    assert {
        "origin": "dataset:datagate:customers",
        "destination": "job:datagate:train.churn",
    } in customers["outEdges"]
    assert nodes["dataset:model:fraud"]["data"]["type"] == "MODEL"
    near = history.get(
        "/api/v1/lineage", params={"nodeId": "dataset:datagate:customers", "depth": 0}
    ).json()
    assert "dataset:model:fraud" not in {n["id"] for n in near["graph"]}
    assert history.get("/api/v1/lineage", params={"nodeId": "dataset:x:nothing"}).status_code == 404


def test_provenance_names_every_input_version_and_its_upload(history: TestClient) -> None:
    response = history.get("/api/v1/audit/models/churn/provenance", params={"version": "1"})
    assert response.status_code == 200
    (run,) = response.json()["training_runs"]
    (item,) = run["inputs"]
    assert (item["name"], item["version"]) == ("customers", "1")
    upload = item["upload"]
    assert upload["uploader"] == "admin-key"
    assert upload["source"] == "crm:exports/customers.csv"
    assert upload["contract"]["name"] == "customers"
    assert len(upload["contract"]["fingerprint"]) == 64
    assert upload["validation"]["valid"] is True
    assert {c["column"] for c in upload["pii"]["columns"]} >= {"email", "full_name"}
    markdown = history.get(
        "/api/v1/audit/models/churn/provenance", params={"version": "1", "format": "md"}
    )
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "# Provenance of model churn version 1" in markdown.text
    assert "| dataset:datagate:customers | 1 | admin-key" in markdown.text
    missing = history.get("/api/v1/audit/models/churn/provenance", params={"version": "9"})
    assert missing.status_code == 404


def test_impact_follows_consumers_transitively_and_exactly_per_version(history: TestClient) -> None:
    impact = history.get("/api/v1/audit/datasets/customers/versions/1/impact").json()
    assert [(m["model"], m["version"]) for m in impact["models"]] == [
        ("churn", "1"),
        ("fraud", "3"),
    ]
    fraud = next(m for m in impact["models"] if m["model"] == "fraud")
    assert fraud["path"] == [
        "dataset:datagate:customers",
        "job:airflow:features.build",
        "dataset:warehouse:features",
        "job:airflow:train.fraud",
        "dataset:model:fraud",
    ]
    assert [(d["dataset"], d["version"]) for d in impact["datasets"]] == [
        ("dataset:warehouse:features", "f1")
    ]
    untouched = history.get("/api/v1/audit/datasets/customers/versions/2/impact").json()
    assert untouched["models"] == []
    assert untouched["datasets"] == []
    markdown = history.get("/api/v1/audit/datasets/customers/versions/1/impact?format=md").text
    assert "- fraud v3: dataset:datagate:customers → job:airflow:features.build" in markdown
    assert history.get("/api/v1/audit/datasets/customers/versions/7/impact").status_code == 404


def test_subject_search_lists_the_models_trained_on_the_versions_found(
    history: TestClient, customers_frame: pl.DataFrame
) -> None:
    email = customers_frame["email"][0]
    body = history.post("/api/v1/privacy/subjects/search", json={"identifiers": [email]}).json()
    assert [(m["dataset"], m["version"]) for m in body["matches"]] == [
        ("customers", 1),
        ("customers", 2),
    ]
    assert [(m["model"], m["version"]) for m in body["models"]] == [("churn", "1"), ("fraud", "3")]


def test_markdown_exports_show_what_others_wrote_as_text() -> None:
    """Job, dataset, model and uploader names come from anyone who posts lineage or trains:
    in a ticket they must render as the text they are, never as a link, image, HTML or an
    extra table cell."""
    from markdown_it import MarkdownIt

    from gateway.graph import impact_markdown, provenance_markdown

    hostile = "a|b <img src=x onerror=alert(1)> ![t](http://evil.example/p.png) [c](javascript:x)"
    impact = impact_markdown(
        {
            "dataset": {"name": "notes", "version": 1},
            "models": [{"model": hostile, "version": "1", "path": [f"job:etl:{hostile}"]}],
            "datasets": [{"dataset": hostile, "version": "2", "path": [hostile]}],
            "jobs": [{"job": hostile}],
        }
    )
    provenance = provenance_markdown(
        {
            "model": {"name": hostile, "version": "1"},
            "training_runs": [
                {
                    "run_id": "r1",
                    "job": hostile,
                    "inputs": [
                        {
                            "dataset": hostile,
                            "name": hostile,
                            "version": "1",
                            "upload": {"uploader": hostile, "source": hostile},
                        }
                    ],
                }
            ],
        }
    )
    renderer = MarkdownIt("commonmark").enable("table")
    for text in (impact, provenance):
        html = renderer.render(text)
        assert "<img" not in html
        assert "<a " not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html  # shown, as text
    # One row of eight cells: the '|' in the names split nothing.
    assert renderer.render(provenance).count("<td>") == 8
