"""The audit trail: every state change, data download and server error, in a keyed chain whose
head is checkpointed outside the database: edits, trimmed tails and floods are caught."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, col, select

from gateway.audit_log import CHECKPOINTS, GENESIS, AuditRecord, AuditTrail, legacy_entry_hash
from gateway.contracts import Contract
from gateway.models import AuditEntry
from gateway.settings import Settings
from tests.conftest import TEST_PII_KEY, csv_bytes

UPLOAD = "/api/v1/datasets/customers/uploads"


def _entries(client: TestClient, **filters: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/audit/log", params=filters)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
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


def _verify(client: TestClient, expect: str | None = None) -> dict[str, Any]:
    params = {"expect": expect} if expect else {}
    response = client.get("/api/v1/audit/verify", params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _fill(client: TestClient, count: int) -> None:
    audit: AuditTrail = client.app.state.services.audit  # type: ignore[attr-defined]
    for n in range(count):
        audit.append(AuditRecord("bot", "producer", "POST /x", f"/x/{n}", None, 201, f"r{n}", None))


def _cli_verify(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATAGATE_DATABASE_URL": settings.resolved_database_url,
        "DATAGATE_HOME": str(settings.home),
        "DATAGATE_PII_KEY": TEST_PII_KEY,
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "datagate"), "audit", "verify", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_verify_finds_the_first_entry_changed_or_deleted_behind_datagates_back(
    client: TestClient, customers_frame: pl.DataFrame, settings: Settings
) -> None:
    for bump in range(4):
        client.post(
            UPLOAD,
            content=csv_bytes(customers_frame.with_columns(pl.col("orders_count") + bump)),
            headers={"Content-Type": "text/csv"},
        )
    intact = _verify(client)
    assert (intact["ok"], intact["checked"], intact["broken_at"]) == (True, 4, None)
    assert intact["head"] == intact["checkpoint"]
    assert intact["head"].startswith("4:")
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    assert _verify(client)["broken_at"] == 3
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET outcome = 200 WHERE seq = 2"))
    broken = _verify(client)
    assert (broken["ok"], broken["broken_at"], broken["reason"]) == (False, 2, "entry changed")
    done = _cli_verify(settings)
    assert done.returncode == 1
    assert "broken at entry 2" in done.stderr


@pytest.mark.parametrize("deleted", ["last", "last 500", "all"])
def test_deleting_the_newest_entries_or_every_entry_is_detected(
    client: TestClient, deleted: str
) -> None:
    _fill(client, 600)
    assert _verify(client)["ok"]
    where = {"last": "seq > 599", "last 500": "seq > 100", "all": "1 = 1"}[deleted]
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(text(f"DELETE FROM audit_log WHERE {where}"))
    result = _verify(client)
    assert result["ok"] is False
    assert "entries missing" in result["reason"]
    assert result["checkpoint"].startswith("600:")


def test_a_chain_rewritten_without_the_key_is_detected(client: TestClient) -> None:
    """The old scheme (a bare SHA-256 chain) let anyone edit a row and recompute every hash."""
    _fill(client, 5)
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        rows = session.exec(select(AuditEntry).order_by(col(AuditEntry.seq))).all()
    prev = GENESIS
    with engine.begin() as connection:
        for row in rows:
            row.actor = "somebody-else" if row.seq == 2 else row.actor
            new = legacy_entry_hash(prev, row.seq, row.at, row)
            connection.execute(
                text("UPDATE audit_log SET actor = :a, prev_hash = :p, hash = :h WHERE seq = :s"),
                {"a": row.actor, "p": prev, "h": new, "s": row.seq},
            )
            prev = new
    result = _verify(client)
    assert result["ok"] is False
    assert result["broken_at"] == 5
    assert "differs from its recorded head" in result["reason"]


def test_expect_catches_a_trimmed_tail_even_without_checkpoints(
    client: TestClient, settings: Settings
) -> None:
    _fill(client, 10)
    head = _verify(client)["head"]
    # Someone who can write both the database and the snapshot store trims the tail.
    store_root = settings.home / "snapshots"
    shutil.rmtree(store_root / CHECKPOINTS)
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE seq > 7"))
    assert _verify(client)["ok"] is True  # nothing left to compare with ...
    caught = _verify(client, expect=head)  # ... but the head kept elsewhere
    assert (caught["ok"], caught["broken_at"]) == (False, 8)
    done = _cli_verify(settings, "--expect", head)
    assert done.returncode == 1
    assert "entries missing" in done.stderr
    assert client.get("/api/v1/audit/verify?expect=nonsense").status_code == 400
    bad = _cli_verify(settings, "--expect", "nonsense")
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr


def test_a_forged_checkpoint_is_reported(client: TestClient, settings: Settings) -> None:
    _fill(client, 3)
    [checkpoint] = (settings.home / "snapshots" / CHECKPOINTS).glob("*.json")
    forged = json.loads(checkpoint.read_text())
    forged["seq"] = 2
    checkpoint.write_text(json.dumps(forged))
    result = _verify(client)
    assert result["ok"] is False
    assert "not signed" in result["reason"]


def test_refused_anonymous_requests_cannot_flood_the_trail(client: TestClient) -> None:
    """1,000 unauthenticated POSTs with long, attacker-chosen paths (finding 7)."""
    anonymous = TestClient(client.app)
    limit = client.app.state.services.settings.audit_anonymous_per_minute  # type: ignore[attr-defined]
    for n in range(1000):
        # Up to 60 KB of attacker-chosen text in the path.
        path = f"/api/v1/nope{n}/" + "jane.doe@example.com-" * (3000 if n % 100 == 0 else 30)
        assert anonymous.post(path).status_code == 401
    client.app.state.services.audit.flush()  # type: ignore[attr-defined]
    entries = _entries(client, actor="anonymous", limit="1000")
    assert len(entries) == limit + 1
    counted = [e for e in entries if e["count"] > 1]
    assert [e["count"] for e in counted] == [1000 - limit]
    assert all(e["target"] is None and len(e["action"]) < 100 for e in entries)
    assert "jane.doe" not in client.get("/api/v1/audit/log?limit=1000").text
    assert _verify(client)["ok"]


def test_a_server_error_is_problem_json_with_a_request_id_and_audited(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(self: object) -> dict[str, Any]:
        raise RuntimeError("boom: jane.doe@example.com")

    monkeypatch.setattr(Contract, "describe", explode)
    failed = client.get("/api/v1/contracts", headers={"X-Request-ID": "req-500"})
    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/problem+json"
    assert failed.headers["x-request-id"] == "req-500"
    assert failed.json()["type"].endswith("/internal-error")
    assert "jane.doe" not in failed.text
    assert "jane.doe" not in caplog.text
    [entry] = _entries(client, action="GET /api/v1/contracts")
    assert (entry["outcome"], entry["request_id"]) == (500, "req-500")
