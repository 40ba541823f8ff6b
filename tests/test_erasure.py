"""Subject erasure: one subject in three versions of two datasets feeding two models — new
versions without the rows, the old data gone (objects and cache), 410s, models flagged, lineage
and audit entries — on SQLite and PostgreSQL, on a local folder and on S3."""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from gateway.app import create_app
from gateway.lifecycle import stored_keys
from gateway.models import AuditEntry, ErasureRequest, LineageEvent, ModelFlag
from gateway.services import Services
from gateway.store import dataset_by_name, version_by_number
from gateway.subjects import pseudonyms
from privacy import PiiEngine, RedactionKey
from tests.conftest import (
    QUARANTINING_SIGNUPS,
    TEST_PII_KEY,
    admin_client,
    contract_folder,
    settings_for,
)

CONTRACT = """
import pandera.polars as pa


class {Model}(pa.DataFrameModel):
    record_id: int = pa.Field(unique=True)
    email: str = pa.Field(metadata={{"pii": "EMAIL_ADDRESS", "redact": "hash"}})
    amount: float

    class Config:
        name = "{name}"
        metadata = {{"version": "1.0.0"}}
"""
SUBJECT = "Erin.Example@Example.org"
OTHERS = ["ann@example.com", "bob@example.com", "cy@example.com"]


def body(first: int, emails: list[str]) -> str:
    lines = [f"{first + i},{email},{i + 0.5}" for i, email in enumerate(emails)]
    return "record_id,email,amount\n" + "\n".join(lines) + "\n"


@pytest.fixture(params=["local", "s3"])
def gateway(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str, pii_engine: PiiEngine
) -> Iterator[TestClient]:
    folder = tmp_path / "contracts"
    folder.mkdir()
    for name in ("patients", "visits"):
        source = CONTRACT.format(Model=name.title(), name=name)
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
    extra: dict[str, Any] = {"database_url": database_url}
    if request.param == "s3":
        extra["storage_url"] = request.getfixturevalue("s3_url")
    client = admin_client(
        create_app(settings_for(tmp_path / "home", folder, **extra), pii_engine=pii_engine)
    )
    with client:
        yield client


def services_of(client: TestClient) -> Services:
    return client.app.state.services  # type: ignore[attr-defined,no-any-return]


def upload(client: TestClient, dataset: str, text: str) -> int:
    answer = client.post(f"/api/v1/datasets/{dataset}/uploads?format=csv", content=text)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["version"]["version"])


def train(client: TestClient, model: str, inputs: list[tuple[str, int]]) -> None:
    answer = client.post(
        "/api/v1/training-runs",
        json={
            "model": {"name": model, "version": "1"},
            "inputs": [{"dataset": d, "version": v} for d, v in inputs],
        },
    )
    assert answer.status_code == 201, answer.text


def erase(client: TestClient, **options: Any) -> Any:
    return client.post("/api/v1/privacy/subjects/erase", json={"identifiers": [SUBJECT], **options})


