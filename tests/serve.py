"""`datagate serve` processes with the test settings (contracts, PII key, admin key)."""

from __future__ import annotations

from pathlib import Path

import httpx

from bench.serve import ServeProcess as _ServeProcess
from bench.serve import free_port
from tests.conftest import ADMIN_HEADERS, CONTRACTS, TEST_ADMIN_KEY, TEST_PII_KEY

__all__ = ["ServeProcess", "free_port", "upload_csv"]


def upload_csv(base: str, body: bytes, dataset: str = "customers") -> httpx.Response:
    """POST a CSV body to a live server as the test admin."""
    return httpx.post(
        f"{base}/api/v1/datasets/{dataset}/uploads",
        content=body,
        headers={"Content-Type": "text/csv", **ADMIN_HEADERS},
        timeout=120,
    )


class ServeProcess(_ServeProcess):
    """A `datagate serve` process on ``database_url`` with the test contracts and keys, PII
    detected in the process itself (``env`` may set any of it otherwise)."""

    def __init__(
        self,
        home: Path,
        database_url: str,
        log: Path,
        *,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        defaults = {
            "DATAGATE_CONTRACTS_DIR": str(CONTRACTS),
            # Detection in the serving process: no spaCy loaded twice more per server started
            # (test_hygiene keeps a pool, to see that it dies with its server).
            "DATAGATE_PII_WORKERS": "0",
            "DATAGATE_PII_KEY": TEST_PII_KEY,
            "DATAGATE_ADMIN_KEY": TEST_ADMIN_KEY,
        }
        super().__init__(home, database_url, log, env={**defaults, **(env or {})}, args=args)
