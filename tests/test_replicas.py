"""Two `datagate serve` replicas on different ports share one PostgreSQL and one S3 bucket."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from bench.generate import customers
from gateway.db import make_engine
from gateway.models import IngestRun, LineageEvent
from tests.conftest import ADMIN_HEADERS, csv_bytes, s3_environment
from tests.serve import ServeProcess

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

UPLOADS = 24


def test_two_replicas_number_versions_once_and_store_each_event_once(
    tmp_path: Path, fresh_postgres_url: str, s3_url: str, s3_endpoint: str
) -> None:
    env = {**s3_environment(s3_endpoint), "DATAGATE_STORAGE_URL": s3_url}
    replicas = [
        ServeProcess(tmp_path / f"home-{n}", fresh_postgres_url, tmp_path / f"r{n}.log", env=env)
        for n in (1, 2)
    ]
    for replica in replicas:
        replica.wait_ready()
    bodies = [csv_bytes(customers(150, seed=300 + i)) for i in range(UPLOADS)]

    def upload(i: int) -> httpx.Response:
        return httpx.post(
            f"{replicas[i % 2].base}/api/v1/datasets/customers/uploads",
            content=bodies[i],
            headers={"Content-Type": "text/csv", **ADMIN_HEADERS},
            timeout=120,
        )

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(upload, range(UPLOADS)))
        assert [r.status_code for r in responses] == [201] * UPLOADS, [r.text for r in responses]
        listed = [
            httpx.get(
                f"{replica.base}/api/v1/datasets/customers/versions",
                headers=ADMIN_HEADERS,
                timeout=30,
            ).json()["versions"]
            for replica in replicas
        ]
        verified = httpx.get(
            f"{replicas[1].base}/api/v1/audit/verify", headers=ADMIN_HEADERS, timeout=30
        ).json()
    finally:
        for replica in replicas:
            replica.stop()

    # Both replicas see the same unique, gap-free numbering.
    assert listed[0] == listed[1]
    assert [v["version"] for v in listed[0]] == list(range(1, UPLOADS + 1))
    assert sorted(r.json()["version"]["version"] for r in responses) == list(range(1, UPLOADS + 1))
    assert verified["ok"] is True
    assert verified["checked"] >= UPLOADS

    engine = make_engine(fresh_postgres_url)
    try:
        with Session(engine) as session:
            runs = session.exec(select(IngestRun)).all()
            events = session.exec(select(LineageEvent.run_id, LineageEvent.event_type)).all()
    finally:
        engine.dispose()
    run_ids = {r.json()["run_id"] for r in responses}
    assert {r.id for r in runs} == run_ids
    assert {r.status for r in runs} == {"accepted"}  # no replica "recovered" the other's runs
    assert Counter(events) == {(run, kind): 1 for run in run_ids for kind in ("START", "COMPLETE")}
    objects = httpx.get(f"{s3_endpoint}/{s3_url.split('/')[2]}?list-type=2", timeout=10).text
    assert objects.count("<Key>snapshots/customers/") == UPLOADS
