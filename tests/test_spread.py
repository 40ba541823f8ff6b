"""One upload spread over workers (``gateway.spread``): the coordinator validates the parts in
order and hands each to whichever worker takes it for redaction; the version, its reports and
its data are exactly those of the upload ingested whole by one process, and a refused or
failed spread run leaves nothing behind.

Here the workers are this process (its thread pool on SQLite; on PostgreSQL the coordinator
takes every part itself, nobody else reading the queue). ``test_async_ingest`` runs two
``datagate worker`` processes on PostgreSQL and S3 and kills one mid-part."""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient
from polars.testing import assert_frame_equal
from sqlmodel import Session, select

from gateway.app import create_app
from gateway.db import unit_of_work
from gateway.jobs import queue_state, run_ingest
from gateway.models import DatasetVersion, GatewayInstance, IngestPart, IngestRun, utcnow
from gateway.recovery import Recovery
from gateway.samples import customers
from gateway.services import Services
from gateway.spread import (
    PartFailed,
    Spread,
    claim_part,
    input_key,
    run_part_job,
    run_parts,
    work_on_part,
)
from gateway.staging import STAGING_PREFIX, discard_staged
from gateway.uploads import UploadSpool
from privacy import PiiEngine
from tests.conftest import CONTRACTS, admin_client, csv_bytes, settings_for

ROWS = 300
PART = 37  # nine parts, the last one short
ASYNC = {"Content-Type": "text/csv", "Prefer": "respond-async"}

DROPPING = """
import pandera.polars as pa


class Dropping(pa.DataFrameModel):
    id: int = pa.Field(unique=True)
    score: int = pa.Field(ge=0)
    comment: str = pa.Field(nullable=True, metadata={"pii": "scan"})

    class Config:
        name = "dropping"
        drop_invalid_rows = True
        metadata = {"version": "1.0.0"}
"""


@pytest.fixture
def contracts(tmp_path: Path) -> Path:
    folder = tmp_path / "contracts"
    shutil.copytree(CONTRACTS, folder)
    (folder / "dropping.py").write_text(DROPPING)
    return folder


@pytest.fixture
def pair(
    tmp_path: Path, database_url: str, contracts: Path, pii_engine: PiiEngine
) -> Iterator[tuple[TestClient, TestClient]]:
    """One gateway ingests uploads whole, synchronously; the other queues them and spreads
    their parts of 37 rows over its workers."""
    whole = settings_for(
        tmp_path / "whole", contracts, database_url=f"sqlite:///{tmp_path / 'whole.db'}"
    )
    spread = settings_for(
        tmp_path / "spread",
        contracts,
        database_url=database_url,
        ingest_chunk_rows=PART,
        ingest_spread="always",
        local_ingest_workers=2,
    )
    with (
        admin_client(create_app(whole, pii_engine=pii_engine)) as one,
        admin_client(create_app(spread, pii_engine=pii_engine)) as many,
    ):
        yield one, many


def _services(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def _queued(client: TestClient, dataset: str, body: bytes) -> dict[str, Any]:
    """Upload asynchronously and follow the run to its outcome."""
    answer = client.post(f"/api/v1/datasets/{dataset}/uploads", content=body, headers=ASYNC)
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    services = _services(client)
    if services.engine.dialect.name == "postgresql":
        run_ingest(services, run_id)  # what a worker would do; it takes every part itself
    run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}", params={"wait": 60}).json()
    assert run["status"] not in ("queued", "running"), run
    return run


def _whole(client: TestClient, dataset: str, body: bytes) -> dict[str, Any]:
    answer = client.post(
        f"/api/v1/datasets/{dataset}/uploads", content=body, headers={"Content-Type": "text/csv"}
    )
    run: dict[str, Any] = client.get(f"/api/v1/runs/{answer.json()['run_id']}").json()
    return run


def _stored(client: TestClient, dataset: str, number: int) -> pl.DataFrame:
    url = f"/api/v1/datasets/{dataset}/versions/{number}/data?format=parquet"
    response = client.get(url)
    assert response.status_code == 200, response.text
    return pl.read_parquet(io.BytesIO(response.content))