def test_erasure_reaches_every_version_and_every_model(gateway: TestClient) -> None:
    services = services_of(gateway)
    assert upload(gateway, "patients", body(1, [*OTHERS, SUBJECT.lower()])) == 1
    assert upload(gateway, "patients", body(10, [SUBJECT.lower(), *OTHERS[:2]])) == 2
    assert upload(gateway, "visits", body(1, [SUBJECT.lower(), OTHERS[0]])) == 1
    assert upload(gateway, "visits", body(5, OTHERS)) == 2
    train(gateway, "readmission", [("patients", 1)])
    train(gateway, "cost", [("visits", 1), ("patients", 2)])
    train(gateway, "unrelated", [("visits", 2)])
    assert gateway.post("/api/v1/datasets/patients/versions/1/hold", json={}).status_code == 200
    with Session(services.engine) as session:
        erased_keys = set()
        for name, number in (("patients", 1), ("patients", 2), ("visits", 1)):
            row = version_by_number(session, dataset_by_name(session, name), number)
            erased_keys |= stored_keys(services.snapshots, row.storage_key)
            services.snapshots.local_path(row.storage_key)  # an S3 store caches what it reads

    # The dry run (the default) says what would happen, and changes nothing.
    dry = erase(gateway)
    assert dry.status_code == 200, dry.text
    plan = dry.json()
    assert plan["dry_run"] is True
    assert [(d["dataset"], d["versions"], d["held"]) for d in plan["datasets"]] == [
        ("patients", [1, 2], [1]),
        ("visits", [1], []),
    ]
    assert [(m["model"], m["version"]) for m in plan["models"]] == [
        ("cost", "1"),
        ("readmission", "1"),
    ]
    assert gateway.get("/api/v1/datasets/patients/versions/1").json()["state"] == "live"
    # A held version stops the erasure unless holds are overridden: nothing is erased.
    refused = erase(gateway, dry_run=False)
    assert refused.status_code == 409
    assert "patients@1" in refused.json()["detail"]
    assert gateway.get("/api/v1/datasets/patients/versions/2/data").status_code == 200

    done = erase(gateway, dry_run=False, override_holds=True)
    assert done.status_code == 200, done.text
    outcome = done.json()
    by_dataset = {d["dataset"]: d for d in outcome["datasets"]}
    assert (by_dataset["patients"]["new_version"], by_dataset["patients"]["rows_kept"]) == (3, 2)
    assert (by_dataset["visits"]["new_version"], by_dataset["visits"]["replaced_by"]) == (None, 2)
    for name, number in (("patients", 1), ("patients", 2), ("visits", 1)):
        shown = gateway.get(f"/api/v1/datasets/{name}/versions/{number}").json()
        assert shown["state"] == "deleted"
        assert shown["deleted"]["reason"] == "erasure"
        assert gateway.get(f"/api/v1/datasets/{name}/versions/{number}/data").status_code == 410
    held = gateway.get("/api/v1/datasets/patients/versions/1").json()["deleted"]
    assert held["hold_overridden"]["by"] == "admin-key"
    assert held["replaced_by"] == 3
    # The new version is the latest without the subject's rows, with its drift measured.
    rewritten = gateway.get("/api/v1/datasets/patients/versions/3").json()
    assert rewritten["drift"]["against"] == {"previous": 2}
    data = gateway.get("/api/v1/datasets/patients/versions/3/data")
    assert data.status_code == 200
    frame = pl.read_parquet(io.BytesIO(data.content))
    pseudonym = pseudonyms([SUBJECT], RedactionKey(TEST_PII_KEY.encode()))
    assert frame.height == 2
    assert not frame["email"].is_in(pseudonym).any()
    # Gone from the store, and from this process's cache.
    cache = getattr(services.snapshots, "cache", None)
    for key in erased_keys:
        with pytest.raises(FileNotFoundError):
            services.snapshots.get_bytes(key)
        if cache is not None:
            assert not (cache / key).exists()
    if cache is not None:  # a replica that was away when it happened clears its cache at start
        from gateway.lifecycle import purge_cached

        stale = cache / sorted(erased_keys)[0]
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_bytes(b"cached before the erasure")
        assert purge_cached(services.snapshots, services.engine, since=None) == 1
        assert not stale.exists()
    assert (
        gateway.post("/api/v1/privacy/subjects/search", json={"identifiers": [SUBJECT]}).json()[
            "matches"
        ]
        == []
    )
    # Models flagged, in their provenance and in impact answers.
    for model in ("readmission", "cost"):
        provenance = gateway.get(f"/api/v1/audit/models/{model}/provenance?version=1").json()
        (flag,) = provenance["needs_retraining"]
        assert flag["reason"] == "erasure"
        assert flag["erasure"] == outcome["id"]
    unrelated = gateway.get("/api/v1/audit/models/unrelated/provenance?version=1").json()
    assert unrelated["needs_retraining"] == []
    impact = gateway.get("/api/v1/audit/datasets/patients/versions/1/impact").json()
    assert [(m["model"], m["needs_retraining"]) for m in impact["models"]] == [
        ("readmission", True)
    ]
    markdown = gateway.get("/api/v1/audit/models/cost/provenance?version=1&format=md").text
    assert "**Needs retraining**: erasure" in markdown
    # Lineage: the erasure run read the old versions, dropped them, created the new one.
    with Session(services.engine) as session:
        events = [e.payload for e in session.exec(select(LineageEvent)).all()]
        audit = session.exec(
            select(AuditEntry).where(AuditEntry.action == "POST /api/v1/privacy/subjects/erase")
        ).all()
        records = [
            *(json.dumps(r.model_dump(mode="json")) for r in session.exec(select(ErasureRequest))),
            *(json.dumps(r.model_dump(mode="json")) for r in session.exec(select(ModelFlag))),
            *(json.dumps(r.model_dump(mode="json")) for r in audit),
            *(json.dumps(e) for e in events),
        ]
    (erasure,) = [e for e in events if e["job"]["name"] == "erasure.patients"]
    changes = {
        (
            o["facets"]["version"]["datasetVersion"],
            o["facets"]["lifecycleStateChange"]["lifecycleStateChange"],
        )
        for o in erasure["outputs"]
    }
    assert changes == {("1", "DROP"), ("2", "DROP"), ("3", "CREATE")}
    assert [i["facets"]["version"]["datasetVersion"] for i in erasure["inputs"]] == ["2"]
    # The audit trail has the requests by a keyed digest; the identifier is stored nowhere.
    targets = [a.target for a in audit]
    assert targets.count(f"subject:{outcome['subject']}") == 2  # refused, then done
    assert f"subject:{outcome['subject']} (dry run)" in targets
    for text in records:
        assert SUBJECT.lower() not in text.lower()
    # Asking again finds nothing more and changes nothing.
    again = erase(gateway, dry_run=False)
    assert again.status_code == 200
    assert (again.json()["datasets"], again.json()["models"]) == ([], [])
    assert [p["id"] for p in again.json()["previous_requests"]] == [outcome["id"]]
    with Session(services.engine) as session:
        assert len(session.exec(select(ModelFlag)).all()) == 2


