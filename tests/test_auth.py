"""API keys and roles: 401 without a key, 403 for the wrong role or dataset, keys shown once."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from gateway.cli import FIRST_ADMIN_KEY_FILE, _first_start_admin_key
from gateway.db import make_engine
from gateway.keys import create_key, list_keys
from gateway.models import ApiKey
from gateway.settings import Settings
from tests.conftest import CONTRACTS, TEST_PII_KEY, csv_bytes

UPLOAD = "/api/v1/datasets/customers/uploads"


def _key(client: TestClient, role: str, **extra: object) -> dict[str, str]:
    created = client.post("/api/v1/keys", json={"role": role, "name": f"{role}-bot", **extra})
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


def test_every_api_route_needs_a_key_but_health_and_metrics_stay_open(client: TestClient) -> None:
    anonymous = TestClient(client.app)
    for path in [
        "/api/v1/datasets",
        "/api/v1/contracts",
        "/api/v1/keys",
        "/api/v1/lineage?nodeId=job:a:b",
    ]:
        response = anonymous.get(path)
        assert response.status_code == 401, path
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"
    assert anonymous.post(UPLOAD, content=b"a\n1\n").status_code == 401
    wrong = anonymous.get("/api/v1/datasets", headers={"Authorization": "Bearer dg_not-a-key"})
    assert wrong.status_code == 401
    for path in ["/healthz", "/readyz", "/metrics"]:
        assert anonymous.get(path).status_code == 200, path


def test_roles_and_datasets_decide_what_a_key_may_do(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    producer = _key(client, "producer", datasets=["customers"])
    other_producer = _key(client, "producer", datasets=["transactions"])
    consumer = _key(client, "consumer", datasets=["customers"])
    auditor = _key(client, "auditor")
    body = csv_bytes(customers_frame)
    uploaded = client.post(UPLOAD, content=body, headers={**producer, "Content-Type": "text/csv"})
    assert uploaded.status_code == 201
    assert uploaded.json()["version"]["uploader"] == "producer-bot"
    for headers, status in [(other_producer, 403), (consumer, 403), (auditor, 403)]:
        assert (
            client.post(
                UPLOAD, content=body, headers={**headers, "Content-Type": "text/csv"}
            ).status_code
            == status
        )
    data = "/api/v1/datasets/customers/versions/1/data"
    assert client.get(data, headers=consumer).status_code == 200
    assert client.get(data, headers=auditor).status_code == 403
    assert client.get(data, headers=producer).status_code == 403
    assert client.get("/api/v1/datasets/customers/versions/1", headers=auditor).status_code == 200
    assert client.get("/api/v1/datasets/customers", headers=other_producer).status_code == 403
    listed = client.get("/api/v1/datasets", headers=other_producer).json()["datasets"]
    assert [d["name"] for d in listed] == ["transactions"]
    assert (
        client.get(
            "/api/v1/audit/datasets/customers/versions/1/impact", headers=auditor
        ).status_code
        == 200
    )
    assert (
        client.get(
            "/api/v1/audit/datasets/customers/versions/1/impact", headers=consumer
        ).status_code
        == 403
    )
    search = {"identifiers": ["x@example.com"]}
    assert (
        client.post("/api/v1/privacy/subjects/search", json=search, headers=auditor).status_code
        == 200
    )
    assert (
        client.post("/api/v1/privacy/subjects/search", json=search, headers=producer).status_code
        == 403
    )
    assert client.get("/api/v1/keys", headers=auditor).status_code == 403
    forbidden = client.get("/api/v1/keys", headers=producer)
    assert forbidden.headers["content-type"] == "application/problem+json"
    assert forbidden.json()["type"].endswith("/forbidden")


def test_keys_are_shown_once_stored_hashed_and_revocable(client: TestClient) -> None:
    created = client.post("/api/v1/keys", json={"role": "auditor", "name": "audit-2026"})
    secret, key_id = created.json()["key"], created.json()["id"]
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/contracts", headers=headers).status_code == 200
    listed = client.get("/api/v1/keys").text
    assert key_id in listed
    assert secret not in listed
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    assert all(secret not in (row.key_hash, row.id) for row in list_keys(engine))
    assert client.delete(f"/api/v1/keys/{key_id}").status_code == 204
    assert client.get("/api/v1/contracts", headers=headers).status_code == 401
    assert client.delete("/api/v1/keys/nope").status_code == 404


def test_expired_keys_are_refused(client: TestClient) -> None:
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    _, expired = create_key(
        engine, "auditor", "old", expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    _, current = create_key(
        engine, "auditor", "new", expires_at=datetime.now(UTC) + timedelta(days=1)
    )
    assert (
        client.get("/api/v1/contracts", headers={"Authorization": f"Bearer {expired}"}).status_code
        == 401
    )
    assert (
        client.get("/api/v1/contracts", headers={"Authorization": f"Bearer {current}"}).status_code
        == 200
    )


@pytest.mark.parametrize("expires_at", ["2000-01-01T00:00:00Z", 0, "0.5", "soon"])
def test_a_key_cannot_be_created_already_expired_or_with_a_non_iso_time(
    client: TestClient, expires_at: object
) -> None:
    response = client.post("/api/v1/keys", json={"role": "auditor", "expires_at": expires_at})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/api/v1/keys").json()["keys"] == []


def test_first_start_writes_an_admin_key_to_a_private_file(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", contracts_dir=CONTRACTS, pii_key=TEST_PII_KEY)
    _first_start_admin_key(settings)
    path = settings.home / FIRST_ADMIN_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text().strip()
    assert secret.startswith("dg_")
    _first_start_admin_key(settings)  # a second start creates nothing new
    engine = make_engine(settings.resolved_database_url)
    try:
        assert [k.role for k in list_keys(engine)] == ["admin"]
    finally:
        engine.dispose()


@pytest.mark.slow
def test_keys_command_line_creates_lists_and_revokes(tmp_path: Path) -> None:
    env = {**os.environ, "DATAGATE_HOME": str(tmp_path), "DATAGATE_PII_KEY": TEST_PII_KEY}
    datagate = str(Path(sys.executable).parent / "datagate")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [datagate, "keys", *args], env=env, capture_output=True, text=True, timeout=120
        )

    created = run(
        "create",
        "--role",
        "producer",
        "--datasets",
        "customers",
        "--expires",
        "30d",
        "--name",
        "crm",
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()  # the secret alone: KEY=$(datagate keys create ...) works
    assert secret.startswith("dg_")
    assert "\n" not in secret
    key_id = created.stderr.split()[2].rstrip(":")
    assert "store it now" in created.stderr
    assert secret not in created.stderr
    listed = run("list").stdout
    assert key_id in listed
    assert "producer" in listed
    assert secret not in listed
    assert run("revoke", key_id).returncode == 0
    assert "revoked" in run("list").stdout
    assert run("revoke", "missing").returncode == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"role": "consumer", "datasets": []}, "empty"),
        ({"role": "producer", "datasets": []}, "empty"),
        ({"role": "consumer"}, "names the datasets"),
        ({"role": "consumer", "datasets": ["*", "customers"]}, "name no others"),
        ({"role": "consumer", "datasets": ["../etc"]}, "do not match"),
        ({"role": "auditor", "datasets": []}, "only producer and consumer"),
    ],
)
def test_a_key_never_gets_every_dataset_by_accident(
    client: TestClient, body: dict[str, object], reason: str
) -> None:
    """An empty dataset list used to mean "all" (finding 5): now it is refused."""
    refused = client.post("/api/v1/keys", json=body)
    assert refused.status_code == 400, refused.text
    assert reason in refused.json()["detail"]
    assert [k["role"] for k in client.get("/api/v1/keys").json()["keys"]] == []


def test_every_dataset_is_only_ever_explicit(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    everything = _key(client, "consumer", datasets=["*"])
    one = _key(client, "consumer", datasets=["transactions"])
    body = csv_bytes(customers_frame)
    client.post(UPLOAD, content=body, headers={"Content-Type": "text/csv"})
    data = "/api/v1/datasets/customers/versions/1/data"
    assert client.get(data, headers=everything).status_code == 200
    assert client.get(data, headers=one).status_code == 403


def test_a_stored_empty_dataset_list_grants_nothing(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    """Keys written by earlier versions with ``datasets: []`` must not read every dataset."""
    client.post(UPLOAD, content=csv_bytes(customers_frame), headers={"Content-Type": "text/csv"})
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    row, secret = create_key(engine, "consumer", "legacy", ["customers"])
    with engine.begin() as connection:
        connection.execute(
            ApiKey.__table__.update().where(ApiKey.__table__.c.id == row.id).values(datasets=[])  # type: ignore[attr-defined]
        )
    headers = {"Authorization": f"Bearer {secret}"}
    assert (
        client.get("/api/v1/datasets/customers/versions/1/data", headers=headers).status_code == 403
    )
    assert client.get("/api/v1/datasets", headers=headers).json()["datasets"] == []


@pytest.mark.slow
def test_keys_create_refuses_an_empty_dataset_list_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "DATAGATE_HOME": str(tmp_path), "DATAGATE_PII_KEY": TEST_PII_KEY}
    datagate = str(Path(sys.executable).parent / "datagate")
    for datasets in ([], ["--datasets", ""], ["--datasets", " , "]):
        done = subprocess.run(
            [datagate, "keys", "create", "--role", "consumer", *datasets],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stdout
        assert "Traceback" not in done.stderr
        assert "dg_" not in done.stdout
    assert not (tmp_path / "datagate.db").exists()  # refused before touching the database


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "superuser"], "'superuser' is not one of"),
        (
            ["--role", "consumer", "--datasets", "customers", "--expires", "next tuesday"],
            "neither an ISO 8601 time",
        ),
        (
            ["--role", "consumer", "--datasets", "custmers"],
            "no contract or stored version knows 'custmers'",
        ),
    ],
    ids=["bad-role", "bad-expiry", "unknown-dataset"],
)
def test_keys_create_refuses_bad_options_in_one_clean_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    env = {
        **os.environ,
        "DATAGATE_HOME": str(tmp_path),
        "DATAGATE_PII_KEY": TEST_PII_KEY,
        "DATAGATE_CONTRACTS_DIR": str(CONTRACTS),
    }
    datagate = str(Path(sys.executable).parent / "datagate")
    done = subprocess.run(
        [datagate, "keys", "create", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stdout
    assert "Traceback" not in done.stderr
    assert message in " ".join(done.stderr.split()), done.stderr
    assert "dg_" not in done.stdout
    allowed = subprocess.run(
        [
            datagate,
            "keys",
            "create",
            "--role",
            "consumer",
            "--datasets",
            "custmers",
            "--allow-unknown",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.strip().startswith("dg_")
