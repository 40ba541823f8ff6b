"""Shared fixtures: settings per test, SQLite and a fresh PostgreSQL database, a TestClient."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from bench.generate import customers
from gateway.app import create_app
from gateway.db import make_engine, migrate
from gateway.settings import Settings
from privacy import PiiEngine

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO / "contracts"
PG_HOST = os.environ.get("DATAGATE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DATAGATE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("DATAGATE_TEST_PG_USER", "postgres")
TEST_PII_KEY = "test-pii-key-" + "k" * 40
TEST_ADMIN_KEY = "test-admin-key-" + "a" * 40
ADMIN_HEADERS = {"Authorization": f"Bearer {TEST_ADMIN_KEY}"}
SPACY_MODEL = Settings.model_fields["spacy_model"].default


def _pg_url(database: str) -> str:
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def _admin_connection() -> psycopg.Connection:
    return psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    )


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated PostgreSQL database made for this session, used as a template per test."""
    try:
        admin = _admin_connection()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL must run in CI ({PG_HOST}:{PG_PORT}): {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}: {exc}")
    name = f"datagate_tmpl_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(_pg_url(name))
    migrate(engine)
    engine.dispose()
    try:
        yield name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def fresh_postgres_url(postgres_template: str) -> Iterator[str]:
    """A PostgreSQL database of its own for one test, already migrated."""
    name = f"datagate_test_{uuid.uuid4().hex[:10]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    try:
        yield _pg_url(name)
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


MOTO_SERVER = Path(sys.executable).parent / "moto_server"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API server process (moto in server mode) on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("moto_server did not start")
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def s3_environment(endpoint: str) -> dict[str, str]:
    """The standard AWS settings that point a client at ``endpoint``."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "datagate-test",
        "AWS_SECRET_ACCESS_KEY": "datagate-test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }


@pytest.fixture
def s3_url(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``s3://<new bucket>/snapshots`` on the moto server, with the AWS settings in the env."""
    bucket = f"datagate-{uuid.uuid4().hex[:12]}"
    httpx.put(f"{s3_endpoint}/{bucket}", timeout=10).raise_for_status()
    for name, value in s3_environment(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    return f"s3://{bucket}/snapshots"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'datagate.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def contract_folder(tmp_path: Path, **contracts: str) -> Path:
    """``tmp_path/contracts`` holding ``<name>.py`` with each contract's text (dedented)."""
    folder = tmp_path / "contracts"
    folder.mkdir()
    for name, text in contracts.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(text))
    return folder


def settings_for(home: Path, contracts_dir: Path = CONTRACTS, **extra: Any) -> Settings:
    """Settings with the test keys, for an app of one's own (``extra``: any other setting)."""
    return Settings(
        home=home,
        contracts_dir=contracts_dir,
        pii_key=TEST_PII_KEY,
        admin_key=TEST_ADMIN_KEY,
        **extra,
    )


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        contracts_dir=CONTRACTS,
        pii_key=TEST_PII_KEY,
        admin_key=TEST_ADMIN_KEY,
        max_upload_bytes=5_000_000,
        max_decoded_bytes=50_000_000,
    )


@pytest.fixture(scope="session")
def pii_engine() -> PiiEngine:
    """The real Presidio + spaCy engine, loaded once for the session."""
    return PiiEngine(SPACY_MODEL, workers=0)


@pytest.fixture
def client(settings: Settings, pii_engine: PiiEngine) -> Iterator[TestClient]:
    with admin_client(create_app(settings, pii_engine=pii_engine)) as test_client:
        yield test_client


def admin_client(app: FastAPI) -> TestClient:
    """A TestClient that sends the test admin key with every request."""
    return TestClient(app, headers=ADMIN_HEADERS)


@pytest.fixture
def customers_frame() -> pl.DataFrame:
    """Fifty valid customers."""
    return customers(50, seed=11)


def encode(frame: pl.DataFrame, fmt: str) -> bytes:
    """The frame as an upload in ``fmt`` (csv, ndjson, json, parquet or arrow)."""
    buffer = io.BytesIO()
    if fmt == "csv":
        frame.write_csv(buffer)
    elif fmt == "ndjson":
        frame.write_ndjson(buffer)
    elif fmt == "json":
        frame.write_json(buffer)
    elif fmt == "parquet":
        frame.write_parquet(buffer)
    else:
        frame.write_ipc(buffer)
    return buffer.getvalue()


def csv_bytes(frame: pl.DataFrame) -> bytes:
    """The frame as CSV text."""
    return frame.write_csv().encode()


def upload_versions(client: TestClient, frame: pl.DataFrame, count: int, query: str = "") -> None:
    """Upload ``count`` distinct variants of ``frame`` as customers versions 1..count."""
    for bump in range(count):
        response = client.post(
            f"/api/v1/datasets/customers/uploads{query}",
            content=csv_bytes(frame.with_columns(pl.col("orders_count") + bump)),
            headers={"Content-Type": "text/csv"},
        )
        assert response.status_code == 201, response.text


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[str]:
    """Base URL of a `datagate serve` process on ``database_url``, with the test settings."""
    from tests.serve import ServeProcess  # tests.serve imports this module

    process = ServeProcess(tmp_path / "home", database_url, tmp_path / "server.log")
    try:
        yield process.wait_ready().base
    finally:
        process.stop()


# A contract that holds invalid rows for review (quarantine), with a hashed PII column.
QUARANTINING_SIGNUPS = """
import pandera.polars as pa


class Signups(pa.DataFrameModel):
    signup_id: int = pa.Field(unique=True)
    email: str = pa.Field(metadata={"pii": "EMAIL_ADDRESS", "redact": "hash"})
    age: int = pa.Field(ge=0)

    class Config:
        name = "signups"
        metadata = {"version": "1.0.0", "on_invalid": "quarantine", "max_invalid_fraction": 0.6}
"""


def producer_event(job: str, reads: str, writes: str, run_id: str) -> dict[str, Any]:
    """A producer's COMPLETE event: job ``job`` reads Datagate's ``reads`` and writes ``writes``
    (names of any text, e.g. markup a page must show as text)."""
    return {
        "eventType": "COMPLETE",
        "eventTime": "2026-12-08T10:00:00.000Z",
        "producer": "https://example.com/pipeline",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id, "facets": {}},
        "job": {"namespace": "etl", "name": job, "facets": {}},
        "inputs": [{"namespace": "datagate", "name": reads, "facets": {}}],
        "outputs": [{"namespace": "etl", "name": writes, "facets": {}}],
    }
