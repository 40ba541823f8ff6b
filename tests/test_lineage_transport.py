"""Lineage delivery through the real openlineage-python client, configured its standard way."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from gateway.app import create_app
from gateway.models import LineageEvent
from gateway.settings import Settings
from lineage import configured_client, describe_transport
from privacy import PiiEngine
from tests.conftest import CONTRACTS, TEST_ADMIN_KEY, TEST_PII_KEY, admin_client, csv_bytes
from tests.openlineage_spec import validate_event


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, object]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        type(self).received.append(
            {"path": self.path, "event": json.loads(self.rfile.read(length))}
        )
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _all_delivered(engine: Engine, expected: int = 2) -> bool:
    with Session(engine) as session:
        rows = session.exec(select(LineageEvent)).all()
    return len(rows) == expected and all(row.delivered_at is not None for row in rows)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A real HTTP server on loopback that records every POSTed event."""
    received: list[dict[str, object]] = []

    class Receiver(_Receiver):
        pass

    Receiver.received = received
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_unconfigured_client_means_events_are_only_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert configured_client({}) is None
    assert describe_transport(None).startswith("none")


@pytest.mark.parametrize("style", ["OPENLINEAGE_URL", "OPENLINEAGE__TRANSPORT"])
def test_configured_transport_delivers_each_event_once(
    settings: Settings,
    customers_frame: pl.DataFrame,
    receiver: tuple[str, list[dict[str, object]]],
    monkeypatch: pytest.MonkeyPatch,
    style: str,
    pii_engine: PiiEngine,
) -> None:
    url, received = receiver
    if style == "OPENLINEAGE_URL":
        monkeypatch.setenv("OPENLINEAGE_URL", url)
    else:
        monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "http")
        monkeypatch.setenv("OPENLINEAGE__TRANSPORT__URL", url)
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        assert client.get("/readyz").json()["checks"]["lineage"]["transport"] == "HttpTransport"
        response = client.post(
            "/api/v1/datasets/customers/uploads",
            content=csv_bytes(customers_frame),
            headers={"Content-Type": "text/csv"},
        )
        assert response.status_code == 201
        run_id = response.json()["run_id"]
        engine = client.app.state.services.engine  # type: ignore[attr-defined]
        deadline = time.monotonic() + 20
        while not _all_delivered(engine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _all_delivered(engine)
    events = [r["event"] for r in received]
    assert [(e["eventType"], e["run"]["runId"]) for e in events] == [  # type: ignore[index]
        ("START", run_id),
        ("COMPLETE", run_id),
    ]
    assert {r["path"] for r in received} == {"/api/v1/lineage"}
    for event in events:
        validate_event(event)  # type: ignore[arg-type]


def test_unreachable_backend_neither_fails_nor_slows_the_upload(
    settings: Settings,
    customers_frame: pl.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    pii_engine: PiiEngine,
) -> None:
    monkeypatch.setenv("OPENLINEAGE_URL", "http://127.0.0.1:9")  # discard port: refused
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        started = time.monotonic()
        response = client.post(
            "/api/v1/datasets/customers/uploads",
            content=csv_bytes(customers_frame),
            headers={"Content-Type": "text/csv"},
        )
        elapsed = time.monotonic() - started
        with Session(client.app.state.services.engine) as session:  # type: ignore[attr-defined]
            rows = session.exec(select(LineageEvent)).all()
        metrics = client.get("/metrics").text
    assert response.status_code == 201
    assert elapsed < 5
    assert [r.event_type for r in rows] == ["START", "COMPLETE"]
    assert all(row.delivered_at is None for row in rows)
    assert "datagate_lineage_outbox_pending 2.0" in metrics


def _delivery_failures(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("datagate_lineage_delivery_failures_total "):
            return float(line.split()[1])
    raise AssertionError("no datagate_lineage_delivery_failures_total in /metrics")


def test_failing_backend_gets_every_event_exactly_once_after_it_recovers(
    tmp_path: Path,
    database_url: str,
    pii_engine: PiiEngine,
    customers_frame: pl.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[dict[str, object]] = []
    refusals = {"left": 5}

    class Flaky(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if refusals["left"] > 0:
                refusals["left"] -= 1
                self.send_response(503)
            else:
                received.append(json.loads(body))
                self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "http")
    monkeypatch.setenv(
        "OPENLINEAGE__TRANSPORT__URL", f"http://127.0.0.1:{server.server_address[1]}"
    )
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__RETRY", '{"total": 0}')
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        contracts_dir=CONTRACTS,
        pii_key=TEST_PII_KEY,
        admin_key=TEST_ADMIN_KEY,
        lineage_retry_seconds=0.1,
        lineage_retry_max_seconds=0.5,
    )
    try:
        with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
            failures_before = _delivery_failures(client.get("/metrics").text)
            runs = []
            for seed in (1, 2, 3):
                frame = customers_frame.with_columns(pl.col("orders_count") + seed)
                response = client.post(
                    "/api/v1/datasets/customers/uploads",
                    content=csv_bytes(frame),
                    headers={"Content-Type": "text/csv"},
                )
                assert response.status_code == 201
                runs.append(response.json()["run_id"])
            engine = client.app.state.services.engine  # type: ignore[attr-defined]
            deadline = time.monotonic() + 30
            while not _all_delivered(engine, 6) and time.monotonic() < deadline:
                time.sleep(0.05)
            backlog = client.get("/readyz").json()["checks"]["lineage"]
            metrics = client.get("/metrics").text
    finally:
        server.shutdown()
        server.server_close()
    assert refusals["left"] == 0
    assert backlog["pending"] == 0
    assert backlog["delivery_failures"] == 5
    assert "datagate_lineage_outbox_pending 0.0" in metrics
    # The counter is per process, and earlier tests' delivery threads may still be retrying an
    # unreachable backend: compare with the value before this test, at least these five.
    assert _delivery_failures(metrics) - failures_before >= 5
    delivered = [(e["run"]["runId"], e["eventType"]) for e in received]  # type: ignore[index]
    assert sorted(delivered) == sorted(
        (run, state) for run in runs for state in ("START", "COMPLETE")
    )
    for run in runs:
        assert delivered.index((run, "START")) < delivered.index((run, "COMPLETE"))