def _left_behind(client: TestClient, dataset: str) -> list[str]:
    """Objects in the store that no version accounts for: staged parts and uploads."""
    store = _services(client).snapshots
    deadline = time.monotonic() + 10  # the staged upload goes just after the outcome
    while store.keys(f"{STAGING_PREFIX}/") and time.monotonic() < deadline:
        time.sleep(0.05)
    folders = {key.rsplit("/", 1)[0] for key in _storage_keys(client)}
    return [
        key
        for key in store.keys(f"{STAGING_PREFIX}/") + store.keys(f"{dataset}/")
        if key.rsplit("/", 1)[0] not in folders
    ]


def _storage_keys(client: TestClient) -> list[str]:
    with Session(_services(client).engine) as session:
        return list(session.exec(select(DatasetVersion.storage_key)).all())


def _same(whole: dict[str, Any], spread: dict[str, Any]) -> None:
    assert spread["status"] == whole["status"], spread
    assert spread["validation_report"] == whole["validation_report"]
    if whole["pii_report"] is None:
        assert spread["pii_report"] is None
        return
    mine = {c["column"]: c for c in spread["pii_report"]["columns"]}
    for column in whole["pii_report"]["columns"]:
        got = mine[column["column"]]
        assert (got["action"], got["values_redacted"], got.get("spans")) == (
            column["action"],
            column["values_redacted"],
            column.get("spans"),
        ), column["column"]


def test_a_spread_upload_is_stored_as_it_is_whole(pair: tuple[TestClient, TestClient]) -> None:
    one, many = pair
    body = csv_bytes(customers(ROWS, seed=3, notes=True))
    whole, spread = _whole(one, "customers", body), _queued(many, "customers", body)
    _same(whole, spread)
    assert spread["status"] == "accepted"
    assert_frame_equal(_stored(many, "customers", 1), _stored(one, "customers", 1))
    for download in ("csv", "ndjson"):  # streamed from the parts the workers stored
        url = f"/api/v1/datasets/customers/versions/1/data?format={download}"
        assert many.get(url).content == one.get(url).content
    # Nine parts, each taken once by a worker of this gateway, and recorded on the run.
    instance = _services(many).instance.id
    assert [(p["index"], p["status"], p["worker"], p["taken"]) for p in spread["parts"]] == [
        (i, "done", instance, 1) for i in range(9)
    ]
    assert sum(p["rows"] for p in spread["parts"]) == ROWS
    assert spread["progress"]["parts_done"] == 9
    assert _storage_keys(many) == [f"customers/parts-{spread['id']}/manifest.json"]
    assert _left_behind(many, "customers") == []
    # The same data again (whole, here) matches the spread version: the same content hash.
    again = many.post(
        "/api/v1/datasets/customers/uploads", content=body, headers={"Content-Type": "text/csv"}
    )
    assert again.status_code == 200, again.text
    assert again.json()["version"]["version"] == 1


def test_a_refused_spread_upload_leaves_nothing(pair: tuple[TestClient, TestClient]) -> None:
    one, many = pair
    frame = customers(ROWS, seed=5, notes=True)
    ids = frame["customer_id"].to_list()
    ids[250] = ids[3]  # a duplicate seven parts apart: found only once every part is read
    body = csv_bytes(frame.with_columns(pl.Series("customer_id", ids)))
    whole, spread = _whole(one, "customers", body), _queued(many, "customers", body)
    _same(whole, spread)
    assert spread["status"] == "rejected"
    assert {p["status"] for p in spread["parts"]} <= {"cancelled", "done"}
    assert _left_behind(many, "customers") == []
    # A spread upload that matches an existing version leaves no second copy either.
    good = csv_bytes(customers(ROWS, seed=6, notes=True))
    assert _queued(many, "customers", good)["created_version"] is True
    matched = _queued(many, "customers", good)
    assert (matched["status"], matched["created_version"], matched["version"]) == (
        "accepted",
        False,
        1,
    )
    assert _left_behind(many, "customers") == []


