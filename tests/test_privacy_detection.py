"""PII detection: offline, deliberate entities, contract settings, undeclared columns, search."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from bench.generate import customers
from gateway.app import create_app
from gateway.settings import Settings
from privacy import DetectionConfig, PiiEngine, RedactionKey, redact_frame, scan_texts
from privacy.actions import encrypt_values
from privacy.recognizers import offline_tld_extractor
from tests.conftest import SPACY_MODEL, TEST_ADMIN_KEY, TEST_PII_KEY, admin_client, csv_bytes

PROBLEM = "application/problem+json"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Any attempt to open a connection fails the test."""
    attempts: list[object] = []
    this_thread = threading.get_ident()

    def refuse(*args: object, **kwargs: object) -> None:
        # Only this test's thread counts: other tests' background threads (a lineage
        # delivery retrying an unreachable backend) may still be running.
        if threading.get_ident() == this_thread:
            attempts.append(args)
            raise AssertionError(f"network access attempted: {args}")
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_email_and_url_analysis_opens_no_socket(no_network: list[object]) -> None:
    offline_tld_extractor.cache_clear()
    engine = PiiEngine(SPACY_MODEL, workers=0)
    config = DetectionConfig(entities=frozenset({"EMAIL_ADDRESS", "URL", "PERSON"}))
    out = scan_texts(
        ["Mail ann.lee@example.co.uk or see https://intranet.example.org/people/ann"],
        engine,
        config,
    )
    assert "ann.lee@example.co.uk" not in out[0]
    assert "<EMAIL_ADDRESS>" in out[0]
    assert "<URL>" in out[0]
    assert no_network == []


def test_without_the_model_detection_is_pattern_only_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = PiiEngine("no_such_spacy_model", workers=0)
    assert engine.status["mode"] == "patterns-only"
    assert "no_such_spacy_model" in engine.status["reason"]
    found = scan_texts(["Ann Lee: ann@example.com"], engine, DetectionConfig())
    assert found == ["Ann Lee: <EMAIL_ADDRESS>"]
    settings = Settings(
        home=tmp_path,
        contracts_dir=Path("contracts"),
        pii_key=TEST_PII_KEY,
        admin_key=TEST_ADMIN_KEY,
        spacy_model="no_such_spacy_model",
    )
    with admin_client(create_app(settings, pii_engine=engine)) as client:
        pii = client.get("/readyz").json()["checks"]["pii"]
    assert pii["status"] == "degraded"
    assert pii["mode"] == "patterns-only"
    assert "pattern-only" in caplog.text


def test_country_specific_recognizers_are_off_unless_a_contract_enables_them(
    pii_engine: PiiEngine,
) -> None:
    # 943 476 5919 passes the NHS checksum and is also shaped like a US phone number.
    text = ["Call 943 476 5919 after six"]
    assert scan_texts(text, pii_engine, DetectionConfig()) == ["Call <PHONE_NUMBER> after six"]
    enabled = DetectionConfig.from_metadata({"pii_entities_extra": ["UK_NHS"]})
    assert scan_texts(text, pii_engine, enabled) == ["Call <UK_NHS> after six"]


def test_contracts_narrow_entities_and_add_pattern_recognizers(pii_engine: PiiEngine) -> None:
    config = DetectionConfig.from_metadata(
        {
            "pii_entities": ["EMAIL_ADDRESS"],
            "pii_recognizers": [
                {"entity": "EMPLOYEE_ID", "patterns": [{"regex": r"\bEMP-\d{6}\b", "score": 0.9}]}
            ],
        }
    )
    out = scan_texts(["John Smith (EMP-123456) john@example.com"], pii_engine, config)
    assert out == ["John Smith (<EMPLOYEE_ID>) <EMAIL_ADDRESS>"]


def test_worker_processes_find_the_same_spans_as_the_local_detector(pii_engine: PiiEngine) -> None:
    texts = pl.Series(
        [f"Ticket {i}: call Mary Jones on 202-555-{i % 10000:04d}" for i in range(2500)]
    )
    pool = PiiEngine(SPACY_MODEL, workers=2)
    try:
        assert pool.detect(texts, DetectionConfig()) == pii_engine.detect(texts, DetectionConfig())
    finally:
        pool.close()


