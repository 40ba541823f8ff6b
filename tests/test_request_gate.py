"""Auth and size limits before any body is read; JSON bodies bounded, parsed off the event loop,
never a 500 however deep (finding 2)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select

import gateway.api.bodies
import gateway.api.lineage
from gateway.models import IngestRun, LineageEvent
from tests.conftest import ADMIN_HEADERS

JSON_ROUTES = [
    "/api/v1/keys",
    "/api/v1/training-runs",
    "/api/v1/privacy/subjects/search",
    "/api/v1/lineage",
]
BODY_ROUTES = [*JSON_ROUTES, "/api/v1/datasets/customers/uploads"]
CHUNK = b" " * 512 * 1024


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("203.0.113.9", 5555),
        "server": ("testserver", 80),
    }


def call(
    app: FastAPI,
    path: str,
    headers: dict[str, str],
    chunks: int,
    declared: int | None = None,
) -> tuple[int, dict[str, Any], int]:
    """POST straight into the ASGI app; returns status, problem body and body chunks read."""
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        more = read < chunks
        return {"type": "http.request", "body": CHUNK if read <= chunks else b"", "more_body": more}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if declared is not None:
        raw_headers.append((b"content-length", str(declared).encode()))
    scope = _scope(path, raw_headers)
    anyio.run(app, scope, receive, send)  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    problem = (
        json.loads(body)
        if dict(start["headers"]).get(b"content-type", b"").endswith(b"json")
        else {}
    )
    return start["status"], problem, read


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_no_body_byte_is_read_before_the_key_role_and_declared_size_are_checked(
    client: TestClient, path: str
) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]
    huge = 300 * 1024 * 1024  # 300 MB announced: refused without reading it
    status, problem, read = call(app, path, {"Content-Type": "application/json"}, 600, huge)
    assert (status, read) == (401, 0)
    assert problem["type"].endswith("/unauthorized")
    status, problem, read = call(app, path, dict(ADMIN_HEADERS), 600, huge)
    assert (status, read) == (413, 0)
    # A key of a role the route refuses: 403, and the (small) body is never read either.
    role = "producer" if path == "/api/v1/privacy/subjects/search" else "auditor"
    scope = {"datasets": ["transactions"]} if role == "producer" else {}
    key = client.post("/api/v1/keys", json={"role": role, **scope}).json()["key"]
    status, problem, read = call(app, path, {"Authorization": f"Bearer {key}"}, 1, 100)
    assert (status, read) == (403, 0)


CONSOLE_FORMS = [
    "/ui/signout",
    "/ui/keys",
    "/ui/privacy",
    "/ui/audit/verify",
    "/ui/quarantine/some-batch/replay",
]


@pytest.mark.parametrize("cookie", ["", "datagate_session=forged"])
def test_no_console_form_is_read_before_its_session_is_known(
    client: TestClient, cookie: str
) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]
    for path in CONSOLE_FORMS:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
        status, _, read = call(app, path, headers, 600)
        assert (status, read) == (403, 0), path


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_a_body_without_a_length_is_cut_off_at_the_limit(client: TestClient, path: str) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]
    limit = client.app.state.services.settings.max_lineage_event_bytes  # type: ignore[attr-defined]
    if path != "/api/v1/lineage":
        limit = client.app.state.services.settings.max_json_bytes  # type: ignore[attr-defined]
    status, problem, read = call(app, path, dict(ADMIN_HEADERS), 600)
    assert status == 413
    assert problem["type"].endswith("/body-too-large")
    assert read <= limit // len(CHUNK) + 1


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
def test_deeply_nested_json_is_a_400_never_a_500(client: TestClient, path: str, depth: int) -> None:
    for body in ('{"a":' * depth + "1" + "}" * depth, "[" * depth + "]" * depth):
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"


def _spy_on_loop(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[bool]:
    seen: list[bool] = []
    real: Callable[..., Any] = getattr(module, name)

    def spy(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:
            seen.append(False)
        return real(*args)

    monkeypatch.setattr(module, name, spy)
    return seen


def test_json_bodies_are_parsed_and_validated_off_the_event_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = _spy_on_loop(monkeypatch, gateway.api.bodies, "parse_json")
    validated = _spy_on_loop(monkeypatch, gateway.api.lineage, "validate_event")
    parsed_in_lineage = _spy_on_loop(monkeypatch, gateway.api.lineage, "parse_json")
    assert client.post("/api/v1/keys", json={"role": "auditor"}).status_code == 201
    client.post("/api/v1/lineage", json={"eventType": "START"})
    assert parsed == [False]
    assert parsed_in_lineage == [False]
    assert validated == [False]


def test_a_slow_or_aborted_upload_starts_no_run(client: TestClient) -> None:
    """200 slow connections used to leave 200 runs (finding 10): a run starts only once the
    whole body has arrived from an authorised caller."""
    app: FastAPI = client.app  # type: ignore[assignment]
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    released: anyio.Event | None = None  # created inside the event loop below
    runs_while_waiting: list[int] = []

    def count_runs() -> int:
        with Session(engine) as session:
            return len(session.exec(select(IngestRun)).all())

    async def scenario() -> None:
        nonlocal released
        released = anyio.Event()
        sent: list[dict[str, Any]] = []
        step = 0

        async def receive() -> dict[str, Any]:
            nonlocal step
            step += 1
            if step == 1:
                return {"type": "http.request", "body": b"customer_id\n1\n", "more_body": True}
            assert released is not None
            await released.wait()  # the client stalls, then goes away
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        headers = [(k.lower().encode(), v.encode()) for k, v in ADMIN_HEADERS.items()]
        scope = _scope("/api/v1/datasets/customers/uploads", headers)
        async with anyio.create_task_group() as group:
            group.start_soon(app, scope, receive, send)  # type: ignore[arg-type]
            await anyio.sleep(1.0)
            runs_while_waiting.append(await anyio.to_thread.run_sync(count_runs))
            released.set()

    anyio.run(scenario)
    assert runs_while_waiting == [0]
    assert count_runs() == 0
    with Session(engine) as session:
        assert session.exec(select(LineageEvent)).all() == []


NUL_REQUESTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/datasets/a%00b", None),
    ("GET", "/api/v1/datasets/a%00b/versions", None),
    ("GET", "/api/v1/runs/a%00", None),
    ("GET", "/api/v1/audit/log?actor=a%00", None),
    ("GET", "/api/v1/lineage?nodeId=dataset:a%00:b", None),
    ("GET", "/api/v1/audit/models/m%00/provenance?version=1", None),
    ("POST", "/api/v1/keys", {"role": "auditor", "name": "a\x00b"}),
    (
        "POST",
        "/api/v1/training-runs",
        {"model": {"name": "m", "version": "1"}, "inputs": [{"dataset": "x\x00", "version": 1}]},
    ),
    (
        "POST",
        "/api/v1/lineage",
        {
            "eventType": "START",
            "eventTime": "2026-01-01T00:00:00Z",
            "run": {"runId": "01a22965-7c30-7b9c-8b1e-302a02bdcca0"},
            "job": {"namespace": "ext", "name": "j\x00"},
            "producer": "https://example.org/p",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        },
    ),
]


@pytest.mark.parametrize(("method", "url", "body"), NUL_REQUESTS)
def test_a_nul_character_anywhere_is_a_400_never_a_500(
    client: TestClient, method: str, url: str, body: dict[str, Any] | None
) -> None:
    """PostgreSQL cannot store or even compare text holding NUL: schemathesis found the 500."""
    response = client.request(method, url, json=body)
    assert response.status_code == 400, response.text
    assert "NUL" in response.json()["detail"]


def test_no_route_lets_fastapi_read_a_body_before_its_authorisation() -> None:
    """A body parameter is read (and parsed) by FastAPI before any dependency runs, so before
    the key is checked: every route reads its body itself, after ``require``
    (``gateway.api.bodies.json_body``, or the upload streams)."""
    import importlib
    import pkgutil

    from fastapi import APIRouter
    from fastapi.routing import APIRoute

    import gateway.api
    from gateway.ui import router as console

    routes = [r for r in console.routes if isinstance(r, APIRoute)]
    for module in pkgutil.iter_modules(gateway.api.__path__):
        router = getattr(importlib.import_module(f"gateway.api.{module.name}"), "router", None)
        if isinstance(router, APIRouter):
            routes += [r for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 50
    declaring = [f"{r.methods} {r.path}" for r in routes if r.body_field is not None]
    assert declaring == []