def test_rows_dropped_by_whole_column_checks_leave_the_spread_parts(
    pair: tuple[TestClient, TestClient],
) -> None:
    one, many = pair
    ids = list(range(ROWS))
    ids[280] = ids[10]  # both rows dropped (drop_invalid_rows), in parts 0 and 7
    scores = [1] * ROWS
    scores[100] = -1  # dropped by a row check
    comments = [f"called Ann Lee about order {i}" if i % 3 == 0 else None for i in range(ROWS)]
    body = csv_bytes(pl.DataFrame({"id": ids, "score": scores, "comment": comments}))
    whole, spread = _whole(one, "dropping", body), _queued(many, "dropping", body)
    _same(whole, spread)
    assert spread["status"] == "accepted"
    stored = _stored(many, "dropping", 1)
    assert_frame_equal(stored, _stored(one, "dropping", 1))
    assert stored.height == ROWS - 3
    assert not any("Ann Lee" in (c or "") for c in stored["comment"].to_list())
    assert _left_behind(many, "dropping") == []


def test_parts_are_taken_once_and_those_of_dead_workers_are_queued_again(
    pair: tuple[TestClient, TestClient],
) -> None:
    """A part is taken by one worker only; a worker that finishes a part no longer its own
    (its run ended, or recovery gave the part to another) removes what it stored; the part of
    a worker that died is queued again while its run runs, and cancelled once it ended."""
    _, many = pair
    services = _services(many)
    contract = services.catalog.require("customers")
    body = csv_bytes(customers(ROWS, seed=7, notes=True))
    run_id = _queued(many, "customers", body)["id"]
    assert run_part_job(services, run_id) == 0  # the run is over: nothing left to take
    # Stage one part again, as a coordinator would, for a run that is still running; the
    # part jobs are only counted, so this test is every worker.
    with _coordinating(services, run_id, 9) as (spread, counted):
        spread.hand_off(customers(20, seed=8, notes=True))
        assert queue_state(services.engine)[0] == 1  # a part waits: the queue's depth says so
        # The store holds the part sealed, and nothing else of it: what a worker is told to
        # do with it (contract, classification) is on its row, where the store cannot edit it.
        assert services.snapshots.keys(f"{STAGING_PREFIX}/{run_id}/") == [input_key(run_id, 9, 0)]
        # A worker whose contract is not the coordinator's leaves the part to it.
        services.catalog.contracts["customers"] = replace(contract, fingerprint="0" * 64)
        try:
            assert run_part_job(services, run_id) == 0
        finally:
            services.catalog.contracts["customers"] = contract
        part = claim_part(services, run_id)
        assert part is not None
        assert (part.attempt, part.instance) == (9, services.instance.id)
        assert claim_part(services, run_id) is None  # nobody takes a part twice
        # Meanwhile it was given to another worker: this one's work is dropped.
        _set_part(services, part, "running", "someone-else")
        before = set(services.snapshots.keys("customers/"))
        work_on_part(services, part, contract, None)
        assert set(services.snapshots.keys("customers/")) == before
        # The other worker died with it: recovery queues the part again for the live run.
        dead = GatewayInstance(
            id="someone-else",
            host="elsewhere",
            pid=1,
            started_at=utcnow() - timedelta(hours=1),
            heartbeat_at=utcnow() - timedelta(hours=1),
        )
        with unit_of_work(services.engine) as session:
            session.add(dead)
        report = Recovery(services).run(orphans=False)
        assert report.requeued_parts == [f"{run_id}/0"]
        assert counted.parts == [run_id, run_id]  # with a part job, as at first
        again = claim_part(services, run_id)
        assert again is not None
        work_on_part(services, again, contract, None)
        done = _part(services, part)
        assert (done.status, done.taken, done.output_key is not None) == ("done", 3, True)
        assert services.snapshots.keys(input_key(run_id, 9, 0)) == []  # consumed
    assert _part(services, done).status == "cancelled"
    assert _left_behind(many, "customers") == []


@contextmanager
def _coordinating(
    services: Services, run_id: str, attempt: int
) -> Iterator[tuple[Spread, _Counted]]:
    """Coordinate ``run_id`` (an ended run, set running again) as its ``attempt``: the test
    is every worker, the part jobs queued are only counted. Afterwards the run is over again
    and what its parts left is removed, as the job removes it."""
    queue, counted = services.queue, _Counted()
    services.queue = counted
    spool = UploadSpool(services.work_dir)
    contract = services.catalog.require("customers")
    spread = Spread(services, run_id, attempt, contract, spool=spool)
    _set_run(services, run_id, "running")
    try:
        yield spread, counted
    finally:
        services.queue = queue
        _set_run(services, run_id, "accepted")
        spread.close(recorded=False)
        discard_staged(services, run_id)
        spool.close()