def test_only_admins_erase(gateway: TestClient) -> None:
    created = gateway.post("/api/v1/keys", json={"role": "auditor"}).json()
    auditor = {"Authorization": f"Bearer {created['key']}"}
    answer = gateway.post(
        "/api/v1/privacy/subjects/erase", json={"identifiers": [SUBJECT]}, headers=auditor
    )
    assert answer.status_code == 403


def test_the_subjects_rows_held_for_review_are_erased_too(
    tmp_path: Path, database_url: str, pii_engine: PiiEngine
) -> None:
    folder = contract_folder(tmp_path, signups=QUARANTINING_SIGNUPS)
    settings = settings_for(tmp_path / "home", folder, database_url=database_url)
    rows = "signup_id,email,age\n1,ann@example.com,30\n2,bob@example.com,-1\n"
    rows += f"3,{SUBJECT.lower()},-5\n4,cy@example.com,41\n"
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        stored = client.post("/api/v1/datasets/signups/uploads?format=csv", content=rows)
        assert stored.status_code == 201, stored.text
        batch = stored.json()["quarantine"]["id"]
        assert stored.json()["quarantine"]["rows"] == 2
        services = services_of(client)
        with Session(services.engine) as session:
            from gateway.models import QuarantineBatch

            before = session.get(QuarantineBatch, batch)
            assert before is not None
            old_object = before.storage_key
        plan = erase(client).json()
        assert plan["quarantine"] == [{"batch": batch, "dataset": "signups", "rows": 1}]
        assert plan["datasets"] == []  # the stored version does not hold the subject
        done = erase(client, dry_run=False)
        assert done.status_code == 200, done.text
        shown = client.get(f"/api/v1/quarantine/{batch}").json()
        assert shown["batch"]["rows_held"] == 1
        assert [r["row"] for r in shown["rows"]] == [2]  # bob's row stays held
        assert old_object is not None
        with pytest.raises(FileNotFoundError):
            services.snapshots.get_bytes(old_object)
        again = erase(client).json()
        assert again["quarantine"] == []


