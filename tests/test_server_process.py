"""A real `datagate serve` process on a free port: uploads over HTTP, concurrent versioning."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import polars as pl
import pytest

from bench.generate import customers
from tests.conftest import ADMIN_HEADERS, TEST_ADMIN_KEY, csv_bytes
from tests.serve import upload_csv

pytestmark = pytest.mark.slow


def test_serve_accepts_an_upload_and_serves_its_data(server: str) -> None:
    frame = customers(200, seed=3)
    created = upload_csv(server, csv_bytes(frame))
    assert created.status_code == 201, created.text
    data = httpx.get(
        f"{server}/api/v1/datasets/customers/versions/1/data", headers=ADMIN_HEADERS, timeout=30
    )
    stored = pl.read_parquet(io.BytesIO(data.content))
    assert stored["customer_id"].to_list() == frame["customer_id"].to_list()
    rejected = upload_csv(server, csv_bytes(frame.with_columns(pl.lit("ZZ").alias("country"))))
    assert rejected.status_code == 422
    assert rejected.headers["content-type"] == "application/problem+json"


def test_parallel_uploads_get_unique_gap_free_versions(server: str) -> None:
    distinct = [csv_bytes(customers(300, seed=100 + i)) for i in range(8)]
    same = csv_bytes(customers(300, seed=999))
    bodies = [*distinct, same, same, same, same]
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        responses = list(pool.map(lambda body: upload_csv(server, body), bodies))
    statuses = [r.status_code for r in responses]
    assert statuses[:8] == [201] * 8, [r.text for r in responses]
    assert sorted(statuses[8:]) == [200, 200, 200, 201]
    assert len({r.json()["version"]["version"] for r in responses[8:]}) == 1
    versions = httpx.get(
        f"{server}/api/v1/datasets/customers/versions", headers=ADMIN_HEADERS, timeout=30
    ).json()["versions"]
    assert [v["version"] for v in versions] == list(range(1, 10))
    assert len({v["content_hash"] for v in versions}) == 9


def test_the_openlineage_client_sends_events_to_datagate_unchanged(
    server: str, database_url: str
) -> None:
    from datetime import UTC, datetime

    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import (
        DatasetEvent,
        InputDataset,
        Job,
        JobEvent,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
        StaticDataset,
    )
    from openlineage.client.facet_v2 import schema_dataset
    from openlineage.client.transport.http import (
        ApiKeyTokenProvider,
        HttpConfig,
        HttpTransport,
    )
    from openlineage.client.uuid import generate_new_uuid
    from sqlmodel import Session, select

    from gateway.db import make_engine
    from gateway.models import LineageEvent

    auth = ApiKeyTokenProvider({"apiKey": TEST_ADMIN_KEY})
    client = OpenLineageClient(transport=HttpTransport(HttpConfig(url=server, auth=auth)))
    now = datetime.now(UTC).isoformat()
    producer = "https://example.com/airflow"
    run = Run(runId=str(generate_new_uuid()))
    job = Job(namespace="airflow", name="features.build")
    inputs = [InputDataset(namespace="datagate", name="customers")]
    outputs = [
        OutputDataset(
            namespace="warehouse",
            name="features",
            facets={
                "schema": schema_dataset.SchemaDatasetFacet(
                    fields=[schema_dataset.SchemaDatasetFacetFields(name="x", type="int")]
                )
            },
        )
    ]
    for state in (RunState.START, RunState.COMPLETE):
        client.emit(
            RunEvent(
                eventType=state,
                eventTime=now,
                run=run,
                job=job,
                producer=producer,
                inputs=inputs,
                outputs=outputs,
            )
        )
    client.emit(
        DatasetEvent(
            eventTime=now,
            producer=producer,
            dataset=StaticDataset(namespace="warehouse", name="features"),
        )
    )
    client.emit(JobEvent(eventTime=now, producer=producer, job=job, inputs=inputs, outputs=outputs))
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            stored = session.exec(
                select(LineageEvent).where(LineageEvent.origin == "external")
            ).all()
    finally:
        engine.dispose()
    assert sorted(e.event_kind for e in stored) == [
        "DatasetEvent",
        "JobEvent",
        "RunEvent",
        "RunEvent",
    ]
    assert {e.run_id for e in stored if e.event_kind == "RunEvent"} == {run.runId}