class _Counted:
    """A queue whose part jobs nobody runs."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def enqueue(self, session: Session, run_id: str) -> None:
        raise AssertionError("no run is queued here")

    def requeue(self, session: Session, run_id: str) -> None:
        raise AssertionError("no run is queued here")

    def enqueue_part(self, session: Session, run_id: str) -> None:
        self.parts.append(run_id)

    def enqueue_revalidation(self, session: Session, revalidation_id: str) -> None:
        return None

    def close(self) -> None:
        return None


def test_a_sealed_part_moved_to_another_place_does_not_open(
    pair: tuple[TestClient, TestClient],
) -> None:
    """Each part is sealed under a key of its own: whoever can write to the store cannot put
    one part in another's place (rows past the checks of the part they replace)."""
    _, many = pair
    services = _services(many)
    contract = services.catalog.require("customers")
    run_id = _queued(many, "customers", csv_bytes(customers(ROWS, seed=9, notes=True)))["id"]
    with _coordinating(services, run_id, 5) as (spread, _):
        spread.hand_off(customers(20, seed=10, notes=True))
        spread.hand_off(customers(20, seed=11, notes=True))
        first = services.snapshots.local_path(input_key(run_id, 5, 0)).read_bytes()
        services.snapshots.put_bytes(input_key(run_id, 5, 1), first)
        for _ in range(2):
            part = claim_part(services, run_id)
            assert part is not None
            work_on_part(services, part, contract, None)
        parts = [_part(services, p) for p in run_parts(services, run_id)]
        assert [(p.status, p.error) for p in parts] == [("done", None), ("failed", "SealBroken")]
        assert parts[1].output_key is None
        # The coordinator stops there, and as well at a part a later attempt cancelled.
        with pytest.raises(PartFailed, match="part 1 failed in a worker: SealBroken"):
            spread.gather(lambda done: None)
        _set_part(services, parts[1], "cancelled", None)
        with pytest.raises(PartFailed, match="part 1 cancelled"):
            spread.gather(lambda done: None)
    assert _left_behind(many, "customers") == []


def test_a_part_held_too_long_by_a_live_worker_is_taken_back(
    pair: tuple[TestClient, TestClient],
) -> None:
    """Recovery frees the parts of workers that died; a worker alive but hung holds its part
    until DATAGATE_INGEST_PART_TIMEOUT_SECONDS, then the coordinator queues it again."""
    _, many = pair
    services = _services(many)
    run_id = _queued(many, "customers", csv_bytes(customers(ROWS, seed=12, notes=True)))["id"]
    settings = services.settings
    services.settings = settings.model_copy(update={"ingest_part_timeout_seconds": 60})
    try:
        with _coordinating(services, run_id, 3) as (spread, counted):
            spread.hand_off(customers(20, seed=13, notes=True))
            held = claim_part(services, run_id)
            assert held is not None
            old = utcnow() - timedelta(minutes=2)
            _set_part(services, held, "running", "hung-worker", old)
            _, staged = spread.gather(lambda done: None)
            assert len(staged) == 1
            done = _part(services, held)
            assert (done.status, done.instance, done.taken) == ("done", services.instance.id, 2)
            assert counted.parts == [run_id, run_id]  # queued again, with a part job
    finally:
        services.settings = settings
    assert _left_behind(many, "customers") == []


def _part(services: Services, part: IngestPart) -> IngestPart:
    with Session(services.engine) as session:
        row = session.get(IngestPart, (part.run_id, part.attempt, part.index))
        assert row is not None
        return row


def _set_part(
    services: Services,
    part: IngestPart,
    status: str,
    instance: str | None,
    updated_at: datetime | None = None,
) -> None:
    with unit_of_work(services.engine) as session:
        row = session.get(IngestPart, (part.run_id, part.attempt, part.index))
        assert row is not None
        row.status, row.instance = status, instance
        row.updated_at = updated_at or utcnow()
        session.add(row)


def _set_run(services: Services, run_id: str, status: str) -> None:
    with unit_of_work(services.engine) as session:
        run = session.get(IngestRun, run_id)
        assert run is not None
        run.status = status
        session.add(run)
