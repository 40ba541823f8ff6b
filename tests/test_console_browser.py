"""The console in a real browser: Debian's chromium driven by Playwright against a live
`datagate serve`. Sign in per role, visit every page, click through the lineage graph, check
scope denials, escaped payloads (no script runs, no markup renders), axe-core's accessibility
checks, phone width and the keyboard. A screenshot of each page is kept, per role, under
``test-artifacts/screenshots/`` (or ``$DATAGATE_TEST_ARTIFACTS/screenshots/``).

Without chromium the tests skip with the reason (never when CI is set: `.ci/run` installs it)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    ADMIN_HEADERS,
    CONTRACTS,
    QUARANTINING_SIGNUPS,
    TEST_ADMIN_KEY,
    csv_bytes,
    producer_event,
)
from tests.serve import ServeProcess

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
AXE = Path(__file__).parent / "data" / "axe" / "axe.min.js"
ARTIFACTS = Path(
    os.environ.get("DATAGATE_TEST_ARTIFACTS") or Path(__file__).parents[1] / "test-artifacts"
)
SCREENSHOTS = ARTIFACTS / "screenshots"
HOSTILE_JOB = "<script>window.__pwned = 1</script>"
RUN_ID = "01900000-0000-7000-8000-0000000000bb"
HOSTILE_DATASET = '<img src=x onerror="window.__pwned = 2">'


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium must be installed in CI (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, chromium: str) -> Iterator[str]:
    """A `datagate serve` on SQLite with the example contracts and some history."""
    from gateway.samples import customers

    home = tmp_path_factory.mktemp("console")
    contracts = home / "contracts"
    shutil.copytree(CONTRACTS, contracts)
    (contracts / "signups.py").write_text(QUARANTINING_SIGNUPS)
    process = ServeProcess(
        home / "home",
        f"sqlite:///{home / 'db.sqlite'}",
        home / "server.log",
        env={"DATAGATE_CONTRACTS_DIR": str(contracts)},
    )
    try:
        base = process.wait_ready().base
        with httpx.Client(base_url=base, headers=ADMIN_HEADERS, timeout=60) as api:
            for seed in (3, 4):
                stored = api.post(
                    "/api/v1/datasets/customers/uploads",
                    content=csv_bytes(customers(40, seed=seed)),
                    headers={"Content-Type": "text/csv"},
                )
                assert stored.status_code == 201, stored.text
            trained = api.post(
                "/api/v1/training-runs",
                json={
                    "model": {"name": "churn", "version": "1"},
                    "inputs": [{"dataset": "customers", "version": 2}],
                },
            )
            assert trained.status_code == 201
            posted = api.post(
                "/api/v1/lineage",
                json=producer_event(
                    HOSTILE_JOB,
                    "customers",
                    HOSTILE_DATASET,
                    "01900000-0000-7000-8000-0000000000bb",
                ),
            )
            assert posted.status_code in (200, 201), posted.text
            held = api.post(
                "/api/v1/datasets/signups/uploads",
                content=b"signup_id,email,age\n1,ann@example.com,30\n2,bo@example.org,-1\n",
                headers={"Content-Type": "text/csv"},
            )
            assert held.status_code == 201, held.text
        yield base
    finally:
        process.stop()


PAGES = {
    "datasets": "/ui",
    "dataset": "/ui/datasets/customers",
    "version": "/ui/datasets/customers/versions/2",
    "runs": "/ui/runs",
    "lineage": "/ui/lineage?node=dataset:datagate:customers&depth=2",
    "provenance": "/ui/models/churn?version=1",
    "impact": "/ui/datasets/customers/versions/2/impact",
    "audit": "/ui/audit",
    "quarantine": "/ui/quarantine",
    "keys": "/ui/keys",
    "privacy": "/ui/privacy",
}


def _key(base: str, role: str, datasets: list[str] | None = None) -> str:
    body: dict[str, Any] = {"role": role, "name": f"browser-{role}"}
    if datasets is not None:
        body["datasets"] = datasets
    created = httpx.post(f"{base}/api/v1/keys", json=body, headers=ADMIN_HEADERS, timeout=30)
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


def _signed_in(browser: Any, base: str, key: str, **options: Any) -> Any:
    context = browser.new_context(base_url=base, **options)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
    page.goto("/ui")
    assert page.url.endswith("/ui/signin")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui")
    page.problems = problems
    return page


def _axe(page: Any) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']}: {v['help']}" for v in result["violations"]]


def _shots(role: str) -> Path:
    """A fresh folder for one role's screenshots (kept after the run, for people to look at)."""
    shots = SCREENSHOTS / role
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    return shots


