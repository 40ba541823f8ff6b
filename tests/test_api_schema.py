"""Schemathesis against the OpenAPI document of a live `datagate serve` (admin key, one version
already stored so the examples reach real data): no 5xx, and every response conforms to the
document — status codes, content types, bodies and headers — and auth is never ignored.

``positive_data_acceptance`` is left out on purpose: a schema-valid request may still name a
dataset version that does not exist (training runs) or a facet the OpenLineage spec places
elsewhere (lineage), which Datagate must refuse.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bench.generate import customers
from tests.conftest import TEST_ADMIN_KEY, csv_bytes
from tests.serve import ServeProcess, upload_csv

pytestmark = pytest.mark.slow

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    tmp_path: Path, database_url: str
) -> None:
    server = ServeProcess(tmp_path / "home", database_url, tmp_path / "server.log").wait_ready()
    try:
        stored = upload_csv(server.base, csv_bytes(customers(50, seed=4)))
        assert stored.status_code == 201, stored.text
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "run",
                f"{server.base}/openapi.json",
                "--header",
                f"Authorization: Bearer {TEST_ADMIN_KEY}",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                "20",
                "--seed",
                "1",
                "--no-color",
                "--generation-database",
                "none",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-5_000:]
        assert "Server error" not in result.stdout
        assert server.process.poll() is None
        # Nothing the fuzzer sent logged an unexpected error.
        assert "unhandled error" not in server.log_text()
    finally:
        server.stop()


NOT_JSON = {
    ("get", "/metrics"),
    ("get", "/api/v1/datasets/{dataset}/versions/{version}/data"),
    ("delete", "/api/v1/keys/{key_id}"),  # 204, no content
}


def test_success_answers_have_response_models(client: TestClient) -> None:
    untyped: set[tuple[str, str]] = set()
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        for method, operation in operations.items():
            success: dict[str, Any] = next(
                (body for code, body in operation["responses"].items() if code.startswith("2")), {}
            )
            schema = success.get("content", {}).get("application/json", {}).get("schema")
            if (method, path) not in NOT_JSON and not (
                schema and ("$ref" in schema or schema.get("properties"))
            ):
                untyped.add((method, path))
    # Every JSON success is documented field by field; a route added must come with its model.
    assert not untyped, sorted(untyped)
