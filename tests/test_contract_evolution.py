"""Contracts that evolve: every change between two versions classified for backward and forward
compatibility, offline (`datagate contracts diff`) and from the history the gateway keeps."""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.contracts import load_contract_path
from gateway.db import unit_of_work
from gateway.evolution import judge
from privacy import PiiEngine
from tests.conftest import admin_client, settings_for

DATAGATE = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "datagate")

BASE = """
import pandera.polars as pa
import polars as pl


class Orders(pa.DataFrameModel):
    order_id: pl.Int32 = pa.Field(unique=True, ge=1)
    email: str = pa.Field(metadata={{"pii": "EMAIL_ADDRESS", "redact": "hash"}})
    country: str = pa.Field(isin=["US", "DE"])
    amount: float = pa.Field(le=100)
    code: str = pa.Field(str_matches=r"^[A-Z]{{3}}$")
    note: str = pa.Field(nullable=False)
{extra}
    class Config:
        name = "orders"
        strict = True
        metadata = {{"version": "{version}", "compatibility": "{mode}"}}
"""


def contract(tmp_path: Path, name: str, edit: Any = None, **fields: str) -> dict[str, Any]:
    text = textwrap.dedent(
        BASE.format(
            extra=fields.get("extra", ""),
            version=fields.get("version", "1.0.0"),
            mode=fields.get("mode", "backward"),
        )
    )
    if edit is not None:
        old, new = edit
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    catalog = load_contract_path(path)
    assert not catalog.errors, catalog.errors
    return catalog.require("orders").definition


# (what changes, expected (kind, column, backward, forward)).
CASES: list[tuple[str, dict[str, Any], tuple[str, str | None, bool | None, bool | None]]] = [
    (
        "an optional column added",
        {"extra": "    channel: str | None = pa.Field(nullable=True, required=False)\n"},
        ("column_added", "channel", True, True),
    ),
    (
        "a required column added",
        {"extra": "    channel: str\n"},
        ("column_added", "channel", False, True),
    ),
    (
        "a column removed under strict",
        {"edit": ("    note: str = pa.Field(nullable=False)\n", "")},
        ("column_removed", "note", False, False),
    ),
    (
        "a dtype widened",
        {"edit": ("order_id: pl.Int32", "order_id: pl.Int64")},
        ("dtype_widened", "order_id", True, False),
    ),
    (
        "a dtype narrowed",
        {"edit": ("order_id: pl.Int32", "order_id: pl.Int16")},
        ("dtype_narrowed", "order_id", False, True),
    ),
    (
        "a dtype changed",
        {"edit": ("order_id: pl.Int32", "order_id: str")},
        ("dtype_changed", "order_id", False, False),
    ),
    (
        "nulls allowed",
        {"edit": ("note: str = pa.Field(nullable=False)", "note: str = pa.Field(nullable=True)")},
        ("nullability_loosened", "note", True, False),
    ),
    (
        "an isin widened",
        {"edit": ('isin=["US", "DE"]', 'isin=["US", "DE", "FR"]')},
        ("check_loosened", "country", True, False),
    ),
    (
        "an isin narrowed",
        {"edit": ('isin=["US", "DE"]', 'isin=["US"]')},
        ("check_tightened", "country", False, True),
    ),
    (
        "a lower bound raised",
        {"edit": ("ge=1)", "ge=5)")},
        ("check_tightened", "order_id", False, True),
    ),
    (
        "an upper bound raised",
        {"edit": ("le=100)", "le=200)")},
        ("check_loosened", "amount", True, False),
    ),
    (
        "a regex changed",
        {"edit": ("^[A-Z]{3}$", "^[A-Z]{3,4}$")},
        ("check_changed", "code", None, None),
    ),
    (
        "a check added",
        {"edit": ("amount: float = pa.Field(le=100)", "amount: float = pa.Field(le=100, ge=0)")},
        ("check_added", "amount", False, True),
    ),
    (
        "uniqueness dropped",
        {"edit": ("unique=True, ge=1", "ge=1")},
        ("unique_removed", "order_id", True, False),
    ),
    (
        "a PII action weakened",
        {
            "edit": (
                '"redact": "hash"}',
                '"redact": "keep", "justification": "joins in the warehouse"}',
            )
        },
        ("pii_weakened", "email", True, False),
    ),
    (
        "a declared rename",
        {
            "edit": (
                "    note: str = pa.Field(nullable=False)\n",
                '    remark: str = pa.Field(nullable=False, metadata={"renamed_from": "note"})\n',
            )
        },
        ("column_renamed", "remark", False, False),
    ),
]


