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

import pytest

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
