"""Metrics, structured logs, request ids and readiness — in-process and on a live
`datagate serve --workers 2` whose workers share their metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, select

from bench.generate import customers
from gateway.db import make_engine
from gateway.models import LineageEvent
from tests.conftest import ADMIN_HEADERS, csv_bytes
from tests.serve import ServeProcess

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _upload(client: TestClient, frame: pl.DataFrame) -> Any:
    return client.post(
        "/api/v1/datasets/customers/uploads",
        content=csv_bytes(frame),
        headers={"Content-Type": "text/csv"},
    )


def test_metrics_count_uploads_rows_stages_failures_pii_and_requests(client: TestClient) -> None:
    before = _samples(client.get("/metrics").text)
    frame = customers(40, seed=8)
    assert _upload(client, frame).status_code == 201
    assert _upload(client, frame).status_code == 200
    bad = frame.with_columns(pl.lit("ZZ").alias("country"))
    assert _upload(client, bad).status_code == 422
    after = _samples(client.get("/metrics").text)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    customers_ = {"dataset": "customers"}
    assert delta("datagate_uploads_total", outcome="accepted", **customers_) == 1
    assert delta("datagate_uploads_total", outcome="matched", **customers_) == 1
    assert delta("datagate_uploads_total", outcome="rejected", **customers_) == 1
    assert delta("datagate_ingested_rows_total", **customers_) == 80
    assert delta("datagate_ingested_bytes_total", **customers_) == 2 * len(csv_bytes(frame))
    # The rejected upload stopped after validate.
    for stage, runs in (("parse", 3), ("validate", 3), ("redact", 2), ("version", 2)):
        assert delta("datagate_stage_duration_seconds_count", stage=stage) == runs
    assert delta("datagate_stage_duration_seconds_count", stage="record") == 2
    changed = {
        dict(key[1])["check"]: after[key] - before.get(key, 0.0)
        for key in after
        if key[0] == "datagate_validation_failures_total" and after[key] != before.get(key, 0.0)
    }
    assert len(changed) == 1
    ((check, count),) = changed.items()
    assert check.startswith("isin")
    assert count == 1
    assert delta("datagate_pii_values_redacted_total", entity="EMAIL_ADDRESS") == 80
    assert delta("datagate_pii_values_redacted_total", entity="PERSON") == 80
    route = "/api/v1/datasets/{dataset}/uploads"
    for status in ("201", "200", "422"):
        assert (
            delta(
                "datagate_http_request_duration_seconds_count",
                method="POST",
                route=route,
                status=status,
            )
            == 1
        )
    assert ("datagate_lineage_outbox_pending", ()) in after


def test_readiness_reports_every_check_with_status_and_detail(client: TestClient) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert set(checks) == {
        "database",
        "storage",
        "contracts",
        "pii",
        "lineage",
        "queue",
        "quarantine",
    }
    assert checks["queue"]["queued"] == 0
    assert (checks["quarantine"]["open_batches"], checks["quarantine"]["held_rows"]) == (0, 0)
    for name, check in checks.items():
        assert check["status"] in ("ok", "degraded"), name
        assert check["detail"], name
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.slow
def test_serve_writes_json_lines_joins_request_ids_and_sums_worker_metrics(
    tmp_path: Path, database_url: str
) -> None:
    server = ServeProcess(
        tmp_path / "home",
        database_url,
        tmp_path / "server.log",
        env={"DATAGATE_LOG_FORMAT": "json", "DATAGATE_LOG_LEVEL": "debug"},
        args=("--workers", "2"),
    ).wait_ready()
    frame = customers(30, seed=21)
    planted = frame["email"].to_list() + frame["phone"].drop_nulls().to_list()
    try:
        responses = [
            httpx.post(
                f"{server.base}/api/v1/datasets/customers/uploads",
                content=csv_bytes(frame.with_columns(pl.col("orders_count") + i)),
                headers={"Content-Type": "text/csv", "X-Request-ID": f"req-{i}", **ADMIN_HEADERS},
                timeout=60,
            )
            for i in range(6)
        ]
        assert [r.status_code for r in responses] == [201] * 6
        assert [r.headers["X-Request-ID"] for r in responses] == [f"req-{i}" for i in range(6)]
        # Whichever worker answers the scrape, it reports all six uploads.
        for _ in range(6):
            samples = _samples(httpx.get(f"{server.base}/metrics", timeout=10).text)
            uploads = _value(
                samples, "datagate_uploads_total", dataset="customers", outcome="accepted"
            )
            assert uploads == 6
        audit = httpx.get(
            f"{server.base}/api/v1/audit/log?dataset=customers", headers=ADMIN_HEADERS, timeout=10
        ).json()["entries"]
        assert {e["request_id"] for e in audit} >= {f"req-{i}" for i in range(6)}
    finally:
        server.stop()

    lines = [line for line in server.log_text().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is one JSON event
    assert all({"time", "level", "event"} <= set(e) for e in events)
    requests = {e["request_id"]: e for e in events if e["event"] == "request"}
    for i, response in enumerate(responses):
        logged = requests[f"req-{i}"]
        assert logged["route"] == "/api/v1/datasets/{dataset}/uploads"
        assert logged["dataset"] == "customers"
        assert logged["run_id"] == response.json()["run_id"]
        assert logged["status"] == 201
        assert logged["outcome"] == "ok"
        assert logged["duration_ms"] > 0
    assert not [value for value in planted if value in server.log_text()]

    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            payloads = session.exec(select(LineageEvent.payload)).all()
    finally:
        engine.dispose()
    carried = {
        p["run"]["runId"]: p["run"]["facets"]["datagate_request"]["requestId"] for p in payloads
    }
    assert carried == {r.json()["run_id"]: f"req-{i}" for i, r in enumerate(responses)}


def test_metric_labels_come_only_from_bounded_sets(client: TestClient) -> None:
    """Column names, checks and methods an uploader chooses never become label values."""
    frame = customers(20, seed=3).with_columns(
        pl.lit("x").alias("jane.doe@example.com"), pl.lit("y").alias("extra_column_7f3a")
    )
    assert _upload(client, frame).status_code == 422  # strict: the extra columns are refused
    client.request("FOOBAR", "/api/v1/datasets")
    client.request("PROPFIND-jane", "/nowhere")
    text = client.get("/metrics").text
    assert "jane" not in text
    assert "extra_column_7f3a" not in text
    columns = {c["name"] for c in client.get("/api/v1/contracts/customers").json()["columns"]}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            # (Counters are per process: other tests' contracts have columns of their own.)
            if "column" in labels and labels.get("contract") == "customers":
                assert labels["column"] in columns | {"(other)"}, labels
            if "method" in labels:
                assert labels["method"] in {
                    "GET",
                    "HEAD",
                    "OPTIONS",
                    "POST",
                    "PUT",
                    "PATCH",
                    "DELETE",
                    "OTHER",
                }
            if "route" in labels:
                assert labels["route"] == "unmatched" or labels["route"].startswith("/"), labels