def test_an_erasure_stopped_half_way_has_flagged_what_it_erased(
    gateway: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second dataset's erasure fails (a dataset changed meanwhile, say): the first one's
    models are flagged already, and asking again finishes the rest."""
    import gateway.erasure as erasure
    from gateway.errors import Conflict

    assert upload(gateway, "patients", body(1, [SUBJECT.lower(), *OTHERS])) == 1
    assert upload(gateway, "visits", body(1, [SUBJECT.lower(), OTHERS[0]])) == 1
    train(gateway, "readmission", [("patients", 1)])
    train(gateway, "cost", [("visits", 1)])
    real = erasure._erase_in

    def stop_at_visits(services: Any, affected: Any, *args: Any) -> None:
        if affected.dataset == "visits":
            raise Conflict("visits got a new version while the erasure ran; ask again")
        real(services, affected, *args)

    monkeypatch.setattr(erasure, "_erase_in", stop_at_visits)
    assert erase(gateway, dry_run=False).status_code == 409
    flagged = gateway.get("/api/v1/audit/models/readmission/provenance?version=1").json()
    assert len(flagged["needs_retraining"]) == 1
    monkeypatch.setattr(erasure, "_erase_in", real)
    done = erase(gateway, dry_run=False).json()
    assert [d["dataset"] for d in done["datasets"]] == ["visits"]
    for model in ("readmission", "cost"):
        provenance = gateway.get(f"/api/v1/audit/models/{model}/provenance?version=1").json()
        assert len(provenance["needs_retraining"]) == 1


EVERY_FORM = """
import pandera.polars as pa
import polars as pl


class Members(pa.DataFrameModel):
    member_id: int = pa.Field(unique=True)
    email: str = pa.Field(metadata={"pii": "EMAIL_ADDRESS", "redact": "encrypt"})
    login: str = pa.Field(
        metadata={"pii": "EMAIL_ADDRESS", "redact": "keep", "justification": "signs them in"}
    )
    contacts: pl.List(pl.String) = pa.Field(
        nullable=True, metadata={"pii": "EMAIL_ADDRESS", "redact": "hash"}
    )

    class Config:
        name = "members"
        metadata = {"version": "1.0.0"}
"""


def test_a_subject_is_found_and_erased_however_its_columns_store_it(
    tmp_path: Path, database_url: str, pii_engine: PiiEngine
) -> None:
    """Encrypted (deterministic tokens), kept (justified) and nested hashed values identify a
    subject as surely as a flat ``hash`` column does: search and erasure find them all."""
    folder = contract_folder(tmp_path, members=EVERY_FORM)
    settings = settings_for(tmp_path / "home", folder, database_url=database_url)
    subject = SUBJECT.lower()
    rows = [
        {"member_id": 1, "email": subject, "login": "m1", "contacts": None},  # encrypted
        {"member_id": 2, "email": "a@example.com", "login": subject, "contacts": []},  # kept
        {"member_id": 3, "email": "b@example.com", "login": "m3", "contacts": ["x@y.org", subject]},
        {"member_id": 4, "email": "c@example.com", "login": f"{subject}x", "contacts": ["z@y.org"]},
    ]
    body = "\n".join(json.dumps(r) for r in rows) + "\n"
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        stored = client.post("/api/v1/datasets/members/uploads?format=ndjson", content=body)
        assert stored.status_code == 201, stored.text
        found = client.post("/api/v1/privacy/subjects/search", json={"identifiers": [SUBJECT]})
        assert found.status_code == 200, found.text
        columns = {(m["column"], m["rows"]) for m in found.json()["matches"]}
        assert columns == {("email", 1), ("login", 1), ("contacts", 1)}
        erased = client.post(
            "/api/v1/privacy/subjects/erase", json={"identifiers": [SUBJECT], "dry_run": False}
        )
        assert erased.status_code == 200, erased.text
        clean = erased.json()["datasets"][0]["replaced_by"]
        data = client.get(f"/api/v1/datasets/members/versions/{clean}/data?format=parquet")
        left = pl.read_parquet(io.BytesIO(data.content))
        assert left["member_id"].to_list() == [4]  # a longer value that merely contains it stays
        again = client.post("/api/v1/privacy/subjects/search", json={"identifiers": [SUBJECT]})
        assert again.json()["matches"] == []
