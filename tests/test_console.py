"""The web console through the ASGI app: sign-in with an API key for a server-side session,
CSRF on every form, a Content-Security-Policy without inline code, scopes as in the API,
everything escaped, every page and action (the browser tests: test_console_browser.py)."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from gateway.app import create_app
from gateway.db import unit_of_work
from gateway.models import AuditEntry, UiSession
from privacy import PiiEngine
from tests.conftest import (
    QUARANTINING_SIGNUPS,
    TEST_ADMIN_KEY,
    admin_client,
    contract_folder,
    producer_event,
    settings_for,
)

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
HOSTILE = '<img src=x onerror="alert(1)">'
CONTRACT = f'''
import pandera.polars as pa


class Notes(pa.DataFrameModel):
    """{HOSTILE}"""

    note_id: int

    class Config:
        name = "notes"
        metadata = {{"version": "1.0.0"}}
'''


@pytest.fixture
def console(tmp_path: Path, database_url: str, pii_engine: PiiEngine) -> Iterator[TestClient]:
    other = CONTRACT.replace("Notes", "Other").replace('"notes"', '"other"')
    folder = contract_folder(tmp_path, notes=CONTRACT, other=other)
    settings = settings_for(tmp_path / "home", folder, database_url=database_url)
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        for dataset in ("notes", "other"):
            stored = client.post(
                f"/api/v1/datasets/{dataset}/uploads?format=csv", content="note_id\n1\n"
            )
            assert stored.status_code == 201, stored.text
        yield client


def sign_in(client: TestClient, key: str) -> Any:
    page = client.get("/ui/signin")
    return client.post(
        "/ui/signin",
        data={"csrf": _csrf(page.text), "key": key},
        follow_redirects=False,
        headers={"Authorization": ""},
    )


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_a_browser_signs_in_with_a_key_for_a_session(console: TestClient) -> None:
    # The front page leads a browser to the console.
    front = console.get("/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert front.headers["location"] == "/ui"
    assert console.get("/ui", follow_redirects=False).headers["location"] == "/ui/signin"
    page = console.get("/ui/signin")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    for reference in ASSET.findall(page.text):  # every asset from the gateway itself
        assert "//" not in reference, reference
        assert console.get(urljoin("/ui/signin", reference)).status_code == 200, reference
    assert "<script>" not in page.text  # no inline script
    # No CSRF token: refused; a wrong key: refused, and audited.
    stolen = console.post("/ui/signin", data={"key": TEST_ADMIN_KEY}, follow_redirects=False)
    assert stolen.status_code == 403
    wrong = sign_in(console, "dg_not_a_key")
    assert wrong.status_code == 401
    assert "Unknown, revoked or expired key." in wrong.text
    signed = sign_in(console, TEST_ADMIN_KEY)
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"]
    assert "datagate_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/ui" in cookie
    assert "Max-Age=28800" in cookie  # DATAGATE_UI_SESSION_HOURS, 8 by default
    assert "secure" not in cookie.lower()  # plain http in development (production: below)
    assert TEST_ADMIN_KEY not in cookie
    services = console.app.state.services  # type: ignore[attr-defined]
    token = console.cookies.get("datagate_session")
    with Session(services.engine) as session:
        (row,) = session.exec(select(UiSession)).all()
    assert row.id != token  # only its SHA-256 is stored
    home = console.get("/ui")
    assert home.status_code == 200
    assert 'href="/ui/datasets/notes"' in home.text
    # Whatever others wrote is text, never markup (here a contract's description).
    notes = console.get("/ui/datasets/notes")
    assert notes.status_code == 200
    assert HOSTILE not in notes.text
    assert "&lt;img src=x onerror=" in notes.text
    assert "v1" in notes.text
    # Signing out needs the session's CSRF token.
    csrf = _csrf(home.text)
    forged = console.post("/ui/signout", data={"csrf": "forged"}, follow_redirects=False)
    assert forged.status_code == 403
    out = console.post("/ui/signout", data={"csrf": csrf}, follow_redirects=False)
    assert out.headers["location"] == "/ui/signin"
    assert console.get("/ui", follow_redirects=False).status_code == 303
    with Session(services.engine) as session:
        actions = session.exec(
            select(AuditEntry.action, AuditEntry.outcome).where(
                AuditEntry.action.in_(("SIGNIN /ui", "SIGNOUT /ui"))  # type: ignore[attr-defined]
            )
        ).all()
    assert sorted(actions) == [("SIGNIN /ui", 200), ("SIGNIN /ui", 401), ("SIGNOUT /ui", 200)]


@pytest.mark.postgres
def test_in_production_the_console_cookies_are_secure(
    tmp_path: Path, fresh_postgres_url: str, pii_engine: PiiEngine
) -> None:
    settings = settings_for(tmp_path / "home", database_url=fresh_postgres_url, env="production")
    with TestClient(create_app(settings, pii_engine=pii_engine), base_url="https://dg") as browser:
        form_cookie = browser.get("/ui/signin").headers["set-cookie"]
        assert "datagate_signin=" in form_cookie
        assert "; Secure" in form_cookie
        signed = sign_in(browser, TEST_ADMIN_KEY)
        assert signed.status_code == 303
        (session_cookie,) = [
            c for c in signed.headers.get_list("set-cookie") if "datagate_session=" in c
        ]
        assert "; Secure" in session_cookie
        assert "HttpOnly" in session_cookie
        assert browser.get("/ui").status_code == 200  # sent back over https


def test_a_scoped_key_sees_its_datasets_only_and_revoking_it_ends_the_session(
    console: TestClient,
) -> None:
    created = console.post(
        "/api/v1/keys", json={"role": "consumer", "name": "analyst", "datasets": ["notes"]}
    ).json()
    browser = TestClient(console.app)
    assert sign_in(browser, created["key"]).status_code == 303
    home = browser.get("/ui")
    assert "/ui/datasets/notes" in home.text
    assert "/ui/datasets/other" not in home.text
    assert browser.get("/ui/datasets/other").status_code == 404
    assert console.delete(f"/api/v1/keys/{created['id']}").status_code in (200, 204)
    assert browser.get("/ui", follow_redirects=False).headers["location"] == "/ui/signin"


def test_a_version_page_shows_its_story_and_loads_its_changes(console: TestClient) -> None:
    second = console.post("/api/v1/datasets/notes/uploads?format=csv", content="note_id\n1\n2\n")
    assert second.status_code == 201
    auditor = console.post("/api/v1/keys", json={"role": "auditor", "name": "audit"}).json()
    for key, downloads in ((TEST_ADMIN_KEY, True), (auditor["key"], False)):
        browser = TestClient(console.app)
        assert sign_in(browser, key).status_code == 303
        page = browser.get("/ui/datasets/notes/versions/2")
        assert page.status_code == 200
        assert "<td>note_id</td><td>Int64</td>" in page.text
        assert "Against the previous version, v1" in page.text
        assert ("?format=parquet" in page.text) is downloads  # an auditor never gets data
        assert 'hx-get="/ui/datasets/notes/versions/2/changes"' in page.text
        changes = browser.get("/ui/datasets/notes/versions/2/changes")
        assert "1 added, 0 removed" in changes.text
    # Data is downloaded with the session (a link cannot carry a bearer key), audited as the
    # API's download is; an auditor gets none.
    admin = TestClient(console.app)
    assert sign_in(admin, TEST_ADMIN_KEY).status_code == 303
    link = "/ui/datasets/notes/versions/2/data"
    assert f'href="{link}?format=csv"' in admin.get("/ui/datasets/notes/versions/2").text
    csv = admin.get(link, params={"format": "csv"})
    assert csv.status_code == 200
    assert csv.text == console.get("/api/v1/datasets/notes/versions/2/data?format=csv").text
    assert "attachment" in csv.headers["content-disposition"]
    parquet = admin.get(link)
    assert parquet.content.startswith(b"PAR1")
    assert admin.get(link, params={"format": "xlsx"}).status_code == 404
    assert admin.get("/ui/datasets/notes/versions/7/data").status_code == 404
    assert browser.get(link).status_code == 404  # the auditor
    assert "note_id" not in browser.get(link).text
    services = console.app.state.services  # type: ignore[attr-defined]
    with Session(services.engine) as session:
        fetched = session.exec(
            select(AuditEntry.role, AuditEntry.target, AuditEntry.outcome).where(
                AuditEntry.action == "GET /api/v1/datasets/{dataset}/versions/{version}/data"
            )
        ).all()
    assert sorted(fetched) == sorted(
        [
            ("admin", "/api/v1/datasets/notes/versions/2/data", 200),  # the API's own
            ("admin", "/api/v1/datasets/notes/versions/2/data", 200),
            ("admin", "/api/v1/datasets/notes/versions/2/data", 200),
            ("admin", "/api/v1/datasets/notes/versions/2/data", 404),
            ("admin", "/api/v1/datasets/notes/versions/7/data", 404),
            ("auditor", "/api/v1/datasets/notes/versions/2/data", 403),
            ("auditor", "/api/v1/datasets/notes/versions/2/data", 403),
        ]
    )
    # A deleted version's data is gone (410); its page still tells its story.
    from gateway.lifecycle import tombstone
    from gateway.store import lock_dataset, version_by_number

    with unit_of_work(services.engine) as session:
        notes = lock_dataset(session, "notes")
        objects = tombstone(
            session,
            services.snapshots,
            notes,
            [version_by_number(session, notes, 1)],
            reason="retention",
            actor="test",
            namespace="datagate",
        )
    for key in objects:
        services.snapshots.delete(key)
    gone = admin.get("/ui/datasets/notes/versions/1/data", params={"format": "csv"})
    assert gone.status_code == 410
    assert "was deleted" in gone.text
    story = admin.get("/ui/datasets/notes/versions/1")
    assert "The data of this version was deleted (retention" in story.text
    assert "/versions/1/data" not in story.text  # no download link
    first = browser.get("/ui/datasets/notes/versions/1/changes")
    assert "The first version." in first.text
    assert browser.get("/ui/datasets/notes/versions/9").status_code == 404


def test_runs_are_listed_by_status_with_refused_reports_as_tables(console: TestClient) -> None:
    refused = console.post(
        "/api/v1/datasets/notes/uploads?format=csv", content="note_id\nnot-a-number\n"
    )
    assert refused.status_code == 422
    browser = TestClient(console.app)
    assert sign_in(browser, TEST_ADMIN_KEY).status_code == 303
    page = browser.get("/ui/runs", params={"status": "rejected"})
    assert page.status_code == 200
    assert page.text.count('class="run"') == 1
    assert "<td>note_id</td><td>dtype(&#39;Int64&#39;)</td><td>1</td>" in page.text
    every = browser.get("/ui/runs")
    assert every.text.count('class="run"') == 3  # two stored, one refused
    scoped = console.post("/api/v1/keys", json={"role": "producer", "datasets": ["other"]})
    other = TestClient(console.app)
    assert sign_in(other, scoped.json()["key"]).status_code == 303
    assert other.get("/ui/runs").text.count('class="run"') == 1  # other's upload only


def test_auditors_walk_from_a_version_to_its_models_and_back(console: TestClient) -> None:
    trained = console.post(
        "/api/v1/training-runs",
        json={
            "model": {"name": "triage", "version": "4"},
            "inputs": [{"dataset": "notes", "version": 1}],
        },
    )
    assert trained.status_code == 201
    auditor = console.post("/api/v1/keys", json={"role": "auditor", "name": "audit"}).json()
    browser = TestClient(console.app)
    assert sign_in(browser, auditor["key"]).status_code == 303
    impact = browser.get("/ui/datasets/notes/versions/1/impact")
    assert impact.status_code == 200
    assert 'href="/ui/models/triage?version=4"' in impact.text
    exported = browser.get("/ui/datasets/notes/versions/1/impact.md")
    assert exported.headers["content-type"].startswith("text/markdown")
    expected = console.get("/api/v1/audit/datasets/notes/versions/1/impact?format=md").text
    assert exported.text == expected  # the API's Markdown
    assert "triage" in exported.text
    assert browser.get("/ui/datasets/notes/versions/9/impact.md").status_code == 404
    provenance = browser.get("/ui/models/triage", params={"version": "4"})
    assert provenance.status_code == 200
    assert '<a href="/ui/datasets/notes/versions/1">notes</a></td><td>1</td>' in provenance.text
    digest = console.get("/api/v1/datasets/notes/versions/1").json()["content_hash"]
    assert f"<code>{digest[:12]}</code>" in provenance.text
    markdown = browser.get("/ui/models/triage/provenance.md", params={"version": "4"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "# Provenance of model triage version 4" in markdown.text
    assert browser.get("/ui/models/triage", params={"version": "9"}).status_code == 404
    audit = browser.get("/ui/audit", params={"actor": "audit"})
    assert "SIGNIN /ui" in audit.text
    # A producer sees none of it.
    producer = console.post("/api/v1/keys", json={"role": "producer", "datasets": ["notes"]})
    other = TestClient(console.app)
    assert sign_in(other, producer.json()["key"]).status_code == 303
    assert other.get("/ui/audit").status_code == 404
    assert other.get("/ui/models/triage", params={"version": "4"}).status_code == 404
    assert other.get("/ui/datasets/notes/versions/1/impact.md").status_code == 404


def test_held_rows_are_reviewed_replayed_and_discarded_in_the_console(
    tmp_path: Path, database_url: str, pii_engine: PiiEngine
) -> None:
    folder = contract_folder(tmp_path, signups=QUARANTINING_SIGNUPS)
    settings = settings_for(tmp_path / "home", folder, database_url=database_url)
    body = "signup_id,email,age\n1,ann@example.com,30\n2,held.person@example.org,-1\n"
    with admin_client(create_app(settings, pii_engine=pii_engine)) as api:
        stored = api.post("/api/v1/datasets/signups/uploads?format=csv", content=body)
        assert stored.status_code == 201, stored.text
        batch = stored.json()["quarantine"]["id"]
        producer = api.post("/api/v1/keys", json={"role": "producer", "datasets": ["signups"]})
        auditor = api.post("/api/v1/keys", json={"role": "auditor"})
        watcher = TestClient(api.app)
        assert sign_in(watcher, auditor.json()["key"]).status_code == 303
        seen = watcher.get(f"/ui/quarantine/{batch}")
        assert seen.status_code == 200
        assert "held.person@example.org" not in seen.text
        assert "&lt;EMAIL_ADDRESS&gt;" in seen.text
        assert "Replay under the current contract" not in seen.text  # auditors only look
        looked = watcher.post(f"/ui/quarantine/{batch}/replay", data={"csrf": _csrf(seen.text)})
        assert looked.status_code == 403  # refused, and audited as the API's refusal is
        reviewer = TestClient(api.app)
        assert sign_in(reviewer, producer.json()["key"]).status_code == 303
        listed = reviewer.get("/ui/quarantine")
        assert f'href="/ui/quarantine/{batch}"' in listed.text
        page = reviewer.get(f"/ui/quarantine/{batch}")
        csrf = _csrf(page.text)
        forged = reviewer.post(f"/ui/quarantine/{batch}/discard", data={"csrf": "x", "reason": "r"})
        assert forged.status_code == 403
        replayed = reviewer.post(f"/ui/quarantine/{batch}/replay", data={"csrf": csrf})
        assert "Replayed: 0 row(s) released, 1 still held." in replayed.text
        discarded = reviewer.post(
            f"/ui/quarantine/{batch}/discard",
            data={"csrf": csrf, "reason": "bad ages, asked held.person@example.org"},
        )
        assert "Discarded" in discarded.text
        assert "held.person@example.org" not in discarded.text
        services = api.app.state.services  # type: ignore[attr-defined]
        with Session(services.engine) as session:
            audited = session.exec(
                select(AuditEntry.role, AuditEntry.action, AuditEntry.outcome).where(
                    AuditEntry.target.like(f"/api/v1/quarantine/{batch}%")  # type: ignore[union-attr]
                )
            ).all()
        assert sorted(audited) == [  # held rows read in the console are audited like the API's
            ("auditor", "GET /api/v1/quarantine/{batch_id}", 200),
            ("auditor", "POST /api/v1/quarantine/{batch_id}/replay", 403),
            ("producer", "GET /api/v1/quarantine/{batch_id}", 200),
            ("producer", "POST /api/v1/quarantine/{batch_id}/discard", 200),
            ("producer", "POST /api/v1/quarantine/{batch_id}/replay", 200),
        ]


def test_admins_manage_keys_and_erase_a_subject_dry_run_first(console: TestClient) -> None:
    browser = TestClient(console.app)
    assert sign_in(browser, TEST_ADMIN_KEY).status_code == 303
    page = browser.get("/ui/keys")
    csrf = _csrf(page.text)
    made = browser.post(
        "/ui/keys",
        data={"csrf": csrf, "role": "consumer", "name": "reader", "datasets": "notes"},
    )
    assert made.status_code == 200
    secret = re.search(r"<code>(dg_[^<]+)</code>", made.text)
    assert secret is not None  # shown this once
    assert "dg_" not in browser.get("/ui/keys").text  # and never again
    reader = TestClient(console.app)
    assert sign_in(reader, secret.group(1)).status_code == 303
    assert reader.get("/ui/keys").status_code == 404  # admins only
    key_id = re.search(r"<code>([0-9a-f]{16})</code></td><td>reader</td>", made.text)
    assert key_id is not None
    revoked = browser.post("/ui/keys", data={"csrf": csrf, "revoke": key_id.group(1)})
    assert "revoked" in revoked.text
    typed = "<b>ann@example.org"  # what a user typed never lands in the trail
    unknown = browser.post("/ui/keys", data={"csrf": csrf, "revoke": typed})
    assert unknown.status_code == 404
    assert reader.get("/ui", follow_redirects=False).status_code == 303  # its session ended
    # Erasure: a dry run by default, the identifiers never shown back.
    subject = "someone.private@example.org"
    dry = browser.post("/ui/privacy", data={"csrf": csrf, "identifiers": subject})
    assert dry.status_code == 200
    assert "Would be erased (dry run)" in dry.text
    assert "Nothing stored holds this subject." in dry.text
    assert subject not in dry.text
    services = console.app.state.services  # type: ignore[attr-defined]
    with Session(services.engine) as session:
        actions = session.exec(
            select(AuditEntry.action, AuditEntry.target).where(
                AuditEntry.action.in_(  # type: ignore[attr-defined]
                    (
                        "POST /api/v1/keys",
                        "DELETE /api/v1/keys/{key_id}",
                        "POST /api/v1/privacy/subjects/erase",
                    )
                )
            )
        ).all()
    assert ("DELETE /api/v1/keys/{key_id}", f"/api/v1/keys/{key_id.group(1)}") in actions
    assert ("DELETE /api/v1/keys/{key_id}", "/api/v1/keys/{key_id}") in actions  # the typed one
    assert not [t for _, t in actions if "ann@" in str(t)]
    erase = [str(t) for a, t in actions if a == "POST /api/v1/privacy/subjects/erase"]
    assert len(erase) == 1
    assert erase[0].startswith("subject:")
    assert erase[0].endswith("(dry run)")


def test_the_lineage_explorer_escapes_what_producers_wrote(console: TestClient) -> None:
    hostile_job = "<script>alert('job')</script>"
    posted = console.post(
        "/api/v1/lineage",
        json=producer_event(hostile_job, "notes", HOSTILE, "01900000-0000-7000-8000-0000000000aa"),
    )
    assert posted.status_code in (200, 201), posted.text
    # A file name is anyone's text too.
    named = console.post(
        "/api/v1/datasets/notes/uploads",
        files={"file": (f"{HOSTILE}.csv", b"note_id\n1\n2\n", "text/csv")},
    )
    assert named.status_code == 201, named.text
    trained = console.post(
        "/api/v1/training-runs",
        json={
            "model": {"name": "ranker", "version": "2"},
            "inputs": [
                {"dataset": "notes", "version": 1},
                {"dataset": "notes", "version": named.json()["version"]["version"]},
            ],
        },
    )
    assert trained.status_code == 201
    browser = TestClient(console.app)
    assert sign_in(browser, TEST_ADMIN_KEY).status_code == 303
    provenance = browser.get("/ui/models/ranker", params={"version": "2"})
    assert HOSTILE not in provenance.text
    assert "&lt;img src=x onerror=" in provenance.text
    page = browser.get("/ui/lineage", params={"node": "dataset:datagate:notes", "depth": 2})
    assert page.status_code == 200
    assert hostile_job not in page.text
    assert HOSTILE not in page.text
    assert "&lt;script&gt;alert(&#39;job&#39;)&lt;/script&gt;" in page.text
    assert "<td>1, 2</td>" in page.text  # the versions an edge carried
    for asset in ("/static/cytoscape/cytoscape.min.js", "/static/ui/lineage.js"):
        assert f'src="{asset}"' in page.text
        assert browser.get(asset).status_code == 200
    graph = browser.get(
        "/ui/lineage/graph.json", params={"node": "dataset:datagate:notes", "depth": 2}
    ).json()
    kinds = {n["label"]: n["kind"] for n in graph["nodes"]}
    assert kinds["ranker"] == "model"
    assert kinds[hostile_job] == "job"  # data for the script: set as text, never as markup
    assert browser.get("/ui/lineage", params={"node": "dataset:x:nothing"}).status_code == 404


def test_a_long_history_is_paged(console: TestClient) -> None:
    from gateway.ui.routes import VERSIONS_PER_PAGE

    for n in range(2, VERSIONS_PER_PAGE + 3):  # 52 versions in all
        stored = console.post(
            "/api/v1/datasets/notes/uploads?format=csv", content=f"note_id\n{n}\n"
        )
        assert stored.status_code == 201
    browser = TestClient(console.app)
    assert sign_in(browser, TEST_ADMIN_KEY).status_code == 303
    first = browser.get("/ui/datasets/notes")
    assert "52 versions, newest first" in first.text
    assert first.text.count("/ui/datasets/notes/versions/") == VERSIONS_PER_PAGE
    assert 'href="/ui/datasets/notes?page=1">Older' in first.text
    second = browser.get("/ui/datasets/notes", params={"page": 1})
    assert second.text.count("/ui/datasets/notes/versions/") == 2
    assert ">v1</a>" in second.text


def test_search_health_contract_history_and_the_audit_chain(
    tmp_path: Path, database_url: str, pii_engine: PiiEngine
) -> None:
    folder = contract_folder(tmp_path, notes=CONTRACT)
    settings = settings_for(tmp_path / "home", folder, database_url=database_url)
    with admin_client(create_app(settings, pii_engine=pii_engine)) as first:
        assert (
            first.post(
                "/api/v1/datasets/notes/uploads?format=csv", content="note_id\n1\n"
            ).status_code
            == 201
        )
    wider = (
        textwrap.dedent(CONTRACT)
        .replace(
            "    note_id: int\n",
            "    note_id: int\n    topic: str | None = pa.Field(nullable=True)\n",
        )
        .replace('"version": "1.0.0"', '"version": "1.1.0"')
    )
    (folder / "notes.py").write_text(wider)
    with admin_client(create_app(settings, pii_engine=pii_engine)) as api:
        browser = TestClient(api.app)
        assert sign_in(browser, TEST_ADMIN_KEY).status_code == 303
        found = browser.get("/ui", params={"q": "not"})
        assert 'href="/ui/datasets/notes"' in found.text
        assert "<td>accepted</td>" in found.text  # the last run's outcome
        assert 'href="/ui/datasets/notes"' not in browser.get("/ui", params={"q": "zzz"}).text
        page = browser.get("/ui/datasets/notes")
        assert "Contract history" in page.text
        link = re.search(r'href="(/ui/contracts/notes/diff\?[^"]+)"', page.text)
        assert link is not None
        diff = browser.get(link.group(1).replace("&amp;", "&"))
        assert diff.status_code == 200
        assert "Contract notes: 1.0.0 → 1.1.0" in diff.text
        assert "<td>column_added</td><td>topic</td>" in diff.text
        audit = browser.get("/ui/audit")
        csrf = _csrf(audit.text)
        verified = browser.post("/ui/audit/verify", data={"csrf": csrf})
        assert "Audit trail intact" in verified.text


def test_every_console_form_needs_the_sessions_csrf_token(console: TestClient) -> None:
    from fastapi.routing import APIRoute

    from gateway.ui import router

    browser = TestClient(console.app)
    assert sign_in(browser, TEST_ADMIN_KEY).status_code == 303
    forms = [
        r.path.replace("{batch_id}", "b").replace("{action}", "replay")
        for r in router.routes
        if isinstance(r, APIRoute) and "POST" in (r.methods or ()) and r.path != "/ui/signin"
    ]
    assert len(forms) >= 5
    for path in forms:
        for data in ({"csrf": "forged"}, {}):
            answer = browser.post(path, data=data, follow_redirects=False)
            assert answer.status_code == 403, path
    assert browser.get("/ui").status_code == 200  # still signed in: nothing was done


def test_odd_forms_are_refused_never_a_server_error(console: TestClient) -> None:
    crowded = {f"f{i}": "x" for i in range(20)}
    assert console.post("/ui/signin", data=crowded, follow_redirects=False).status_code == 403
    huge = console.post("/ui/signin", content=b"key=" + b"a" * 10_000, follow_redirects=False)
    assert huge.status_code == 403
    browser = TestClient(console.app)
    assert sign_in(browser, TEST_ADMIN_KEY).status_code == 303
    page = browser.get("/ui/keys")
    csrf = _csrf(page.text)
    made = browser.post("/ui/keys", data={"csrf": csrf, "role": "auditor", "name": "nul\x00name"})
    assert made.status_code == 200  # the field with a NUL is dropped: the default name
    assert "console-key (auditor)" in made.text


def test_a_key_signing_in_again_and_again_keeps_ten_sessions(engine: Any) -> None:
    from gateway.keys import create_key
    from gateway.ui.sessions import SESSIONS_PER_KEY, current, sign_in

    _, key = create_key(engine, "auditor", "often", None)
    tokens = [sign_in(engine, key, TEST_ADMIN_KEY, 8)[0] for _ in range(SESSIONS_PER_KEY + 3)]
    admin = [sign_in(engine, TEST_ADMIN_KEY, TEST_ADMIN_KEY, 8)[0] for _ in range(2)]
    live = [t for t in tokens if current(engine, t, TEST_ADMIN_KEY) is not None]
    assert live == tokens[3:]  # the oldest ended
    assert all(current(engine, t, TEST_ADMIN_KEY) is not None for t in admin)  # another key's
    with Session(engine) as session:
        assert len(session.exec(select(UiSession)).all()) == SESSIONS_PER_KEY + 2


def test_a_session_ends_when_it_expires_or_the_admin_key_changes(
    engine: Any,
) -> None:
    from gateway.ui.sessions import current, sign_in

    token, _ = sign_in(engine, TEST_ADMIN_KEY, TEST_ADMIN_KEY, 8)
    assert current(engine, token, TEST_ADMIN_KEY) is not None
    brief, _ = sign_in(engine, TEST_ADMIN_KEY, TEST_ADMIN_KEY, 1e-9)
    assert current(engine, brief, TEST_ADMIN_KEY) is None  # expired
    assert current(engine, token, "dg_a_new_admin_key_after_a_leak_0123456789") is None
    assert current(engine, token, None) is None  # unset