@pytest.mark.parametrize(("label", "change", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_change_is_classified(
    tmp_path: Path,
    label: str,
    change: dict[str, Any],
    expected: tuple[str, str | None, bool | None, bool | None],
) -> None:
    old = contract(tmp_path, "old")
    new = contract(tmp_path, "new", change.get("edit"), extra=change.get("extra", ""))
    verdict = judge(old, new)
    found = [(c.kind, c.column, c.backward, c.forward) for c in verdict.changes]
    assert found == [expected], found
    breaking = expected[2] is not True
    if expected[0] == "pii_weakened":
        breaking = True  # whatever the mode
    assert bool(verdict.breaking) == breaking
    assert verdict.refused == breaking  # 1.0.0 → 1.0.0: no major bump


def test_modes_and_the_major_version_rule(tmp_path: Path) -> None:
    old = contract(tmp_path, "old")
    required = {"extra": "    channel: str\n"}
    forward = contract(tmp_path, "forward", mode="forward", **required)
    assert not judge(old, forward).breaking  # readers of the old shape read the new one
    full = contract(tmp_path, "full", mode="full", **required)
    assert judge(old, full).refused
    bumped = contract(tmp_path, "bumped", version="2.0.0", **required)
    verdict = judge(old, bumped)
    assert verdict.breaking
    assert not verdict.refused  # an incompatible change with a major bump is allowed
    weaker = contract(
        tmp_path,
        "weaker",
        ('"redact": "hash"}', '"redact": "keep", "justification": "x"}'),
        mode="none",
    )
    assert judge(old, weaker).refused  # a weaker PII handling is flagged in any mode


def test_the_diff_command_is_offline_markdown_with_exit_codes(tmp_path: Path) -> None:
    contract(tmp_path, "old")
    contract(tmp_path, "new", ('isin=["US", "DE"]', 'isin=["US"]'))
    contract(tmp_path, "next", ('isin=["US", "DE"]', 'isin=["US", "DE", "FR"]'))
    (tmp_path / "broken.py").write_text("import pandera.polars as pa\nclass X(pa.DataFrameModel\n")
    env = {"PATH": "/usr/bin:/bin", "DATAGATE_DATABASE_URL": "postgresql://nowhere:1/x"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DATAGATE, "contracts", "diff", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )

    refused = run("old.py", "new.py")
    assert refused.returncode == 1, refused.stderr
    assert "| check_tightened | country | isin: -DE | no | yes | **yes** |" in refused.stdout
    assert "**incompatible**" in refused.stdout
    fine = run("old.py", "next.py")
    assert fine.returncode == 0, fine.stderr
    assert "Mode `backward`: compatible." in fine.stdout
    as_json = run("old.py", "next.py", "--json")
    assert json.loads(as_json.stdout)["orders"]["changes"][0]["kind"] == "check_loosened"
    broken = run("old.py", "broken.py")
    assert broken.returncode == 2
    assert broken.stderr.count("\n") == 1
    assert "broken.py does not load" in broken.stderr


@pytest.fixture
def contracts_home(tmp_path: Path) -> Path:
    folder = tmp_path / "contracts"
    folder.mkdir()
    return folder


def _start(tmp_path: Path, folder: Path, database_url: str, engine: PiiEngine) -> TestClient:
    settings = settings_for(tmp_path / "home", folder, database_url=database_url)
    client = admin_client(create_app(settings, pii_engine=engine))
    client.__enter__()
    return client


@pytest.fixture
def history(
    tmp_path: Path, contracts_home: Path, database_url: str, pii_engine: PiiEngine
) -> Iterator[TestClient]:
    """A gateway that loaded orders 1.0.0, then (restarted) 1.1.0 with a wider isin."""
    contract(contracts_home, "orders")
    first = _start(tmp_path, contracts_home, database_url, pii_engine)
    first.__exit__(None, None, None)
    contract(
        contracts_home, "orders", ('isin=["US", "DE"]', 'isin=["US", "DE", "FR"]'), version="1.1.0"
    )
    client = _start(tmp_path, contracts_home, database_url, pii_engine)
    try:
        yield client
    finally:
        client.__exit__(None, None, None)


def test_history_keeps_every_version_with_its_code(history: TestClient) -> None:
    listed = history.get("/api/v1/contracts/orders/versions").json()["versions"]
    assert [(v["version"], v["active"]) for v in listed] == [("1.0.0", False), ("1.1.0", True)]
    assert all(v["last_active_at"] for v in listed)
    old = history.get(f"/api/v1/contracts/orders/versions/{listed[0]['fingerprint']}").json()
    assert 'isin=["US", "DE"]' in old["source"]
    assert 'isin=["US", "DE", "FR"]' not in old["source"]
    assert old["definition"]["metadata"]["version"] == "1.0.0"
    by_version = history.get("/api/v1/contracts/orders/versions/1.1.0").json()
    assert by_version["fingerprint"] == listed[1]["fingerprint"]
    assert history.get("/api/v1/contracts/orders/versions/9.9.9").status_code == 404


def test_the_diff_route_compares_two_versions(history: TestClient) -> None:
    diff = history.get("/api/v1/contracts/orders/diff", params={"from": "1.0.0"})
    assert diff.status_code == 200, diff.text
    body = diff.json()
    assert (body["from"], body["to"], body["mode"]) == ("1.0.0", "1.1.0", "backward")
    assert (body["compatible"], body["refused"]) == (True, False)
    kinds = {(c["kind"], c["column"], c["breaking"]) for c in body["changes"]}
    assert ("check_loosened", "country", False) in kinds
    back = history.get("/api/v1/contracts/orders/diff", params={"from": "1.1.0", "to": "1.0.0"})
    assert back.json()["refused"] is True
    assert ("check_tightened", "country", True) in {
        (c["kind"], c["column"], c["breaking"]) for c in back.json()["changes"]
    }


def test_an_incompatible_change_is_refused_at_load_and_the_old_version_serves(
    tmp_path: Path, contracts_home: Path, database_url: str, pii_engine: PiiEngine
) -> None:
    contract(contracts_home, "orders")
    first = _start(tmp_path, contracts_home, database_url, pii_engine)
    first.__exit__(None, None, None)
    # 1.1.0 refuses Germany: data valid under 1.0.0 would fail (backward), no major bump.
    contract(contracts_home, "orders", ('isin=["US", "DE"]', 'isin=["US"]'), version="1.1.0")
    client = _start(tmp_path, contracts_home, database_url, pii_engine)
    try:
        listed = client.get("/api/v1/contracts").json()
        (error,) = listed["errors"]
        assert error["file"] == str(contracts_home / "orders.py")
        assert "incompatible with 1.0.0 under compatibility 'backward'" in error["reason"]
        assert "check_tightened country: isin: -DE" in error["reason"]
        assert "1.0.0 stays active" in error["reason"]
        assert client.get("/api/v1/contracts/orders").json()["version"] == "1.0.0"
        assert client.get("/readyz").status_code == 503
        row = "order_id,email,country,amount,code,note\n1,a@example.com,DE,5,ABC,x\n"
        accepted = client.post("/api/v1/datasets/orders/uploads?format=csv", content=row)
        assert accepted.status_code == 201, accepted.text  # validated by 1.0.0
        assert accepted.json()["version"]["contract"]["version"] == "1.0.0"
        versions = client.get("/api/v1/contracts/orders/versions").json()["versions"]
        assert [v["version"] for v in versions] == ["1.0.0"]  # 1.1.0 was never active
    finally:
        client.__exit__(None, None, None)
    # The same change as 2.0.0 is allowed.
    contract(contracts_home, "orders", ('isin=["US", "DE"]', 'isin=["US"]'), version="2.0.0")
    client = _start(tmp_path, contracts_home, database_url, pii_engine)
    try:
        assert client.get("/api/v1/contracts").json()["errors"] == []
        assert client.get("/api/v1/contracts/orders").json()["version"] == "2.0.0"
    finally:
        client.__exit__(None, None, None)


def test_weaker_undeclared_pii_handling_is_flagged_in_every_mode(tmp_path: Path) -> None:
    old = contract(tmp_path, "old", mode="none")
    new = contract(
        tmp_path,
        "new",
        ('"compatibility": "none"}', '"compatibility": "none", "undeclared_pii": "warn"}'),
        mode="none",
    )
    verdict = judge(old, new)
    assert [(c.kind, c.privacy) for c in verdict.breaking] == [("pii_weakened", True)]
    assert verdict.refused


def test_without_its_recorded_code_the_old_version_cannot_serve(
    tmp_path: Path, contracts_home: Path, database_url: str, pii_engine: PiiEngine
) -> None:
    from sqlmodel import select

    from gateway.models import ContractVersion

    contract(contracts_home, "orders")
    first = _start(tmp_path, contracts_home, database_url, pii_engine)
    with unit_of_work(first.app.state.services.engine) as session:  # type: ignore[attr-defined]
        for row in session.exec(select(ContractVersion)):
            row.source = None  # as recorded before the history kept code
            session.add(row)
    first.__exit__(None, None, None)
    contract(contracts_home, "orders", ('isin=["US", "DE"]', 'isin=["US"]'), version="1.1.0")
    client = _start(tmp_path, contracts_home, database_url, pii_engine)
    try:
        refused = client.post("/api/v1/datasets/orders/uploads?format=csv", content=b"a\n1\n")
        assert refused.status_code == 503
        assert "could not be loaded again" in refused.json()["detail"]
    finally:
        client.__exit__(None, None, None)


def test_revalidation_runs_what_it_can_and_never_counts_redacted_checks_as_passed(
    tmp_path: Path, contracts_home: Path, database_url: str, pii_engine: PiiEngine
) -> None:
    contract(contracts_home, "orders")
    client = _start(tmp_path, contracts_home, database_url, pii_engine)
    rows = "order_id,email,country,amount,code,note\n"
    rows += "1,a@example.com,US,5,ABC,x\n2,b@example.com,DE,7,DEF,y\n"
    try:
        assert (
            client.post("/api/v1/datasets/orders/uploads?format=csv", content=rows).status_code
            == 201
        )
    finally:
        client.__exit__(None, None, None)
    # 2.0.0 refuses Germany (a major bump: allowed). Would version 1 still pass?
    contract(contracts_home, "orders", ('isin=["US", "DE"]', 'isin=["US"]'), version="2.0.0")
    client = _start(tmp_path, contracts_home, database_url, pii_engine)
    try:
        answer = client.post("/api/v1/contracts/orders/revalidate", json={})
        assert answer.status_code == 200, answer.text
        (result,) = answer.json()["versions"]
        assert (result["version"], result["valid"]) == (1, False)
        report = result["report"]
        failing = {(f["column"], f["check"], f["failing_rows"]) for f in report["failures"]}
        assert failing == {("country", "isin(['US'])", 1)}
        email = [a for a in report["assertions"] if a["column"] == "email"]
        assert email
        assert all(a["success"] is None for a in email)
        assert all(a["status"] == "not checkable on redacted data" for a in email)
        assert report["checks_not_checkable"] == len(email)
        assert report["checks_failed"] == 1
        under_old = client.post("/api/v1/contracts/orders/revalidate", json={"contract": "1.0.0"})
        assert under_old.status_code == 200, under_old.text
        assert under_old.json()["contract"]["version"] == "1.0.0"
        assert under_old.json()["versions"][0]["valid"] is True
        created = client.post(
            "/api/v1/keys", json={"role": "consumer", "name": "c", "datasets": ["customers"]}
        )
        other = {"Authorization": f"Bearer {created.json()['key']}"}
        refused = client.post("/api/v1/contracts/orders/revalidate", json={}, headers=other)
        assert refused.status_code == 403
        missing = client.post("/api/v1/contracts/orders/revalidate", json={"versions": [9]})
        assert missing.status_code == 404
        _revalidated_by_a_worker(client, answer.json()["versions"])
    finally:
        client.__exit__(None, None, None)


def _revalidated_by_a_worker(client: TestClient, expected: list[dict[str, Any]]) -> None:
    """Asked to run asynchronously (or over DATAGATE_REVALIDATE_SYNC_ROWS rows): 202, a job
    in the same transaction, and the same per-version reports once a worker ran it; one
    whose process died is queued again by recovery."""
    from sqlalchemy import text
    from sqlmodel import Session

    from gateway.jobs import procrastinate_app
    from gateway.models import Revalidation, utcnow
    from gateway.recovery import Recovery
    from gateway.revalidation import run_revalidation

    services = client.app.state.services  # type: ignore[attr-defined]
    on_postgres = services.engine.dialect.name == "postgresql"
    if on_postgres:  # `datagate worker` knows the task
        assert "datagate.revalidate" in procrastinate_app(services).tasks

    def worker_runs(revalidation_id: str) -> None:
        if not on_postgres:
            return  # this process's threads take it, on commit
        with Session(services.engine) as session:
            jobs = session.execute(
                text(
                    "SELECT args FROM procrastinate_jobs "
                    "WHERE task_name = 'datagate.revalidate' AND status = 'todo'"
                )
            ).all()
        assert [j.args for j in jobs] == [{"revalidation_id": revalidation_id}]
        run_revalidation(services, revalidation_id)  # what `datagate worker` does
        with unit_of_work(services.engine) as session:
            session.execute(text("UPDATE procrastinate_jobs SET status = 'succeeded'"))

    asked = client.post(
        "/api/v1/contracts/orders/revalidate", json={}, headers={"Prefer": "respond-async"}
    )
    assert asked.status_code == 202, asked.text
    assert asked.headers["Preference-Applied"] == "respond-async"
    job = asked.json()
    assert (job["status"], job["rows"], job["versions"], job["result"]) == ("queued", 2, [1], None)
    assert asked.headers["Location"] == job["links"]["self"]
    worker_runs(job["id"])
    done = client.get(asked.headers["Location"], params={"wait": 30}).json()
    assert (done["status"], done["versions_done"], done["error"]) == ("done", 1, None)
    assert done["result"]["versions"] == expected
    assert done["finished_at"].endswith("+00:00")
    elsewhere = client.get(f"/api/v1/contracts/customers/revalidations/{job['id']}")
    assert elsewhere.status_code == 404
    # Its process died mid-way: recovery queues it again, and it finishes.
    with unit_of_work(services.engine) as session:
        row = session.get(Revalidation, job["id"])
        assert row is not None
        row.status, row.instance, row.result = "running", "gone-instance", None
        row.started_at = utcnow() - timedelta(hours=2)  # a process nobody has seen for long
        session.add(row)
    if on_postgres:  # the dead worker's job is still "doing"
        with unit_of_work(services.engine) as session:
            session.execute(
                text(
                    "UPDATE procrastinate_jobs SET status = 'doing' "
                    "WHERE args->>'revalidation_id' = :id"
                ),
                {"id": job["id"]},
            )
    report = Recovery(services).run(orphans=False)
    assert report.requeued_revalidations == [job["id"]]
    worker_runs(job["id"])
    again = client.get(asked.headers["Location"], params={"wait": 30}).json()
    assert (again["status"], again["result"]["versions"]) == ("done", expected)
    # More stored rows than DATAGATE_REVALIDATE_SYNC_ROWS: a worker's, unasked.
    services.settings = services.settings.model_copy(update={"revalidate_sync_rows": 1})
    large = client.post("/api/v1/contracts/orders/revalidate", json={})
    assert large.status_code == 202
    assert "Preference-Applied" not in large.headers
    worker_runs(large.json()["id"])
    finished = client.get(large.headers["Location"], params={"wait": 30}).json()
    assert finished["status"] == "done"
    # No key fills the queue: a few may wait per dataset, more are refused until one ends.
    from gateway.revalidation import MAX_PENDING

    with unit_of_work(services.engine) as session:
        template = session.get(Revalidation, job["id"])
        assert template is not None
        for n in range(MAX_PENDING):  # as if no worker had taken these yet
            session.add(
                Revalidation(**{**template.model_dump(), "id": f"waiting-{n}", "status": "queued"})
            )
    busy = client.post(
        "/api/v1/contracts/orders/revalidate", json={}, headers={"Prefer": "respond-async"}
    )
    assert busy.status_code == 429
    assert busy.json()["type"].endswith("/too-busy")
    assert busy.headers["Retry-After"] == "30"


EXTRA = """
import pandera.polars as pa


class Leads(pa.DataFrameModel):
    lead_id: int

    class Config:
        name = "leads"
        strict = {strict}
        metadata = {{"version": "1.0.0", "extra_columns": "{extra}"}}
"""


@pytest.mark.parametrize("extra", ["reject", "drop", "keep"])
def test_extra_columns_are_rejected_dropped_or_kept_and_recorded(
    tmp_path: Path, contracts_home: Path, extra: str, pii_engine: PiiEngine
) -> None:
    from io import BytesIO

    import polars as pl
    from sqlmodel import Session, select

    from gateway.models import LineageEvent

    (contracts_home / "leads.py").write_text(EXTRA.format(strict=False, extra=extra))
    url = f"sqlite:///{tmp_path / 'leads.db'}"
    client = _start(tmp_path, contracts_home, url, pii_engine)
    try:
        body = "lead_id,referrer,contact\n1,web,ann.lee@example.com\n2,ads,bo.kim@example.org\n"
        answer = client.post("/api/v1/datasets/leads/uploads?format=csv", content=body)
        if extra == "reject":
            assert answer.status_code == 422
            checks = {f["check"] for f in answer.json()["report"]["failures"]}
            assert checks == {"column_in_schema"}
            return
        assert answer.status_code == 201, answer.text
        version = answer.json()["version"]
        done = "dropped" if extra == "drop" else "kept"
        assert version["validation"]["extra_columns"] == {
            "policy": extra,
            done: ["referrer", "contact"],
        }
        data = client.get("/api/v1/datasets/leads/versions/1/data").content
        stored = pl.read_parquet(BytesIO(data))
        if extra == "drop":
            assert stored.columns == ["lead_id"]
            return
        assert stored.columns == ["lead_id", "referrer", "contact"]
        assert "ann.lee@example.com" not in stored["contact"].to_list()  # undeclared PII redacted
        services = client.app.state.services  # type: ignore[attr-defined]
        with Session(services.engine) as session:
            events = session.exec(select(LineageEvent)).all()
        complete = next(e.payload for e in events if e.event_type == "COMPLETE")
        fields = {f["name"]: f for f in complete["outputs"][0]["facets"]["schema"]["fields"]}
        assert fields["referrer"]["description"].endswith("(extra_columns: keep)")
        assert "description" not in fields["lead_id"] or not fields["lead_id"]["description"]
    finally:
        client.__exit__(None, None, None)


@pytest.mark.parametrize(
    ("strict", "extra", "reason"),
    [
        (False, "explode", "extra_columns 'explode' must be one of reject, drop, keep"),
        (True, "keep", "extra_columns 'keep' contradicts Config.strict = True"),
    ],
)
def test_a_bad_extra_columns_is_a_load_error(
    tmp_path: Path, strict: bool, extra: str, reason: str
) -> None:
    (tmp_path / "leads.py").write_text(EXTRA.format(strict=strict, extra=extra))
    catalog = load_contract_path(tmp_path / "leads.py")
    assert catalog.contracts == {}
    assert reason in catalog.errors[0].reason


def test_recorded_code_changed_in_the_database_is_never_run(
    tmp_path: Path, contracts_home: Path, database_url: str, pii_engine: PiiEngine
) -> None:
    """Someone who can write the database cannot make the gateway run code of their own: the
    recorded code is run again only if its keyed MAC (key never in the database) holds."""
    from sqlmodel import select

    from gateway.models import ContractVersion

    marker = tmp_path / "ran"
    contract(contracts_home, "orders")
    first = _start(tmp_path, contracts_home, database_url, pii_engine)
    with unit_of_work(first.app.state.services.engine) as session:  # type: ignore[attr-defined]
        (row,) = session.exec(select(ContractVersion)).all()
        assert row.source_mac
        row.source = f"open({str(marker)!r}, 'w').write('x')\n" + (row.source or "")
        session.add(row)
    versions = first.get("/api/v1/contracts/orders/versions").json()["versions"]
    tampered = first.post(
        "/api/v1/contracts/orders/revalidate", json={"contract": versions[0]["fingerprint"]}
    )
    assert tampered.status_code == 409
    first.__exit__(None, None, None)
    # An incompatible 1.1.0 cannot fall back on the tampered 1.0.0 either: unavailable.
    contract(contracts_home, "orders", ('isin=["US", "DE"]', 'isin=["US"]'), version="1.1.0")
    client = _start(tmp_path, contracts_home, database_url, pii_engine)
    try:
        answer = client.post("/api/v1/datasets/orders/uploads?format=csv", content=b"a\n1\n")
        assert answer.status_code == 503
    finally:
        client.__exit__(None, None, None)
    assert not marker.exists()