def test_every_page_in_a_real_browser(live: str, browser: Any) -> None:
    shots = _shots("admin")
    page = _signed_in(browser, live, TEST_ADMIN_KEY)
    for name, path in PAGES.items():
        response = page.goto(path)
        assert response is not None
        assert response.status == 200, (name, response.status)
        if name == "version":
            page.wait_for_selector("text=rows matched by", timeout=10_000)  # htmx loaded it
            with page.expect_download() as download:  # the session, not a bearer key
                page.click("a:has-text('CSV')")
            saved = Path(download.value.path())
            assert download.value.suggested_filename == "customers-v2.csv"
            assert saved.read_text().startswith("customer_id,")
        if name == "lineage":
            page.wait_for_function(
                "() => document.getElementById('graph').explorer.nodes().length > 3"
            )
            before = page.evaluate("() => document.getElementById('graph').explorer.nodes().length")
            page.evaluate(
                "() => { const cy = document.getElementById('graph').explorer;"
                " cy.nodes().filter(n => n.data('kind') === 'model').emit('tap'); }"
            )
            page.wait_for_timeout(500)
            after = page.evaluate("() => document.getElementById('graph').explorer.nodes().length")
            assert after >= before
            assert page.evaluate("() => document.querySelectorAll('img[src=x]').length") == 0
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        if name == "provenance":  # printable: the report alone, kept as a PDF too
            page.emulate_media(media="print")
            assert (
                page.evaluate("() => getComputedStyle(document.querySelector('header')).display")
                == "none"
            )
            page.pdf(path=str(shots / "provenance.pdf"))
            page.emulate_media(media="screen")
    # Nothing others wrote ran or rendered as markup, and nothing broke the CSP.
    assert page.evaluate("() => window.__pwned === undefined")
    assert not [p for p in page.problems if "Content Security Policy" in p or "dialog" in p], (
        page.problems
    )
    page.goto(_contract_diff_url(live))
    page.wait_for_selector("h1")
    page.screenshot(path=str(shots / "contract_diff.png"), full_page=True)
    assert len(list(shots.glob("*.png"))) == len(PAGES) + 1


def _contract_diff_url(base: str) -> str:
    """A contract's changes between two of its versions (one against itself: none)."""
    with httpx.Client(base_url=base, headers=ADMIN_HEADERS, timeout=30) as api:
        fingerprint = api.get("/api/v1/contracts/customers").json()["fingerprint"]
    return f"/ui/contracts/customers/diff?old={fingerprint}&new={fingerprint}"


def _batch_url(base: str) -> str:
    listed = httpx.get(f"{base}/api/v1/quarantine", headers=ADMIN_HEADERS, timeout=30)
    return f"/ui/quarantine/{listed.json()['batches'][0]['id']}"


def test_pages_pass_axe_at_desktop_and_phone_width(live: str, browser: Any) -> None:
    # axe is injected by the test, so this context lets it past the CSP.
    for width, height in ((1280, 800), (390, 844)):
        page = _signed_in(
            browser,
            live,
            TEST_ADMIN_KEY,
            bypass_csp=True,
            viewport={"width": width, "height": height},
        )
        for path in [*PAGES.values(), _batch_url(live), _contract_diff_url(live)]:
            page.goto(path)
            assert _axe(page) == [], (width, path)
            overflow = page.evaluate("() => document.documentElement.scrollWidth")
            assert overflow <= width + 1, (width, path, overflow)
        page.goto("/ui")
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"


def test_a_scoped_key_is_denied_beyond_its_scope(live: str, browser: Any) -> None:
    shots = _shots("consumer")
    page = _signed_in(browser, live, _key(live, "consumer", ["transactions"]))
    assert page.locator("a[href='/ui/datasets/customers']").count() == 0
    page.screenshot(path=str(shots / "datasets.png"), full_page=True)
    denied = page.goto("/ui/datasets/customers")
    assert denied is not None
    assert denied.status == 404
    page.screenshot(path=str(shots / "denied.png"), full_page=True)
    assert page.goto("/ui/keys").status == 404
    assert page.goto("/ui/audit").status == 404
    page.click("text=Sign out")
    page.wait_for_url("**/ui/signin")


def test_each_role_signs_in_and_a_reviewer_replays_held_rows(live: str, browser: Any) -> None:
    for role, datasets in (("auditor", None), ("producer", ["signups"])):
        shots = _shots(role)
        page = _signed_in(browser, live, _key(live, role, datasets))
        assert page.locator("text=Sign out").count() == 1
        page.goto("/ui/quarantine")
        page.click("a[href^='/ui/quarantine/']")
        page.screenshot(path=str(shots / "batch.png"), full_page=True)
        if role == "auditor":  # looks, never acts
            assert page.locator("text=Replay under the current contract").count() == 0
            continue
        assert "bo@example.org" not in page.content()  # the held row's PII as a placeholder
        page.click("button:has-text('Replay')")
        page.wait_for_selector("text=Replayed: 0 row(s) released, 1 still held.")
        page.fill("#reason", "ages below zero")
        page.click("button:has-text('Discard')")
        page.wait_for_selector("text=Discarded: the held rows and their key are destroyed.")
        page.screenshot(path=str(shots / "discarded.png"), full_page=True)
