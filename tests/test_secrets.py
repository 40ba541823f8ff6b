"""Secrets stay secret, and production mode refuses development defaults."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from gateway.app import create_app
from gateway.settings import Settings
from privacy import PiiEngine
from tests.conftest import CONTRACTS, TEST_ADMIN_KEY, TEST_PII_KEY, admin_client


def test_production_mode_refuses_development_defaults(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, contracts_dir=CONTRACTS, env="production")
    with pytest.raises(ValueError, match="refusing to start in production mode") as refused:
        create_app(settings)
    message = str(refused.value)
    assert "SQLite" in message
    assert "DATAGATE_PII_KEY" in message
    assert "DATAGATE_ADMIN_KEY" in message


def test_a_short_pii_key_is_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, contracts_dir=CONTRACTS, pii_key=SecretStr("too-short"))
    with pytest.raises(ValueError, match="at least 32 bytes"):
        create_app(settings)


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"DATAGATE_PII_KEY": "too-short-a-key"}, "at least 32 bytes"),
        ({"DATAGATE_ENV": "production"}, "DATAGATE_DATABASE_URL must name a server database"),
    ],
)
def test_serve_refuses_to_start_with_a_clear_message_and_no_secret(
    tmp_path: Path, env: dict[str, str], reason: str
) -> None:
    result = subprocess.run(
        [Path(sys.executable).parent / "datagate", "serve"],
        env={**os.environ, "DATAGATE_HOME": str(tmp_path), "DATAGATE_PORT": "9", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert reason in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "too-short-a-key" not in result.stderr + result.stdout


def test_no_secret_reaches_logs_readyz_or_errors(
    tmp_path: Path, database_url: str, pii_engine: PiiEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "s3cret-db-password"
    # PostgreSQL here trusts local connections, so the password is carried but never checked.
    url = (
        database_url.replace("postgres@", f"postgres:{password}@")
        if "postgresql" in database_url
        else database_url
    )
    settings = Settings(
        home=tmp_path / "home",
        database_url=url,
        contracts_dir=CONTRACTS,
        pii_key=TEST_PII_KEY,
        admin_key=TEST_ADMIN_KEY,
    )
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        texts = [client.get("/readyz").text, client.get("/api/v1/contracts").text]
        texts.append(
            TestClient(client.app)
            .get("/api/v1/datasets", headers={"Authorization": "Bearer nope"})
            .text
        )
        texts.append(client.get("/metrics").text)
    texts.append(caplog.text)
    for secret in (password, TEST_PII_KEY, TEST_ADMIN_KEY):
        assert not [t for t in texts if secret in t], secret
