"""The audit trail: every state change and data download, hash-chained, tamper-evident."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import TEST_PII_KEY, csv_bytes

UPLOAD = "/api/v1/datasets/customers/uploads"


def _entries(client: TestClient, **filters: str) -> list[dict[str, object]]:
    response = client.get("/api/v1/audit/log", params=filters)
    assert response.status_code == 200, response.text
    entries: list[dict[str, object]] = response.json()["entries"]
    return entries


def test_state_changes_and_downloads_are_recorded_without_payloads(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    uploaded = client.post(
        UPLOAD,
        content=csv_bytes(customers_frame),
        headers={"Content-Type": "text/csv", "X-Request-ID": "req-42"},
    )
    assert uploaded.headers["x-request-id"] == "req-42"
    assert TestClient(client.app).post(UPLOAD, content=b"a\n1\n").status_code == 401
    client.get("/api/v1/datasets/customers/versions/1/data?format=csv")
    client.get("/api/v1/datasets/customers/versions")  # metadata reads are not audited
    email = customers_frame["email"][0]
    client.post("/api/v1/privacy/subjects/search", json={"identifiers": [email]})
    entries = list(reversed(_entries(client)))
    assert [(e["actor"], e["action"], e["outcome"]) for e in entries] == [
        ("admin-key", "POST /api/v1/datasets/{dataset}/uploads", 201),
        ("anonymous", "POST /api/v1/datasets/{dataset}/uploads", 401),
        ("admin-key", "GET /api/v1/datasets/{dataset}/versions/{version}/data", 200),
        ("admin-key", "POST /api/v1/privacy/subjects/search", 200),
    ]
    assert entries[0]["request_id"] == "req-42"
    assert entries[0]["dataset"] == "customers"
    assert entries[0]["role"] == "admin"
    assert entries[0]["client"]
    assert email not in client.get("/api/v1/audit/log").text
    assert [e["outcome"] for e in _entries(client, actor="anonymous")] == [401]
    assert len(_entries(client, action="{version}/data")) == 1
    assert len(_entries(client, dataset="customers")) == 3


def test_verify_finds_the_first_entry_changed_or_deleted_behind_datagates_back(
    client: TestClient, customers_frame: pl.DataFrame, database_url: str, tmp_path: Path
) -> None:
    for bump in range(4):
        client.post(
            UPLOAD,
            content=csv_bytes(customers_frame.with_columns(pl.col("orders_count") + bump)),
            headers={"Content-Type": "text/csv"},
        )
    assert client.get("/api/v1/audit/verify").json() == {
        "ok": True,
        "checked": 4,
        "broken_at": None,
        "reason": None,
    }
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    assert client.get("/api/v1/audit/verify").json()["broken_at"] == 3
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET outcome = 200 WHERE seq = 2"))
    broken = client.get("/api/v1/audit/verify").json()
    assert (broken["ok"], broken["broken_at"], broken["reason"]) == (False, 2, "entry changed")
    env = {
        **os.environ,
        "DATAGATE_DATABASE_URL": database_url,
        "DATAGATE_HOME": str(tmp_path),
        "DATAGATE_PII_KEY": TEST_PII_KEY,
    }
    done = subprocess.run(
        [str(Path(sys.executable).parent / "datagate"), "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "broken at entry 2" in done.stderr
