"""POST /api/v1/lineage: OpenLineage events from any producer, validated against the spec."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from gateway.models import LineageEvent
from lineage.validation import SPEC_DIR, _spec
from tests.openlineage_spec import EXAMPLES, SCHEMA_DIGESTS, shared_spec_dir

RUN_EVENT: dict[str, Any] = {
    "eventType": "COMPLETE",
    "eventTime": "2026-11-01T10:00:00.000Z",
    "producer": "https://example.com/airflow",
    "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    "run": {"runId": "01900000-0000-7000-8000-000000000001", "facets": {}},
    "job": {"namespace": "airflow", "name": "features.build", "facets": {}},
    "inputs": [{"namespace": "crm", "name": "customers", "facets": {}, "inputFacets": {}}],
    "outputs": [{"namespace": "warehouse", "name": "features", "facets": {}, "outputFacets": {}}],
}


def _stored(client: TestClient) -> list[LineageEvent]:
    with Session(client.app.state.services.engine) as session:  # type: ignore[attr-defined]
        return list(
            session.exec(select(LineageEvent).where(LineageEvent.origin == "external")).all()
        )


def test_shipped_schemas_are_the_official_ones() -> None:
    shipped = [SPEC_DIR / "OpenLineage.json", *sorted((SPEC_DIR / "facets").glob("*.json"))]
    published = {}
    for line in SCHEMA_DIGESTS.read_text().splitlines():
        digest, name = line.split()
        published[SPEC_DIR / name] = digest
    assert set(published) == set(shipped)
    for path in shipped:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == published[path], path
    shared = shared_spec_dir()  # a copy of the spec beside the checkout, when there is one
    if shared is not None:
        for path in shipped:
            assert path.read_bytes() == (shared / path.relative_to(SPEC_DIR)).read_bytes()
        for example in (shared / "tests").rglob("*.json"):
            carried = EXAMPLES / example.relative_to(shared / "tests")
            assert carried.read_bytes() == example.read_bytes(), carried


def test_the_spec_example_event_is_accepted_and_stored(client: TestClient) -> None:
    example = json.loads((EXAMPLES / "example_full_event.json").read_text())
    response = client.post("/api/v1/lineage", json=example)
    assert response.status_code == 201, response.text
    assert response.json() == {"event_type": "RunEvent", "run_id": example["run"]["runId"]}
    (stored,) = _stored(client)
    assert stored.payload == example
    assert (stored.job_namespace, stored.job_name) == ("food_delivery", "dbt")


def _event_with_facet(key: str, facet: Any, kind: str) -> dict[str, Any]:
    event = copy.deepcopy(RUN_EVENT)
    target = {
        "run": event["run"]["facets"],
        "job": event["job"]["facets"],
        "dataset": event["inputs"][0]["facets"],
        "input": event["inputs"][0]["inputFacets"],
        "output": event["outputs"][0]["outputFacets"],
        "any": event["outputs"][0]["facets"],
    }[kind]
    target[key] = facet
    return event


def _facet_examples() -> list[tuple[str, Path]]:
    folder = EXAMPLES
    return [(path.parent.name, path) for path in sorted(folder.glob("*/*.json"))]


def test_every_example_facet_of_the_spec_is_accepted_where_it_belongs(client: TestClient) -> None:
    known = _spec().facets
    examples = _facet_examples()
    assert len(examples) >= 30
    for name, path in examples:
        facets = json.loads(path.read_text())
        for key, facet in facets.items():
            kind = known[key][0][1]
            response = client.post("/api/v1/lineage", json=_event_with_facet(key, facet, kind))
            assert response.status_code == 201, (name, response.text)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: e.pop("eventTime"), "eventTime"),
        (lambda e: e["run"].update(runId="not-a-uuid"), "runId"),
        (lambda e: e["job"].pop("name"), "name"),
        (
            lambda e: e["run"]["facets"].update(
                schema={"_producer": "x", "_schemaURL": "https://x", "fields": []}
            ),
            "schema",
        ),
        (lambda e: e["run"]["facets"].update(myFacet={"value": 1}), "myFacet"),
    ],
    ids=[
        "no-event-time",
        "bad-run-id",
        "job-without-name",
        "dataset-facet-on-run",
        "custom-facet-without-base",
    ],
)
def test_invalid_events_get_400_with_the_reason(
    client: TestClient, change: Any, reason: str
) -> None:
    event = copy.deepcopy(RUN_EVENT)
    change(event)
    response = client.post("/api/v1/lineage", json=event)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/invalid-lineage-event")
    assert reason in response.json()["detail"]
    assert _stored(client) == []


def test_non_json_body_is_a_400(client: TestClient) -> None:
    response = client.post(
        "/api/v1/lineage", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["type"].endswith("/invalid-lineage-event")
