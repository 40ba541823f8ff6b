"""The production stack, run here without Docker: the parts that can run on this machine, wired
with docker-compose.yml's own values.

The compose file is parsed and interpolated with a value for each secret; the `migrate` and
`gateway` services' commands run as real processes with the gateway's environment from the file.
Each service they reach is stood in for by the real thing running here — PostgreSQL, an S3 API
server (moto), an OpenLineage HTTP receiver in place of Marquez — and only the host and port of
each URL (and, on the shared PostgreSQL, the database name) are changed to where it runs. User
names, passwords, bucket, paths, the namespace, the lineage endpoint and the API key are the
file's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import httpx
import polars as pl
import pytest
from sqlalchemy.engine import make_url

from bench.serve import ServeProcess, free_port
from tests import compose
from tests.conftest import CONTRACTS, PG_HOST, PG_PORT, _admin_connection
from tests.image_facts import MARQUEZ_LINEAGE_PATH

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# What an operator puts in .env, with the characters a generated secret may hold.
SECRETS = {
    "POSTGRES_PASSWORD": "pg/+=" + "p" * 30,
    "MARQUEZ_DB_PASSWORD": "mq/+=" + "m" * 30,
    "MINIO_ROOT_PASSWORD": "minio/+=" + "s" * 30,
    "DATAGATE_PII_KEY": "pii/+=" + "k" * 48,
    "DATAGATE_ADMIN_KEY": "admin-" + "a" * 40,
}
DATAGATE = Path(sys.executable).parent / "datagate"
README = compose.REPO / "README.md"


def _readme_sample() -> bytes:
    """The customers.csv the README's production walk-through uploads."""
    found = re.search(r"cat > customers.csv <<'EOF'\n(.*?\n)EOF\n", README.read_text(), re.S)
    assert found is not None
    return found.group(1).encode()


def _stand_in(url: str, service: str, netloc: str) -> str:
    """``url`` (which must name compose service ``service``) pointed at ``netloc`` instead."""
    parts = urlparse(url)
    assert parts.hostname == service, url
    return urlunparse(parts._replace(netloc=netloc))


class _LineageReceiver(ThreadingHTTPServer):
    """Marquez's part here: takes each POSTed event with 201 and keeps it with its path."""

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _ReceiveEvent)
        self.events: list[tuple[str, dict[str, Any]]] = []


class _ReceiveEvent(BaseHTTPRequestHandler):
    server: _LineageReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.events.append((self.path, json.loads(body)))
        self.send_response(HTTPStatus.CREATED)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stack_database(postgres_template: str) -> Iterator[str]:
    """An empty database on the local PostgreSQL owned by the compose file's database user."""
    user = compose.services(SECRETS)["postgres"]["environment"]["POSTGRES_USER"]
    name = f"datagate_stack_{uuid.uuid4().hex[:10]}"
    with _admin_connection() as admin:
        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        if not exists:
            admin.execute(f'CREATE ROLE "{user}" LOGIN')
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{user}"')
    try:
        yield name
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_gateway_runs_on_the_compose_wiring_and_delivers_lineage_once_marquez_is_up(
    tmp_path: Path, stack_database: str, s3_endpoint: str
) -> None:
    services = compose.services(SECRETS)
    env = dict(services["gateway"]["environment"])
    assert services["migrate"]["environment"] == env

    # PostgreSQL: the file's driver, user and password; this machine's host and port, and a
    # fresh database.
    database = make_url(env["DATAGATE_DATABASE_URL"])
    assert database.host == "postgres"
    env["DATAGATE_DATABASE_URL"] = database.set(
        host=PG_HOST, port=PG_PORT, database=stack_database
    ).render_as_string(hide_password=False)
    # The object store: the bucket minio-init creates, made the same way on the S3 server here.
    (bucket,) = re.findall(
        r"mc mb --ignore-existing local/([\w.-]+)", services["minio-init"]["entrypoint"][-1]
    )
    assert urlparse(env["DATAGATE_STORAGE_URL"]).netloc == bucket
    s3 = urlparse(s3_endpoint).netloc
    env["AWS_ENDPOINT_URL"] = _stand_in(env["AWS_ENDPOINT_URL"], "minio", s3)
    httpx.put(f"{s3_endpoint}/{bucket}", timeout=10)
    # Marquez: a receiver on a port where nothing listens yet.
    receiver_port = free_port()
    env["OPENLINEAGE_URL"] = _stand_in(
        env["OPENLINEAGE_URL"], "marquez", f"127.0.0.1:{receiver_port}"
    )
    # What the image holds in its file system rather than its environment.
    env["DATAGATE_CONTRACTS_DIR"] = str(CONTRACTS)
    env["DATAGATE_HOST"] = "127.0.0.1"

    # The migrate service's command, then the gateway's, exactly as the file gives them.
    migrate = services["migrate"]["command"]
    assert migrate[0] == "datagate"
    done = subprocess.run(
        [DATAGATE, *migrate[1:]], env={**os.environ, **env}, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    command = services["gateway"]["command"]
    assert command[:2] == ["datagate", "serve"]
    gateway = ServeProcess(
        tmp_path / "home",
        env["DATAGATE_DATABASE_URL"],
        tmp_path / "gateway.log",
        env=env,
        args=tuple(command[2:]),
    )
    receiver: _LineageReceiver | None = None
    try:
        # Marquez is down: the gateway starts, is ready and stores uploads all the same.
        gateway.wait_ready(timeout=180)
        auth = {"Authorization": f"Bearer {SECRETS['DATAGATE_ADMIN_KEY']}"}
        created = httpx.post(
            f"{gateway.base}/api/v1/datasets/customers/uploads",
            content=_readme_sample(),
            headers={"Content-Type": "text/csv", **auth},
            timeout=120,
        )
        assert created.status_code == 201, created.text
        run_id = created.json()["run_id"]
        ready = httpx.get(f"{gateway.base}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["lineage"]["pending"] >= 2
        listing = httpx.get(f"{s3_endpoint}/{bucket}?list-type=2&prefix=snapshots/", timeout=10)
        assert re.search(r"<Key>snapshots/[^<]+\.parquet</Key>", listing.text), listing.text
        stored = pl.read_parquet(
            httpx.get(
                f"{gateway.base}/api/v1/datasets/customers/versions/1/data",
                headers=auth,
                timeout=30,
            ).content
        )
        assert stored.height == 3
        notes = stored["notes"][0]
        assert "Prefers email" in notes
        assert "Lovelace" not in notes
        assert "7946" not in notes

        # Marquez comes up: the held events arrive at its lineage endpoint.
        receiver = _LineageReceiver(receiver_port)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        events = receiver.events
        _wait_for(
            lambda: {"START", "COMPLETE"} <= {e["eventType"] for e in _of_run(events, run_id)}
        )
        assert {path for path, _ in events} == {MARQUEZ_LINEAGE_PATH}
        assert {e["job"]["namespace"] for _, e in events} == {env["DATAGATE_NAMESPACE"]}
        _wait_for(lambda: _pending(gateway.base) == 0)
    finally:
        gateway.stop()
        if receiver is not None:
            receiver.shutdown()
            receiver.server_close()


def _of_run(events: list[tuple[str, dict[str, Any]]], run_id: str) -> list[dict[str, Any]]:
    return [event for _, event in events if event.get("run", {}).get("runId") == run_id]


def _pending(base: str) -> int:
    pending: int = httpx.get(f"{base}/readyz", timeout=10).json()["checks"]["lineage"]["pending"]
    return pending


def _wait_for(condition: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not so after {timeout} s")
        time.sleep(0.2)