def test_encrypt_is_deterministic_and_reversible_only_with_the_key(tmp_path: Path) -> None:
    key = RedactionKey(TEST_PII_KEY.encode())
    tokens = encrypt_values(pl.Series(["ann@example.com", None, "ann@example.com"]), key)
    assert tokens[0] == tokens[2]
    assert tokens[1] is None
    assert "ann@" not in tokens[0]
    env = {**os.environ, "DATAGATE_PII_KEY": TEST_PII_KEY, "DATAGATE_HOME": str(tmp_path)}
    datagate = str(Path(sys.executable).parent / "datagate")
    done = subprocess.run(
        [datagate, "privacy", "decrypt", tokens[0]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "ann@example.com"
    env["DATAGATE_PII_KEY"] = "another-key-" + "z" * 40
    wrong = subprocess.run(
        [datagate, "privacy", "decrypt", tokens[0]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 1
    assert "ann@" not in wrong.stdout + wrong.stderr


UNDECLARED = """
import pandera.polars as pa

class Leads(pa.DataFrameModel):
    lead_id: int
    contact: str
    remarks: str = pa.Field(nullable=True)

    class Config:
        metadata = {{"version": "1.0.0", "undeclared_pii": "{policy}"}}
"""


def _leads(n: int = 40) -> pl.DataFrame:
    frame = customers(n, seed=5)
    return pl.DataFrame(
        {
            "lead_id": list(range(1, n + 1)),
            "contact": frame["email"],
            "remarks": [
                f"Spoke with {name}, wants a demo" if i % 4 == 0 else "Wants a demo next quarter"
                for i, name in enumerate(frame["full_name"])
            ],
        }
    )


@pytest.fixture
def leads_client(
    request: pytest.FixtureRequest, tmp_path: Path, pii_engine: PiiEngine
) -> Iterator[TestClient]:
    folder = tmp_path / "contracts"
    folder.mkdir()
    (folder / "leads.py").write_text(textwrap.dedent(UNDECLARED.format(policy=request.param)))
    settings = Settings(
        home=tmp_path / "home", contracts_dir=folder, pii_key=TEST_PII_KEY, admin_key=TEST_ADMIN_KEY
    )
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        yield client


@pytest.mark.parametrize("leads_client", ["redact"], indirect=True)
def test_undeclared_pii_is_detected_and_redacted_with_evidence(leads_client: TestClient) -> None:
    frame = _leads()
    response = leads_client.post("/api/v1/datasets/leads/uploads", content=csv_bytes(frame))
    assert response.status_code == 201, response.text
    columns = {c["column"]: c for c in response.json()["version"]["pii"]["columns"]}
    contact = columns["contact"]
    assert (contact["entity"], contact["action"], contact["method"]) == (
        "EMAIL_ADDRESS",
        "replace",
        "detected (sample)",
    )
    assert contact["share"] == 1.0
    assert contact["sample_size"] == 40
    assert contact["score"] > 0.5
    assert contact["model"].startswith(SPACY_MODEL)
    assert columns["remarks"]["action"] == "scan"
    assert columns["remarks"]["spans"]["PERSON"] >= 8
    data = leads_client.get("/api/v1/datasets/leads/versions/1/data?format=csv").text
    assert not [v for v in [*frame["contact"], *customers(40, seed=5)["full_name"]] if v in data]


@pytest.mark.parametrize("leads_client", ["reject"], indirect=True)
def test_undeclared_pii_with_reject_policy_is_a_422_without_values(
    leads_client: TestClient,
) -> None:
    frame = _leads()
    response = leads_client.post("/api/v1/datasets/leads/uploads", content=csv_bytes(frame))
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("/undeclared-pii")
    refused = {c["column"]: c for c in response.json()["report"]["columns"]}
    assert refused["contact"]["entity"] == "EMAIL_ADDRESS"
    assert not [v for v in frame["contact"] if v in response.text]
    run = leads_client.get(f"/api/v1/runs/{response.json()['run_id']}").json()
    assert run["status"] == "rejected"
    assert {c["column"]: c["action"] for c in run["pii_report"]["columns"]}["contact"] == "reject"
    assert leads_client.get("/api/v1/datasets/leads/versions").json()["versions"] == []


@pytest.mark.parametrize("leads_client", ["warn"], indirect=True)
def test_undeclared_pii_with_warn_policy_is_kept_and_recorded(
    leads_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    frame = _leads()
    response = leads_client.post("/api/v1/datasets/leads/uploads", content=csv_bytes(frame))
    assert response.status_code == 201
    columns = {c["column"]: c for c in response.json()["version"]["pii"]["columns"]}
    assert columns["contact"]["action"] == "warn"
    assert "contact looks like EMAIL_ADDRESS" in caplog.text
    assert frame["contact"][0] not in caplog.text


def test_subject_search_finds_versions_by_pseudonym(client: TestClient) -> None:
    first, second = customers(30, seed=1), customers(30, seed=2)
    client.post("/api/v1/datasets/customers/uploads", content=csv_bytes(first))
    client.post("/api/v1/datasets/customers/uploads", content=csv_bytes(second))
    wanted = first["email"][3]
    response = client.post(
        "/api/v1/privacy/subjects/search",
        json={"identifiers": [wanted.upper(), "nobody@example.com"]},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["versions_searched"] == 2
    assert [(m["dataset"], m["version"], m["column"], m["rows"]) for m in body["matches"]] == [
        ("customers", 1, "email", 1)
    ]
    assert wanted.lower() not in response.text.lower()
    assert (
        client.post("/api/v1/privacy/subjects/search", json={"identifiers": []}).status_code == 400
    )


def test_redaction_without_an_engine_never_keeps_free_text_raw() -> None:
    frame = pl.DataFrame({"notes": ["Ann called", None]})
    from privacy import ColumnPolicy

    out, outcomes = redact_frame(
        frame, [ColumnPolicy("notes", "scan", "scan")], RedactionKey(b"k" * 40)
    )
    assert out["notes"].to_list() == ["<FREE_TEXT>", None]
    assert outcomes[0].method.startswith("withheld")


def test_one_ssn_in_ten_thousand_cells_is_redacted(pii_engine: PiiEngine) -> None:
    """The sample (1,000 values) almost surely misses it; the full structured scan does not."""
    codes = [f"ORD-2024-{i:06d}" for i in range(10_000)]
    codes[7777] = "536-22-8726"
    out, outcomes = redact_frame(
        pl.DataFrame({"code": codes}), [], RedactionKey(b"k" * 40), engine=pii_engine
    )
    assert out["code"][7777] == "<US_SSN>"
    assert out["code"].to_list()[:3] == codes[:3]  # the codes themselves are not numbers
    (outcome,) = outcomes
    assert (outcome.action, outcome.values_redacted, outcome.spans) == ("scan", 1, {"US_SSN": 1})
    assert outcome.method == "full scan"


@pytest.mark.parametrize("name", ["count", "value", "frequency", "cells"])
def test_a_column_may_have_any_name_even_one_the_counting_uses(
    pii_engine: PiiEngine, name: str
) -> None:
    # Distinct values and their frequencies are counted in tables of their own: a column named
    # like their columns ("count" is polars' default) is scanned like any other.
    texts = ["mail ann@example.com today", "nothing here", None, "mail ann@example.com today"]
    frame = pl.DataFrame({name: texts * 3, "other": texts * 3})
    from privacy import ColumnPolicy

    declared, _ = redact_frame(
        frame, [ColumnPolicy(name, "scan", "scan")], RedactionKey(b"k" * 40), engine=pii_engine
    )
    undeclared, outcomes = redact_frame(frame, [], RedactionKey(b"k" * 40), engine=pii_engine)
    assert declared[name][0] == "mail <EMAIL_ADDRESS> today"
    for out in (declared, undeclared):  # undeclared, mostly e-mail: replaced whole
        assert "ann@example.com" not in str(out.to_dicts())
    assert {o.column for o in outcomes} == {name, "other"}


def test_a_scanned_value_that_repeats_counts_every_cell(pii_engine: PiiEngine) -> None:
    # Each distinct text is analysed once; the counts are still per cell.
    notes = ["write to ann@example.com", "no contact", None, "call 212.555.0199 or ann@example.com"]
    frame = pl.DataFrame({"notes": notes * 3 + ["write to ann@example.com"]})
    from privacy import ColumnPolicy

    out, outcomes = redact_frame(
        frame, [ColumnPolicy("notes", "scan", "scan")], RedactionKey(b"k" * 40), engine=pii_engine
    )
    assert out["notes"].to_list()[:4] == [
        "write to <EMAIL_ADDRESS>",
        "no contact",
        None,
        "call <PHONE_NUMBER> or <EMAIL_ADDRESS>",
    ]
    (outcome,) = outcomes
    assert outcome.values_redacted == 7
    assert outcome.spans == {"EMAIL_ADDRESS": 7, "PHONE_NUMBER": 3}
    assert outcome.sample_size == 3  # distinct texts analysed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("exports/jane.doe@example.com/list.csv", "exports/<EMAIL_ADDRESS>/list.csv"),
        ("SSN 536.22.8726", "SSN <US_SSN>"),
        ("call 212.555.0199 today", "call <PHONE_NUMBER> today"),
        ("ORD-2024-000123 for $13698.63", "ORD-2024-000123 for $13698.63"),
        ("T-990000123", "T-990000123"),
    ],
)
def test_structured_entities_are_found_in_paths_and_not_in_codes(
    pii_engine: PiiEngine, text: str, expected: str
) -> None:
    assert scan_texts([text], pii_engine, DetectionConfig()) == [expected]


def test_undeclared_text_in_structs_lists_and_categoricals_is_redacted(
    pii_engine: PiiEngine,
) -> None:
    frame = pl.DataFrame(
        {
            "profile": [{"email": "ann@example.com", "age": 41}, None, None],
            "emails": [["bob@example.org", "n/a"], [], ["n/a"]],
            "deep": [[{"notes": "call 212-555-0199"}], None, None],
            "tag": pl.Series(["ann@example.com", "x", "y"], dtype=pl.Categorical),
        }
    )
    out, outcomes = redact_frame(frame, [], RedactionKey(b"k" * 40), engine=pii_engine)
    first, second, _ = out.to_dicts()
    assert first["profile"] == {"email": "<EMAIL_ADDRESS>", "age": 41}
    assert first["emails"][0] == "<EMAIL_ADDRESS>"
    assert "212-555-0199" not in first["deep"][0]["notes"]
    assert first["tag"] == "<EMAIL_ADDRESS>"
    assert second == {"profile": None, "emails": [], "deep": None, "tag": "x"}  # nulls stay
    labels = {o.column for o in outcomes if o.action != "none"}
    assert labels == {"profile.email", "emails[]", "deep[].notes", "tag"}
