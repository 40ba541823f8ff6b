"""Recovery decides who is dead from the instance table: the runs and files of a replica whose
heartbeat went stale are cleaned up; a live replica's work is never touched."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from bench.generate import customers
from gateway.db import unit_of_work
from gateway.errors import Interrupted
from gateway.models import GatewayInstance, IngestRun, LineageEvent, utcnow
from gateway.pipeline import run_pipeline
from gateway.recovery import Recovery
from gateway.runs import start_run
from gateway.services import Services
from gateway.snapshots import StagedVersion, part_keys, publish_version
from gateway.uploads import ReceivedUpload, UploadSpool
from tests.conftest import csv_bytes


def _replica(services: Services, *, beat_age: timedelta) -> str:
    """Another replica, on another host, that last beat ``beat_age`` ago, mid-upload."""
    instance_id = uuid.uuid4().hex
    now = utcnow()
    with unit_of_work(services.engine) as session:
        session.add(
            GatewayInstance(
                id=instance_id,
                host=f"replica-{instance_id[:6]}",
                pid=1,
                started_at=now - beat_age,
                heartbeat_at=now - beat_age,
            )
        )
        session.add(
            IngestRun(
                id=str(uuid.uuid4()),
                dataset="customers",
                status="running",
                uploader="producer",
                started_at=now - beat_age,
                instance=instance_id,
            )
        )
    for folder in (services.settings.tmp_dir, services.settings.home / "snapshots" / ".staging"):
        (folder / instance_id).mkdir(parents=True)
        (folder / instance_id / "half-written").write_bytes(b"x")
    return instance_id


def _run_of(services: Services, instance_id: str) -> IngestRun:
    with Session(services.engine) as session:
        return session.exec(select(IngestRun).where(IngestRun.instance == instance_id)).one()


def test_a_stale_replica_is_recovered_and_a_live_one_left_alone(client: TestClient) -> None:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    stale = services.settings.heartbeat_seconds * 7
    dead = _replica(services, beat_age=timedelta(seconds=stale))
    alive = _replica(services, beat_age=timedelta(seconds=1))

    report = Recovery(services).run(orphans=True)

    assert report.dead_instances == [dead]
    assert report.interrupted_runs == [_run_of(services, dead).id]
    assert sorted(report.removed_files) == sorted(
        str(folder / dead / "half-written")
        for folder in (services.settings.tmp_dir, services.settings.home / "snapshots" / ".staging")
    )
    failed = _run_of(services, dead)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error["title"] == "Ingest interrupted"
    assert _run_of(services, alive).status == "running"
    assert (services.settings.tmp_dir / alive / "half-written").exists()
    with Session(services.engine) as session:
        assert session.get(GatewayInstance, dead) is None
        assert session.get(GatewayInstance, alive) is not None
        events = session.exec(
            select(LineageEvent.event_type).where(LineageEvent.run_id == failed.id)
        ).all()
    assert events == ["FAIL"]
    response = client.get(f"/api/v1/runs/{failed.id}")
    assert response.json()["status"] == "failed"

    # A second pass (another replica's heartbeat) finds nothing more to do.
    assert not Recovery(services).run(orphans=True)


def test_an_ingest_failed_by_recovery_meanwhile_stores_nothing_and_one_outcome(
    client: TestClient, tmp_path: Path
) -> None:
    # A replica wrongly took this process for dead (say its heartbeat stalled) and failed
    # the run while the ingest went on: the ingest must not also commit a version.
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    contract = services.catalog.get("customers")
    assert contract is not None
    job = start_run(services, contract, None, "tester")
    assert Recovery(services)._interrupt(job.run_id)
    body = tmp_path / "upload.csv"
    body.write_bytes(csv_bytes(customers(20, seed=2)))
    upload = ReceivedUpload(body, body.stat().st_size, "upload.csv", "text/csv")
    spool = UploadSpool(services.work_dir)
    with pytest.raises(Interrupted):
        run_pipeline(services, job, contract, upload, spool, None, "tester")
    spool.close()
    assert client.get("/api/v1/datasets/customers/versions").json()["versions"] == []
    assert services.snapshots.keys("customers/") == []
    with Session(services.engine) as session:
        events = session.exec(
            select(LineageEvent.event_type).where(LineageEvent.run_id == job.run_id)
        ).all()
    assert sorted(str(e) for e in events) == ["FAIL", "START"]
    assert client.get(f"/api/v1/runs/{job.run_id}").json()["error"]["title"] == (
        "Ingest interrupted"
    )


def test_a_running_runs_published_snapshot_is_no_orphan(client: TestClient) -> None:
    """A run publishes its snapshot before it takes the dataset lock to record the version;
    until the run ends, the orphan sweep leaves that object alone (its key names the run),
    whether one file or parts under a manifest."""
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    live = _replica(services, beat_age=timedelta(seconds=0))
    run = _run_of(services, live)
    store = services.snapshots
    one = StagedVersion((store.stage(customers(3).lazy()),))
    key = one.key("customers", run.id)
    publish_version(store, one, key)
    several = StagedVersion(tuple(store.stage(customers(n).lazy()) for n in (2, 3)))
    manifest = several.key("customers", run.id)
    publish_version(store, several, manifest)
    stray = "customers/v9-0123456789abcdef.parquet"  # an old-style key no version refers to
    store.publish(store.stage(customers(3).lazy()), stray)
    report = Recovery(services).run(orphans=True)
    assert report.orphan_snapshots == [stray]
    ours = sorted([key, manifest, *part_keys(store, manifest)])
    assert store.keys("customers/") == ours
    with unit_of_work(services.engine) as session:
        ended = session.get(IngestRun, run.id)
        assert ended is not None
        ended.status = "failed"
        session.add(ended)
    assert sorted(Recovery(services).run(orphans=True).orphan_snapshots) == ours
    assert store.keys("customers/") == []
