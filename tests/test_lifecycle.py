"""Retention, holds, released model claims and tombstones: what expires, what never does, and
what is left of a deleted version (its row, 410s, its lineage event, its audit entry)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from gateway.app import create_app
from gateway.db import unit_of_work
from gateway.lifecycle import apply_retention, stored_keys, tombstone
from gateway.models import AuditEntry, LineageEvent
from gateway.services import Services
from gateway.store import dataset_by_name, lock_dataset, version_by_number
from privacy import PiiEngine
from tests.conftest import TEST_ADMIN_KEY, TEST_PII_KEY, admin_client, settings_for

EVENTS = """
import pandera.polars as pa


class Events(pa.DataFrameModel):
    event_id: int = pa.Field(unique=True)
    email: str = pa.Field(metadata={"pii": "EMAIL_ADDRESS", "redact": "hash"})
    amount: float

    class Config:
        name = "events"
        metadata = {"version": "1.0.0", "retention": {RETENTION}}
"""


def write_contract(folder: Path, retention: str = '{"keep_last": 2}') -> None:
    folder.mkdir(exist_ok=True)
    (folder / "events.py").write_text(textwrap.dedent(EVENTS).replace("{RETENTION}", retention))


def rows(first: int, count: int = 3) -> str:
    lines = [f"{i},person{i}@example.com,{i * 1.5}" for i in range(first, first + count)]
    return "event_id,email,amount\n" + "\n".join(lines) + "\n"


@pytest.fixture
def gateway(tmp_path: Path, database_url: str, pii_engine: PiiEngine) -> Iterator[TestClient]:
    folder = tmp_path / "contracts"
    write_contract(folder)
    # No heartbeat (and so no periodic retention) races the retention the test applies.
    settings = settings_for(
        tmp_path / "home", folder, database_url=database_url, heartbeat_seconds=3600
    )
    client = admin_client(create_app(settings, pii_engine=pii_engine))
    with client:
        yield client


def services_of(client: TestClient) -> Services:
    return client.app.state.services  # type: ignore[attr-defined,no-any-return]


def upload(client: TestClient, body: str) -> dict[str, Any]:
    answer = client.post("/api/v1/datasets/events/uploads?format=csv", content=body)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_retention_keeps_the_newest_held_and_trained_on_versions_until_released(
    gateway: TestClient,
) -> None:
    services = services_of(gateway)
    policies = gateway.get("/api/v1/contracts/events").json()["policies"]
    assert policies["retention"] == {"keep_last": 2, "max_age_days": None}
    for start in (1, 10, 20, 30):
        upload(gateway, rows(start))
    trained = gateway.post(
        "/api/v1/training-runs",
        json={
            "model": {"name": "fraud", "version": "7"},
            "inputs": [{"dataset": "events", "version": 1}],
        },
    )
    assert trained.status_code == 201, trained.text
    held = gateway.post("/api/v1/datasets/events/versions/2/hold", json={"reason": "audit 2026-11"})
    assert held.status_code == 200, held.text
    assert held.json()["hold"]["by"] == "admin-key"
    assert held.json()["hold"]["at"].endswith("+00:00")
    with Session(services.engine) as session:
        keys_of_1 = stored_keys(
            services.snapshots,
            version_by_number(session, dataset_by_name(session, "events"), 1).storage_key,
        )

    # keep_last 2: versions 1 and 2 expire, but one is held and a model was trained on the other.
    first = apply_retention(services, services.catalog, record=services.audit.record)
    assert first.expired == []
    assert {(k.version, k.reason) for k in first.kept} == {
        (1, "models were trained on it"),
        (2, "held"),
    }
    released = gateway.post("/api/v1/datasets/events/versions/1/release", json={})
    assert released.status_code == 200
    assert gateway.delete("/api/v1/datasets/events/versions/2/hold").json()["hold"] is None
    dry = apply_retention(services, services.catalog, dry_run=True)
    assert sorted(e.version for e in dry.expired) == [1, 2]
    assert dry.dry_run
    assert gateway.get("/api/v1/datasets/events/versions/1").json()["state"] == "live"

    done = apply_retention(services, services.catalog, record=services.audit.record)
    assert sorted(e.version for e in done.expired) == [1, 2]
    shown = gateway.get("/api/v1/datasets/events/versions/1").json()
    assert shown["state"] == "deleted"
    assert shown["deleted"]["reason"] == "retention"
    assert shown["deleted"]["by"] == "system:retention"
    assert shown["deleted"]["at"].endswith("+00:00")
    assert shown["row_count"] == 3  # the metadata stays
    gone = gateway.get("/api/v1/datasets/events/versions/1/data")
    assert gone.status_code == 410
    assert gone.json()["type"].endswith("/version-gone")
    assert (
        gateway.post("/api/v1/contracts/events/revalidate", json={"versions": [2]}).status_code
        == 410
    )
    assert gateway.get("/api/v1/datasets/events/versions/3/data").status_code == 200
    # The objects are gone from the store; the live versions' are not.
    assert keys_of_1
    for key in keys_of_1:
        with pytest.raises(FileNotFoundError):
            services.snapshots.get_bytes(key)
    # A lifecycleStateChange DROP event per deleted version, and an audit entry each.
    with Session(services.engine) as session:
        payloads = [e.payload for e in session.exec(select(LineageEvent)).all()]
        audited = [
            str(target)
            for target in session.exec(
                select(AuditEntry.target).where(AuditEntry.actor == "system:retention")
            ).all()
        ]
    dropped = [
        (o["name"], o["facets"]["version"]["datasetVersion"])
        for p in payloads
        if p.get("job", {}).get("name") == "retention.events"
        for o in p["outputs"]
        if o["facets"]["lifecycleStateChange"]["lifecycleStateChange"] == "DROP"
    ]
    assert sorted(dropped) == [("events", "1"), ("events", "2")]
    assert sorted(audited) == [
        "/api/v1/datasets/events/versions/1",
        "/api/v1/datasets/events/versions/2",
    ]
    # The model's provenance names its deleted input rather than losing it.
    provenance = gateway.get("/api/v1/audit/models/fraud/provenance?version=7").json()
    (entry,) = provenance["training_runs"][0]["inputs"]
    assert entry["upload"]["state"] == "deleted"
    assert entry["upload"]["deleted"]["reason"] == "retention"
    # The same data uploaded again is a new version (a tombstone no longer stands for it).
    again = upload(gateway, rows(1))
    assert (again["version"]["version"], again["created"]) == (5, True)
    # A deleted version cannot be held.
    assert gateway.post("/api/v1/datasets/events/versions/1/hold", json={}).status_code == 409


def test_holds_and_releases_are_for_admins_and_reasons_lose_their_pii(
    gateway: TestClient,
) -> None:
    upload(gateway, rows(1))
    created = gateway.post("/api/v1/keys", json={"role": "producer", "datasets": ["events"]})
    producer = {"Authorization": f"Bearer {created.json()['key']}"}
    for path in ("hold", "release"):
        refused = gateway.post(
            f"/api/v1/datasets/events/versions/1/{path}", json={}, headers=producer
        )
        assert refused.status_code == 403
    held = gateway.post(
        "/api/v1/datasets/events/versions/1/hold",
        json={"reason": "complaint from jane.roe@example.org"},
    ).json()
    assert "jane.roe@example.org" not in json.dumps(held)
    assert "<EMAIL_ADDRESS>" in held["hold"]["reason"]


def test_a_part_a_live_version_shares_is_kept_when_its_first_version_goes(
    gateway: TestClient,
) -> None:
    """A quarantine replay's version refers to its base version's parts through a manifest:
    deleting the base deletes only what no live version refers to."""
    services = services_of(gateway)
    upload(gateway, rows(1))
    upload(gateway, rows(10))
    store = services.snapshots
    with unit_of_work(services.engine) as session:
        dataset = dataset_by_name(session, "events")
        one, two = (version_by_number(session, dataset, n) for n in (1, 2))
        shared = one.storage_key
        manifest = {
            "format": "datagate.parts/1",
            "content_hash": two.content_hash,
            "parts": [
                {"key": shared, "sha256": one.content_hash, "bytes": one.byte_size},
                {"key": two.storage_key, "sha256": two.content_hash, "bytes": two.byte_size},
            ],
        }
        store.put_bytes("events/replayed/manifest.json", json.dumps(manifest).encode())
        two.storage_key = "events/replayed/manifest.json"
        session.add(two)
    with unit_of_work(services.engine) as session:
        dataset = lock_dataset(session, "events")
        doomed = tombstone(
            session,
            store,
            dataset,
            [version_by_number(session, dataset, 1)],
            reason="retention",
            actor="test",
            namespace="datagate",
        )
    assert doomed == []  # its only object is a part of version 2
    assert store.get_bytes(shared)


def test_retention_apply_from_the_terminal(tmp_path: Path) -> None:
    """`datagate retention apply --dry-run` on the embedded default: what it would delete."""
    folder = tmp_path / "contracts"
    write_contract(folder, '{"keep_last": 1}')
    home = tmp_path / "home"
    settings = settings_for(home, folder)
    with admin_client(create_app(settings, pii_engine=PiiEngine(None))) as client:
        upload(client, rows(1))
        upload(client, rows(10))
    env = {
        "DATAGATE_HOME": str(home),
        "DATAGATE_CONTRACTS_DIR": str(folder),
        "DATAGATE_PII_KEY": TEST_PII_KEY,
        "DATAGATE_ADMIN_KEY": TEST_ADMIN_KEY,
        "DATAGATE_SPACY_MODEL": "",
        "PATH": "/usr/bin:/bin",
    }
    datagate = str(Path(sys.executable).parent / "datagate")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [datagate, "retention", "apply", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    dry = run("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == ["would delete: events@1 (not among the 1 newest)"]
    assert dry.stderr.strip().splitlines()[-1] == "would delete 1 version(s), kept 0"
    # Nothing was deleted; what `apply` without --dry-run runs is apply_retention (tested above).
    with admin_client(create_app(settings, pii_engine=PiiEngine(None))) as client:
        assert client.get("/api/v1/datasets/events/versions/1/data").status_code == 200


@pytest.mark.parametrize(
    "retention",
    ['{"keep_last": 0}', '{"max_age_days": -1}', '{"keep": 3}', '"30d"', "{}"],
)
def test_a_bad_retention_is_a_load_error(tmp_path: Path, retention: str) -> None:
    from gateway.contracts import load_contracts

    write_contract(tmp_path, retention)
    catalog = load_contracts(tmp_path)
    assert "events" not in catalog.contracts
    (error,) = catalog.errors
    assert "retention" in error.reason


def test_the_periodic_duty_applies_retention(tmp_path: Path, pii_engine: PiiEngine) -> None:
    from gateway.services import _retention_duty

    folder = tmp_path / "contracts"
    write_contract(folder, '{"keep_last": 1}')
    settings = settings_for(tmp_path / "home", folder, heartbeat_seconds=3600)
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        upload(client, rows(1))
        upload(client, rows(10))
        _retention_duty(services_of(client))  # what the heartbeat runs every so often
        assert client.get("/api/v1/datasets/events/versions/1").json()["state"] == "deleted"
        assert client.get("/api/v1/datasets/events/versions/2").json()["state"] == "live"
