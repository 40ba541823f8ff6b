"""Asynchronous uploads: ``Prefer: respond-async`` (or a body over ``DATAGATE_SYNC_MAX_BYTES``)
is answered 202 with the run to follow; the same pipeline then runs in a worker — this process's
threads on SQLite, ``datagate worker`` processes on the PostgreSQL queue (procrastinate)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, select

from gateway import sealed, staging
from gateway.app import create_app
from gateway.client import DatagateClient, DatagateError
from gateway.jobs import INGEST_TASK, run_ingest, start_queued_run
from gateway.models import IngestRun, LineageEvent
from gateway.runs import start_run
from gateway.samples import customers
from gateway.services import Services
from gateway.settings import Settings
from gateway.snapshots import open_store
from gateway.staging import STAGING_PREFIX
from gateway.uploads import ReceivedUpload
from privacy import PiiEngine
from tests.conftest import CONTRACTS, TEST_ADMIN_KEY, TEST_PII_KEY, admin_client, csv_bytes
from tests.serve import ServeProcess

ASYNC = {"Content-Type": "text/csv", "Prefer": "respond-async"}
DATAGATE = str(Path(sys.executable).parent / "datagate")


def _services(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def _staged(services: Services) -> list[str]:
    return services.snapshots.keys(f"{STAGING_PREFIX}/")


def _cleaned_up(services: Services) -> bool:
    """Whether the staged uploads are gone: a worker removes them just after it recorded the
    run's outcome, so a moment after the outcome is visible."""
    deadline = time.monotonic() + 10
    while _staged(services) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _staged(services) == []


def _work(client: TestClient, run_id: str) -> None:
    """On PostgreSQL nobody in this process takes jobs: do what a worker would."""
    services = _services(client)
    if services.engine.dialect.name == "postgresql":
        run_ingest(services, run_id)


