"""docker-compose.yml and the Dockerfile, checked statically against the settings the code reads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gateway.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, object]:
    document: dict[str, object] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return document


def test_every_datagate_variable_in_compose_and_dockerfile_is_a_setting() -> None:
    known = {f"DATAGATE_{name.upper()}" for name in Settings.model_fields}
    text = (REPO / "docker-compose.yml").read_text() + (REPO / "Dockerfile").read_text()
    used = set(re.findall(r"\bDATAGATE_[A-Z_]+\b", text))
    assert used
    assert used <= known, used - known


def test_gateway_waits_for_migrations_which_wait_for_a_healthy_database() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    assert (
        services["gateway"]["depends_on"]["migrate"]["condition"]
        == "service_completed_successfully"
    )
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["datagate", "db", "upgrade"]
    database_url = services["gateway"]["environment"]["DATAGATE_DATABASE_URL"]
    assert database_url.startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in database_url


def test_no_secret_is_baked_into_the_image_or_the_compose_file() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "PII_KEY" not in dockerfile
    assert "ADMIN_KEY" not in dockerfile
    assert re.search(r"^USER (?!root)", dockerfile, re.MULTILINE)
    services = _compose()["services"]
    assert isinstance(services, dict)
    env = services["gateway"]["environment"]
    assert env["DATAGATE_PII_KEY"].startswith("${")
    assert env["DATAGATE_ADMIN_KEY"].startswith("${")
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${")