def test_respond_async_is_answered_202_and_the_run_reaches_its_outcome(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    body = csv_bytes(customers_frame)
    queued = client.post("/api/v1/datasets/customers/uploads", content=body, headers=ASYNC)
    assert queued.status_code == 202, queued.text
    run_id = queued.json()["run_id"]
    assert queued.json() == {
        "run_id": run_id,
        "status": "queued",
        "links": {"run": f"/api/v1/runs/{run_id}"},
    }
    assert queued.headers["location"] == f"/api/v1/runs/{run_id}"
    assert queued.headers["retry-after"] == "1"
    assert queued.headers["preference-applied"] == "respond-async"
    _work(client, run_id)
    run = client.get(queued.headers["location"], params={"wait": 30}).json()
    assert run["status"] == "accepted", run
    assert run["version"] == 1
    assert run["created_version"] is True
    assert run["stage"] == "record"
    assert run["progress"] == {
        "stages_done": 5,
        "stages_total": 5,
        "rows_done": customers_frame.height,
        "rows_total": customers_frame.height,
        "parts_done": 1,
    }
    assert set(run["timings"]) >= {"parse", "validate", "redact", "version", "record"}
    # No free text in it (its notes are empty): one worker did it all, nothing was spread.
    assert run["parts"] == []
    assert _cleaned_up(_services(client))  # the raw upload is gone once ingested
    # START (recorded with the 202) and COMPLETE (by the worker) name the upload's request.
    with Session(_services(client).engine) as session:
        events = session.exec(select(LineageEvent).where(LineageEvent.run_id == run_id)).all()
    assert sorted(e.event_type or "" for e in events) == ["COMPLETE", "START"]
    for stored in events:
        facet = stored.payload["run"]["facets"]["datagate_request"]
        assert facet["requestId"] == queued.headers["x-request-id"], stored.event_type
    # The same data, synchronously: matched to the version the queued run stored.
    again = client.post(
        "/api/v1/datasets/customers/uploads", content=body, headers={"Content-Type": "text/csv"}
    )
    assert again.status_code == 200, again.text
    assert again.json()["version"]["version"] == 1
    # A synchronous run was never followed: no progress to show.
    assert client.get(f"/api/v1/runs/{again.json()['run_id']}").json()["progress"] is None


def test_an_unreadable_format_is_refused_before_anything_is_queued(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    refused = client.post(
        "/api/v1/datasets/customers/uploads",
        content=csv_bytes(customers_frame),
        headers={"Content-Type": "application/x-ann.lee@example.com", "Prefer": "respond-async"},
    )
    assert refused.status_code == 415, refused.text
    assert "ann.lee" not in refused.text  # the client's words, PII replaced
    assert _staged(_services(client)) == []
    with Session(_services(client).engine) as session:
        assert session.exec(select(IngestRun)).all() == []


def test_a_rejected_asynchronous_upload_has_its_report_on_the_run(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    bad = customers_frame.with_columns(pl.lit("ZZ").alias("country"))
    queued = client.post(
        "/api/v1/datasets/customers/uploads", content=csv_bytes(bad), headers=ASYNC
    )
    assert queued.status_code == 202, queued.text
    _work(client, queued.json()["run_id"])
    run = client.get(queued.headers["location"], params={"wait": 30}).json()
    assert run["status"] == "rejected"
    assert run["error"]["type"].endswith("/contract-violation")
    (failure,) = run["validation_report"]["failures"]
    assert failure["column"] == "country"
    assert run["version"] is None
    assert _cleaned_up(_services(client))


def test_a_body_bound_for_a_worker_is_sealed_as_it_arrives(
    client: TestClient, customers_frame: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither written in the clear on the way in nor read again to be sealed: what is staged is
    # the file received, sealed under the run's key.
    services = _services(client)
    staged: list[bytes] = []
    put_file = services.snapshots.put_file

    def watched(key: str, path: Path) -> None:
        staged.append(path.read_bytes())
        put_file(key, path)

    def sealed_again(*args: object) -> None:
        raise AssertionError("the upload was sealed after it was received")

    monkeypatch.setattr(services.snapshots, "put_file", watched)
    monkeypatch.setattr(staging, "seal", sealed_again)
    queued = client.post(
        "/api/v1/datasets/customers/uploads", content=csv_bytes(customers_frame), headers=ASYNC
    )
    assert queued.status_code == 202, queued.text
    (data,) = staged
    assert data.startswith(sealed.MAGIC)
    assert customers_frame["email"][0].encode() not in data
    run_id = queued.json()["run_id"]
    _work(client, run_id)
    run = client.get(queued.headers["location"], params={"wait": 30}).json()
    assert (run["status"], run["version"]) == ("accepted", 1)


def test_bodies_over_the_synchronous_limit_always_go_asynchronously(
    settings: Settings, pii_engine: PiiEngine, customers_frame: pl.DataFrame
) -> None:
    small = settings.model_copy(update={"sync_max_bytes": 1_000})
    with admin_client(create_app(small, pii_engine=pii_engine)) as client:
        answer = client.post(
            "/api/v1/datasets/customers/uploads",
            content=csv_bytes(customers_frame),
            headers={"Content-Type": "text/csv"},
        )
        assert answer.status_code == 202, answer.text
        assert "preference-applied" not in answer.headers  # nobody asked; the size decided
        _work(client, answer.json()["run_id"])
        assert client.get(answer.headers["location"], params={"wait": 30}).json()["version"] == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL: the live test
def test_the_python_client_follows_a_queued_run_to_its_version_or_its_refusal(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    datagate = DatagateClient("http://testserver", http=client)  # type: ignore[arg-type]
    stages: list[str] = []
    stored = datagate.upload(
        csv_bytes(customers_frame), "customers", asynchronous=True, stage=stages.append
    )
    assert stored.created
    assert stored.version.version == 1
    assert stages  # told of the run's progress (at least its final stage)
    bad = customers_frame.with_columns(pl.lit(-1).alias("orders_count"))
    with pytest.raises(DatagateError) as refused:
        datagate.upload(csv_bytes(bad), "customers", asynchronous=True)
    assert refused.value.status == 422
    assert refused.value.report is not None
    assert refused.value.report["failures"][0]["column"] == "orders_count"


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_the_job_is_enqueued_in_the_transaction_that_records_the_run(
    client: TestClient,
) -> None:
    services = _services(client)
    contract = services.catalog.require("customers")
    assert services.queue is not None
    queue = services.queue

    def enqueue_then_fail(session: Session) -> None:
        queue.enqueue(session, "00000000-0000-7000-8000-000000000001")
        raise RuntimeError("the transaction fails after the job was enqueued")

    with pytest.raises(RuntimeError):
        start_run(
            services,
            contract,
            None,
            "tester",
            run_id="00000000-0000-7000-8000-000000000001",
            queued=enqueue_then_fail,
        )
    with Session(services.engine) as session:
        assert session.get(IngestRun, "00000000-0000-7000-8000-000000000001") is None
        assert session.execute(text("SELECT count(*) FROM procrastinate_jobs")).scalar() == 0
    raw = b"customer_id,email\n1,planted.person@example.org\n"
    queued = client.post("/api/v1/datasets/customers/uploads", content=raw, headers=ASYNC)
    assert queued.status_code == 202
    # The upload waits sealed: no raw value in the snapshot store, nor in the job's row.
    (staged,) = [k for k in _staged(services) if k.endswith("/upload")]
    assert b"planted.person" not in services.snapshots.local_path(staged).read_bytes()
    order = [k for k in _staged(services) if k.endswith("/order.json")]
    assert b"planted.person" not in services.snapshots.get_bytes(order[0])
    queue_check = client.get("/readyz").json()["checks"]["queue"]
    assert queue_check["queued"] == 1  # nobody takes jobs in this test
    assert queue_check["oldest_queued_seconds"] >= 0
    scraped = client.get("/metrics").text
    assert "datagate_ingest_queue_depth 1.0" in scraped
    assert "datagate_ingest_queue_oldest_seconds" in scraped
    with Session(services.engine) as session:
        jobs = session.execute(
            text("SELECT task_name, queue_name, args, status FROM procrastinate_jobs")
        ).all()
        run = session.get(IngestRun, queued.json()["run_id"])
    assert [(j.task_name, j.queue_name, j.args, j.status) for j in jobs] == [
        ("datagate.ingest", "ingest", {"run_id": queued.json()["run_id"]}, "todo")
    ]
    assert run is not None
    assert run.status == "queued"
    waiting = client.get(f"/api/v1/runs/{run.id}").json()
    assert waiting["progress"] == {
        "stages_done": 0,
        "stages_total": 5,
        "rows_done": None,
        "rows_total": None,
        "parts_done": None,
    }
    # Someone deleted the waiting upload: the run fails, it is not left queued for ever.
    services.snapshots.delete(staged)
    run_ingest(services, run.id)
    failed = client.get(f"/api/v1/runs/{run.id}").json()
    assert failed["status"] == "failed"
    assert failed["error"]["detail"] == "ingest failed in stage 'queue' (FileNotFoundError)"


def _worker(
    tmp_path: Path,
    name: str,
    database_url: str,
    log: Any,
    storage: str | None = None,
    concurrency: int = 2,
    **settings: str,
) -> subprocess.Popen[bytes]:
    """A `datagate worker` with a home of its own, as if on another machine; it shares only
    the database and the snapshot store (a folder here, a bucket in production)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAGATE_")}
    env.update(
        DATAGATE_HOME=str(tmp_path / name),
        DATAGATE_DATABASE_URL=database_url,
        DATAGATE_CONTRACTS_DIR=str(CONTRACTS),
        DATAGATE_PII_KEY=TEST_PII_KEY,
        DATAGATE_ADMIN_KEY=TEST_ADMIN_KEY,
        DATAGATE_STORAGE_URL=storage or str(tmp_path / "api" / "snapshots"),
        **settings,
    )
    return subprocess.Popen(
        [DATAGATE, "worker", "--concurrency", str(concurrency)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _cli(*args: str, server: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATAGATE_")}
    environment.update(DATAGATE_URL=server, DATAGATE_API_KEY=TEST_ADMIN_KEY, **env)
    return subprocess.run(
        [DATAGATE, *args], env=environment, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_workers_on_postgresql_take_the_queued_ingests(
    tmp_path: Path, database_url: str, customers_frame: pl.DataFrame
) -> None:
    """`datagate serve` only queues (every body is over its synchronous limit here); a
    `datagate worker` with a home of its own takes the jobs; the CLI follows them."""
    server = ServeProcess(
        tmp_path / "api",
        database_url,
        tmp_path / "api.log",
        env={"DATAGATE_SYNC_MAX_BYTES": "1000"},
    ).wait_ready()
    with (tmp_path / "worker.log").open("w") as log:
        worker = _worker(tmp_path, "worker", database_url, log)
        try:
            data = tmp_path / "customers.csv"
            data.write_bytes(csv_bytes(customers_frame))
            queued = _cli("upload", str(data), "-d", "customers", "--no-wait", server=server.base)
            assert queued.returncode == 0, queued.stderr
            status, _, run_id = queued.stdout.strip().partition(": run ")
            assert status == "queued"
            shown = _cli("runs", "show", run_id, "--wait", "60", "--json", server=server.base)
            assert shown.returncode == 0, shown.stderr
            run: dict[str, Any] = json.loads(shown.stdout)
            worker_log = (tmp_path / "worker.log").read_text()
            assert run["status"] == "accepted", (run, worker_log)
            assert run["version"] == 1
            # `datagate upload` follows an ingest the gateway queued to its outcome.
            bad = tmp_path / "bad.csv"
            bad.write_bytes(csv_bytes(customers_frame.with_columns(pl.lit("ZZ").alias("country"))))
            rejected = _cli("upload", str(bad), "-d", "customers", server=server.base)
            assert rejected.returncode == 1, rejected.stderr
            assert "422 Contract violation" in rejected.stderr
            assert rejected.stdout.splitlines()[1].startswith("country\t")
            again = _cli("upload", str(data), "-d", "customers", server=server.base)
            assert again.returncode == 0, again.stderr
            assert again.stdout.startswith("matched"), again.stdout
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            server.stop()


def _job_statuses(database_url: str, run_id: str) -> list[str]:
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT status FROM procrastinate_jobs "
                    "WHERE args->>'run_id' = :run AND task_name = :task ORDER BY id"
                ),
                {"run": run_id, "task": INGEST_TASK},
            ).all()
    finally:
        engine.dispose()
    return [str(row.status) for row in rows]


class _Nobody:
    """A queue no worker reads: the run stays queued, as when a gateway stops first."""

    def enqueue(self, session: Session, run_id: str) -> None:
        return None

    def requeue(self, session: Session, run_id: str) -> None:
        return None

    def enqueue_part(self, session: Session, run_id: str) -> None:
        return None

    def enqueue_revalidation(self, session: Session, revalidation_id: str) -> None:
        return None

    def close(self) -> None:
        return None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_embedded_gateway_resumes_queued_ingests_when_it_starts_again(
    settings: Settings, pii_engine: PiiEngine, customers_frame: pl.DataFrame, tmp_path: Path
) -> None:
    body = tmp_path / "customers.csv"
    body.write_bytes(csv_bytes(customers_frame))
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        services = _services(client)
        services.queue = _Nobody()
        job = start_queued_run(
            services,
            services.catalog.require("customers"),
            None,
            "tester",
            None,
            ReceivedUpload(body, body.stat().st_size, "customers.csv", "text/csv"),
            None,
        )
        assert client.get(f"/api/v1/runs/{job.run_id}").json()["status"] == "queued"
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        run = client.get(f"/api/v1/runs/{job.run_id}", params={"wait": 30}).json()
        assert run["status"] == "accepted", run
        assert run["version"] == 1
        assert _cleaned_up(_services(client))


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_worker_killed_mid_ingest_has_its_run_taken_by_another(
    tmp_path: Path, database_url: str, s3_url: str, customers_frame: pl.DataFrame
) -> None:
    """SIGKILL a worker while it validates: another worker's recovery queues the run again
    (its upload is still staged) and ingests it; exactly one version results. The API and the
    two workers share nothing but PostgreSQL and an S3 bucket (moto): separate homes and
    temporary folders, as if on three machines."""
    server = ServeProcess(
        tmp_path / "api",
        database_url,
        tmp_path / "api.log",
        env={"DATAGATE_SYNC_MAX_BYTES": "1000", "DATAGATE_STORAGE_URL": s3_url},
    ).wait_ready()
    log = (tmp_path / "workers.log").open("w")
    doomed = _worker(
        tmp_path, "doomed", database_url, log, s3_url, DATAGATE_DEBUG_HANG_AT="validate"
    )
    rescuer = None
    try:
        data = tmp_path / "customers.csv"
        data.write_bytes(csv_bytes(customers_frame))
        queued = _cli("upload", str(data), "-d", "customers", "--no-wait", server=server.base)
        run_id = queued.stdout.strip().rpartition(" ")[2]
        deadline = time.monotonic() + 60
        while _run(server.base, run_id)["status"] != "running":  # the doomed worker took it
            assert time.monotonic() < deadline, (tmp_path / "workers.log").read_text()
            time.sleep(0.2)
        time.sleep(1)  # now hanging at the validate checkpoint
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=30)
        rescuer = _worker(
            tmp_path, "rescuer", database_url, log, s3_url, DATAGATE_HEARTBEAT_SECONDS="0.5"
        )
        deadline = time.monotonic() + 90
        while (run := _run(server.base, run_id, wait=10))["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, (run, (tmp_path / "workers.log").read_text())
        assert run["status"] == "accepted", (run, (tmp_path / "workers.log").read_text())
        versions = httpx.get(
            f"{server.base}/api/v1/datasets/customers/versions",
            headers={"Authorization": f"Bearer {TEST_ADMIN_KEY}"},
            timeout=30,
        ).json()["versions"]
        assert [v["version"] for v in versions] == [1]
        jobs = _job_statuses(database_url, run_id)
        assert jobs == ["failed", "succeeded"], jobs  # the dead worker's job is not left "doing"
        # Whichever process noticed first (the rescuer or the API replica) queued it again.
        logs = (tmp_path / "workers.log").read_text() + server.log_text()
        assert "queued again for another worker" in logs
        bucket = open_store(s3_url, "test", tmp_path / "reader")
        deadline = time.monotonic() + 10  # removed just after the outcome was recorded
        while bucket.keys(f"{STAGING_PREFIX}/") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bucket.keys(f"{STAGING_PREFIX}/") == []  # the sealed upload is gone
    finally:
        for process in (doomed, rescuer):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
        log.close()
        server.stop()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_one_upload_is_spread_over_two_workers_and_survives_one_dying(
    tmp_path: Path, database_url: str, s3_url: str
) -> None:
    """Two `datagate worker` processes that share nothing but PostgreSQL and an S3 bucket
    (moto) both redact parts of one upload; the one that is not coordinating is SIGKILLed in
    the middle of a part (redacted, not stored); recovery queues that part again, the other
    worker does it, and exactly one version results, equal to the upload."""
    server = ServeProcess(
        tmp_path / "api",
        database_url,
        tmp_path / "api.log",
        env={"DATAGATE_SYNC_MAX_BYTES": "1000", "DATAGATE_STORAGE_URL": s3_url},
    ).wait_ready()
    log = (tmp_path / "workers.log").open("w")
    settings = {
        "DATAGATE_INGEST_CHUNK_ROWS": "150",
        "DATAGATE_HEARTBEAT_SECONDS": "0.5",
        # A worker's part jobs stop for good in their second part. The coordinator takes no
        # part jobs: it runs one job at a time, and is coordinating.
        "DATAGATE_DEBUG_HANG_AT": "part-job:2",
    }
    workers = [
        _worker(tmp_path, name, database_url, log, s3_url, concurrency=1, **settings)
        for name in ("first", "second")
    ]

    def worker_log() -> str:
        return (tmp_path / "workers.log").read_text()

    try:
        deadline = time.monotonic() + 90
        while len(_sql(database_url, "SELECT id FROM gateway_instance")) < 3:  # and the API's
            assert time.monotonic() < deadline, worker_log()
            time.sleep(0.2)
        frame = customers(1_500, seed=21, notes=True)  # ten parts
        data = tmp_path / "customers.csv"
        data.write_bytes(csv_bytes(frame))
        queued = _cli("upload", str(data), "-d", "customers", "--no-wait", server=server.base)
        assert queued.returncode == 0, queued.stderr
        run_id = queued.stdout.strip().rpartition(" ")[2]
        deadline = time.monotonic() + 120
        while True:  # the helper has done one part and is in the middle of its second
            run = _run(server.base, run_id)
            coordinator = _sql(
                database_url, "SELECT instance FROM ingest_run WHERE id = :id", id=run_id
            )[0][0]
            helped = [p for p in run["parts"] if p["worker"] not in (coordinator, None)]
            if sorted(p["status"] for p in helped) == ["done", "running"]:
                break
            assert run["status"] in ("queued", "running"), (run, worker_log())
            assert time.monotonic() < deadline, (run, worker_log())
            time.sleep(0.05)
        helper = helped[0]["worker"]
        pid = _sql(database_url, "SELECT pid FROM gateway_instance WHERE id = :id", id=helper)
        victim = next(w for w in workers if w.pid == pid[0][0])
        time.sleep(0.5)  # at its checkpoint now: the part redacted, not stored
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        deadline = time.monotonic() + 120
        while (run := _run(server.base, run_id, wait=10))["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, (run, worker_log())
        assert run["status"] == "accepted", (run, worker_log())
        parts = run["parts"]
        assert [p["status"] for p in parts] == ["done"] * 10, parts
        # Both did parts; the part the dead one held was taken again, by the other.
        assert {p["worker"] for p in parts} == {helper, coordinator}, parts
        again = [p for p in parts if p["taken"] == 2]
        assert [p["worker"] for p in again] == [coordinator], parts
        assert "queued again" in worker_log() + server.log_text()
        headers = {"Authorization": f"Bearer {TEST_ADMIN_KEY}"}
        versions = httpx.get(
            f"{server.base}/api/v1/datasets/customers/versions", headers=headers, timeout=30
        ).json()["versions"]
        assert [(v["version"], v["row_count"]) for v in versions] == [(1, 1_500)]
        data_url = f"{server.base}/api/v1/datasets/customers/versions/1/data?format=parquet"
        stored = pl.read_parquet(io.BytesIO(httpx.get(data_url, headers=headers).content))
        assert stored["customer_id"].to_list() == frame["customer_id"].to_list()
        bucket = open_store(s3_url, "test", tmp_path / "reader")
        deadline = time.monotonic() + 10  # removed just after the outcome was recorded
        while bucket.keys(f"{STAGING_PREFIX}/") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bucket.keys(f"{STAGING_PREFIX}/") == []  # no sealed part is left
        # The version's ten parts and its manifest: the dead worker stored nothing.
        assert len(bucket.keys("customers/")) == 11, bucket.keys("customers/")
    finally:
        for process in workers:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
        log.close()
        server.stop()


def _sql(database_url: str, query: str, **params: Any) -> list[Any]:
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(query), params).all())
    finally:
        engine.dispose()


def _run(base: str, run_id: str, wait: float = 0) -> dict[str, Any]:
    answer = httpx.get(
        f"{base}/api/v1/runs/{run_id}",
        params={"wait": wait},
        headers={"Authorization": f"Bearer {TEST_ADMIN_KEY}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    run: dict[str, Any] = answer.json()
    return run


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_an_api_replica_killed_after_its_202_does_not_lose_the_ingest(
    tmp_path: Path, database_url: str, customers_frame: pl.DataFrame
) -> None:
    """The 202 means the upload is durable: the job is in PostgreSQL and the sealed upload in
    the store, so SIGKILLing the replica that answered changes nothing for the worker."""
    server = ServeProcess(
        tmp_path / "api", database_url, tmp_path / "api.log", env={"DATAGATE_SYNC_MAX_BYTES": "1"}
    ).wait_ready()
    with (tmp_path / "worker.log").open("w") as log:
        worker = None
        try:
            queued = httpx.post(
                f"{server.base}/api/v1/datasets/customers/uploads",
                content=csv_bytes(customers_frame),
                headers={"Authorization": f"Bearer {TEST_ADMIN_KEY}", **ASYNC},
                timeout=60,
            )
            assert queued.status_code == 202, queued.text
            server.kill()  # SIGKILL, the moment after it answered
            worker = _worker(tmp_path, "worker", database_url, log)
            deadline = time.monotonic() + 90
            while _status(database_url, queued.json()["run_id"]) in ("queued", "running"):
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
                time.sleep(0.2)
            assert _status(database_url, queued.json()["run_id"]) == "accepted"
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=30)


def _status(database_url: str, run_id: str) -> str:
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            run = session.get(IngestRun, run_id)
            assert run is not None
            return run.status
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_embedded_gateway_runs_queued_ingests_in_its_own_process(
    tmp_path: Path, database_url: str
) -> None:
    """`datagate serve --workers 2` on SQLite, every body over its synchronous limit: no
    worker process exists, and `datagate upload` still follows each ingest to its version."""
    server = ServeProcess(
        tmp_path / "home",
        database_url,
        tmp_path / "serve.log",
        env={"DATAGATE_SYNC_MAX_BYTES": "1"},
        args=("--workers", "2"),
    ).wait_ready()
    try:
        for seed in (1, 2, 3):
            data = tmp_path / f"customers-{seed}.csv"
            data.write_bytes(csv_bytes(customers(40, seed=seed)))
            done = _cli("upload", str(data), "-d", "customers", server=server.base)
            assert done.returncode == 0, (done.stderr, server.log_text())
            assert done.stdout.startswith(f"stored: customers@{seed},"), done.stdout
    finally:
        server.stop()
