"""Quarantine and review (``on_invalid: "quarantine"``): good rows become the version, bad rows
are held sealed for review, replayed after a contract fix, corrected by key, discarded or
expired; on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from gateway.app import create_app
from gateway.db import unit_of_work
from gateway.models import LineageEvent, QuarantineBatch, utcnow
from gateway.quarantine import QUARANTINE_PREFIX
from gateway.review import expire_due
from privacy import PiiEngine
from tests.conftest import CONTRACTS, admin_client, settings_for

PATIENTS = """
import pandera.polars as pa


class Patients(pa.DataFrameModel):
    patient_id: int = pa.Field(unique=True, ge=1)
    email: str = pa.Field(
        str_matches=r"^[^@\\s]+@[^@\\s]+$",
        metadata={{"pii": "EMAIL_ADDRESS", "redact": "hash"}},
    )
    country: str = pa.Field(isin={countries})
    score: float = pa.Field(ge=0, le=100)

    class Config:
        name = "patients"
        strict = True
        coerce = True
        metadata = {{
            "version": "{version}",
            "on_invalid": "quarantine",
            "max_invalid_fraction": {fraction},
            "min_valid_rows": 1,
        }}
"""
EMAIL_OF_BAD_ROW = "zelda.quarantined@example.org"


def write_contract(
    folder: Path, countries: list[str], version: str = "1.0.0", fraction: float = 0.3
) -> None:
    (folder / "patients.py").write_text(
        PATIENTS.format(countries=countries, version=version, fraction=fraction)
    )


def patients(rows: int = 20) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "patient_id": list(range(1, rows + 1)),
            "email": [f"patient{i}@example.com" for i in range(1, rows + 1)],
            "country": ["US" if i % 2 else "DE" for i in range(rows)],
            "score": [float(i) for i in range(rows)],
        }
    )


def with_bad_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Row 3 from France (not allowed by 1.0.0), row 7 with a score out of range."""
    return frame.with_columns(
        pl.when(pl.col("patient_id") == 3)
        .then(pl.lit("FR"))
        .otherwise(pl.col("country"))
        .alias("country"),
        pl.when(pl.col("patient_id") == 7)
        .then(pl.lit(250.0))
        .otherwise(pl.col("score"))
        .alias("score"),
        pl.when(pl.col("patient_id") == 3)
        .then(pl.lit(EMAIL_OF_BAD_ROW))
        .otherwise(pl.col("email"))
        .alias("email"),
    )


def csv(frame: pl.DataFrame) -> bytes:
    return frame.write_csv().encode()


class Gateway:
    """A gateway on one home and database, restartable (a new contract is a restart)."""

    def __init__(self, home: Path, database_url: str, pii_engine: PiiEngine) -> None:
        self.home = home
        self.contracts = home / "contracts"
        self.contracts.mkdir(parents=True, exist_ok=True)
        for path in CONTRACTS.glob("*.py"):
            shutil.copy(path, self.contracts / path.name)
        self.database_url = database_url
        self.pii_engine = pii_engine
        self.client: TestClient | None = None

    def start(self, **extra: Any) -> TestClient:
        self.stop()
        settings = settings_for(self.home, self.contracts, database_url=self.database_url, **extra)
        self.client = admin_client(create_app(settings, pii_engine=self.pii_engine))
        self.client.__enter__()
        return self.client

    def stop(self) -> None:
        if self.client is not None:
            self.client.__exit__(None, None, None)
            self.client = None


@pytest.fixture
def gateway(tmp_path: Path, database_url: str, pii_engine: PiiEngine) -> Iterator[Gateway]:
    gw = Gateway(tmp_path / "home", database_url, pii_engine)
    write_contract(gw.contracts, ["US", "DE"])
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def upload(client: TestClient, body: bytes, fmt: str = "csv") -> Any:
    return client.post(f"/api/v1/datasets/patients/uploads?format={fmt}", content=body)


def stored(client: TestClient, number: int) -> pl.DataFrame:
    data = client.get(f"/api/v1/datasets/patients/versions/{number}/data?format=parquet")
    assert data.status_code == 200, data.text
    return pl.read_parquet(io.BytesIO(data.content))


def test_partial_accept_keeps_good_rows_and_holds_bad_ones(gateway: Gateway) -> None:
    client = gateway.client
    assert client is not None
    answer = upload(client, csv(with_bad_rows(patients())))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["version"]["row_count"] == 18
    held = body["quarantine"]
    assert held["rows"] == 2
    by_check = {(f["column"], f["check"]): f["rows"] for f in held["failures"]}
    assert by_check == {
        ("country", "isin(['US', 'DE'])"): 1,
        ("score", "less_than_or_equal_to(100)"): 1,
    }
    run = client.get(f"/api/v1/runs/{body['run_id']}").json()
    assert run["status"] == "quarantined"
    assert run["quarantine_id"] == held["id"]
    assert sorted(stored(client, 1)["patient_id"].to_list()) == [
        i for i in range(1, 21) if i not in (3, 7)
    ]
    batch = client.get(f"/api/v1/quarantine/{held['id']}").json()
    assert batch["batch"]["status"] == "open"
    rows = {r["row"]: r for r in batch["rows"]}
    assert set(rows) == {3, 7}  # row numbers in the upload (header excluded), from 1
    assert rows[3]["values"]["email"] == "<EMAIL_ADDRESS>"
    assert rows[3]["values"]["country"] == "FR"
    assert rows[3]["failures"] == [
        {"column": "country", "check": "isin(['US', 'DE'])", "value": "FR"}
    ]
    listed = client.get("/api/v1/quarantine?dataset=patients&status=open").json()
    assert [b["id"] for b in listed["batches"]] == [held["id"]]


def test_above_the_threshold_the_whole_upload_is_refused(gateway: Gateway) -> None:
    client = gateway.client
    assert client is not None
    frame = patients().with_columns(
        pl.when(pl.col("patient_id") <= 8)
        .then(pl.lit("FR"))
        .otherwise(pl.col("country"))
        .alias("country")
    )
    answer = upload(client, csv(frame))
    assert answer.status_code == 422, answer.text
    report = answer.json()["report"]
    assert report["rows_quarantined"] == 8
    assert "max_invalid_fraction" in " ".join(report["notes"])
    assert "quarantine" not in answer.json()
    assert client.get("/api/v1/quarantine").json()["total"] == 0


def test_no_valid_row_holds_everything_and_answers_422_with_the_batch(gateway: Gateway) -> None:
    gateway.stop()
    write_contract(gateway.contracts, ["US", "DE"], fraction=1.0)
    client = gateway.start()
    frame = patients(5).with_columns(pl.lit("FR").alias("country"))
    answer = upload(client, csv(frame))
    assert answer.status_code == 422, answer.text
    held = answer.json()["quarantine"]
    assert held["rows"] == 5
    run = client.get(f"/api/v1/runs/{answer.json()['run_id']}").json()
    assert run["status"] == "rejected"
    assert run["quarantine_id"] == held["id"]
    # The contract is fixed: the replay makes the first version, the complete upload.
    gateway.stop()
    write_contract(gateway.contracts, ["US", "DE", "FR"], version="1.1.0", fraction=1.0)
    client = gateway.start()
    replay = client.post(f"/api/v1/quarantine/{held['id']}/replay")
    assert replay.status_code == 200, replay.text
    assert replay.json()["released"] == 5
    assert replay.json()["version"]["version"] == 1
    assert replay.json()["batch"]["status"] == "replayed"
    assert stored(client, 1).height == 5


def test_replay_after_the_contract_widens_isin(gateway: Gateway) -> None:
    client = gateway.client
    assert client is not None
    answer = upload(client, csv(with_bad_rows(patients())))
    batch_id = answer.json()["quarantine"]["id"]
    gateway.stop()
    write_contract(gateway.contracts, ["US", "DE", "FR"], version="1.1.0")
    client = gateway.start()
    replay = client.post(f"/api/v1/quarantine/{batch_id}/replay")
    assert replay.status_code == 200, replay.text
    body = replay.json()
    assert (body["released"], body["still_held"], body["created"]) == (1, 1, True)
    assert body["version"]["version"] == 2
    assert body["version"]["row_count"] == 19
    assert body["version"]["drift"]["against"] == {"previous": 1}  # measured, like an upload
    assert body["batch"]["status"] == "open"
    assert body["batch"]["base_version"] == 2
    v2 = stored(client, 2)
    assert sorted(v2["patient_id"].to_list()) == [i for i in range(1, 21) if i != 7]
    assert EMAIL_OF_BAD_ROW not in v2["email"].to_list()  # hashed like every other row
    assert v2.filter(pl.col("patient_id") == 3)["email"].item() != EMAIL_OF_BAD_ROW
    detail = client.get(f"/api/v1/quarantine/{batch_id}").json()
    assert [r["row"] for r in detail["rows"]] == [7]
    run = client.get(f"/api/v1/runs/{body['run_id']}").json()
    assert (run["kind"], run["status"], run["version"]) == ("replay", "quarantined", 2)
    # The replay is its own lineage run: it reads the batch and version 1, writes version 2.
    with Session(gateway_engine(gateway)) as session:
        events = session.exec(
            select(LineageEvent).where(LineageEvent.run_id == body["run_id"])
        ).all()
    complete = next(e.payload for e in events if e.event_type == "COMPLETE")
    assert complete["job"]["name"] == "replay.patients"
    inputs = {(i["name"], i["facets"]["version"]["datasetVersion"]) for i in complete["inputs"]}
    assert inputs == {("patients.quarantine", batch_id), ("patients", "1")}
    assert complete["outputs"][0]["facets"]["version"]["datasetVersion"] == "2"
    # A model trained on version 2: its provenance says which rows were held, why, and who
    # released them.
    trained = client.post(
        "/api/v1/training-runs",
        json={
            "model": {"name": "risk", "version": "1"},
            "inputs": [{"dataset": "patients", "version": 2}],
        },
    )
    assert trained.status_code in (200, 201), trained.text
    provenance = client.get("/api/v1/audit/models/risk/provenance?version=1").json()
    upload_info = provenance["training_runs"][0]["inputs"][0]["upload"]
    story = upload_info["quarantine"]
    assert story["batch"] == batch_id
    assert story["rows_held_at_upload"] == 2
    assert {f["check"] for f in story["held_because"]} == {
        "isin(['US', 'DE'])",
        "less_than_or_equal_to(100)",
    }
    assert story["rows_held_now"] == 1
    (released,) = story["releases"]
    assert (released["rows"], released["released_by"], released["kind"]) == (
        [3],
        "admin-key",
        "replay",
    )
    assert released["had_failed"] == [
        {"column": "country", "check": "isin(['US', 'DE'])", "rows": 1}
    ]
    markdown = client.get("/api/v1/audit/models/risk/provenance?version=1&format=md")
    assert "replay by admin-key" in markdown.text, markdown.text
    assert body["batch"]["held_failures"] == [
        {"column": "score", "check": "less_than_or_equal_to(100)", "rows": 1}
    ]


def gateway_engine(gateway: Gateway) -> Any:
    assert gateway.client is not None
    return gateway.client.app.state.services.engine  # type: ignore[attr-defined]


def test_corrections_by_key_replace_the_held_rows(gateway: Gateway) -> None:
    client = gateway.client
    assert client is not None
    answer = upload(client, csv(with_bad_rows(patients())))
    batch_id = answer.json()["quarantine"]["id"]
    fixed = pl.DataFrame(
        {"patient_id": [7], "email": ["patient7@example.com"], "country": ["US"], "score": [70.0]}
    )
    corrected = client.post(
        f"/api/v1/quarantine/{batch_id}/corrections?format=csv", content=csv(fixed)
    )
    assert corrected.status_code == 200, corrected.text
    body = corrected.json()
    assert (body["released"], body["still_held"]) == (1, 1)
    v2 = stored(client, body["version"]["version"])
    assert v2.filter(pl.col("patient_id") == 7)["score"].item() == 70.0
    # A correction for a row the batch does not hold is refused, naming no value.
    stray = fixed.with_columns(pl.lit(99).alias("patient_id"))
    refused = client.post(
        f"/api/v1/quarantine/{batch_id}/corrections?format=csv", content=csv(stray)
    )
    assert refused.status_code == 400
    assert "match no row" in refused.json()["detail"]


def test_discard_destroys_the_rows_and_keeps_a_tombstone(gateway: Gateway) -> None:
    client = gateway.client
    assert client is not None
    batch_id = upload(client, csv(with_bad_rows(patients()))).json()["quarantine"]["id"]
    reason = f"test data sent by mistake, ask {EMAIL_OF_BAD_ROW}"
    discarded = client.post(f"/api/v1/quarantine/{batch_id}/discard", json={"reason": reason})
    assert discarded.status_code == 200, discarded.text
    tomb = discarded.json()
    assert (tomb["status"], tomb["rows_held"], tomb["rows_discarded"]) == ("discarded", 0, 2)
    assert EMAIL_OF_BAD_ROW not in tomb["close_reason"]
    assert tomb["failures"]  # the reasons stay
    with Session(gateway_engine(gateway)) as session:
        row = session.get(QuarantineBatch, batch_id)
        assert row is not None
        assert (row.key_seed, row.storage_key) == (None, None)
    assert not list((gateway.home / "snapshots" / QUARANTINE_PREFIX).rglob("*.sealed"))
    assert client.post(f"/api/v1/quarantine/{batch_id}/replay").status_code == 409
    assert client.get(f"/api/v1/quarantine/{batch_id}").json()["rows"] == []


def test_expiry_destroys_key_and_data(gateway: Gateway) -> None:
    client = gateway.client
    assert client is not None
    batch_id = upload(client, csv(with_bad_rows(patients()))).json()["quarantine"]["id"]
    services = client.app.state.services  # type: ignore[attr-defined]
    assert expire_due(services) == []  # not due yet
    with unit_of_work(services.engine) as session:
        row = session.get(QuarantineBatch, batch_id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
    assert expire_due(services, services.audit.record) == [batch_id]
    tomb = client.get(f"/api/v1/quarantine/{batch_id}").json()["batch"]
    assert (tomb["status"], tomb["closed_by"], tomb["rows_discarded"]) == (
        "expired",
        "system:expiry",
        2,
    )
    log = client.get("/api/v1/audit/log?actor=system:expiry").json()
    assert any(batch_id in (e.get("target") or "") for e in log["entries"])
    assert not list((gateway.home / "snapshots" / QUARANTINE_PREFIX).rglob("*.sealed"))


def test_held_rows_are_sealed_at_rest(gateway: Gateway) -> None:
    client = gateway.client
    assert client is not None
    upload(client, csv(with_bad_rows(patients())))
    files = list((gateway.home / "snapshots" / QUARANTINE_PREFIX).rglob("*.sealed"))
    assert len(files) == 1
    data = files[0].read_bytes()
    assert EMAIL_OF_BAD_ROW.encode() not in data
    assert b"FR" not in data or b"country" not in data  # nothing readable, names included
    with Session(gateway_engine(gateway)) as session:
        dump = json.dumps(
            [r.model_dump(mode="json") for r in session.exec(select(QuarantineBatch))]
        )
    assert EMAIL_OF_BAD_ROW not in dump


def _key(client: TestClient, role: str, datasets: list[str] | None = None) -> dict[str, str]:
    body: dict[str, Any] = {"role": role, "name": f"{role}-{'-'.join(datasets or ['all'])}"}
    if datasets is not None:
        body["datasets"] = datasets
    created = client.post("/api/v1/keys", json=body)
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


def test_roles_scopes_and_the_audit_trail(gateway: Gateway) -> None:
    client = gateway.client
    assert client is not None
    before = _quarantine_metrics(client)
    batch_id = upload(client, csv(with_bad_rows(patients()))).json()["quarantine"]["id"]
    batch = f"/api/v1/quarantine/{batch_id}"
    producer = _key(client, "producer", ["patients"])
    other = _key(client, "producer", ["customers"])
    auditor = _key(client, "auditor")
    consumer = _key(client, "consumer", ["patients"])
    # Auditors read; they do not act.
    assert client.get(batch, headers=auditor).status_code == 200
    assert client.get("/api/v1/quarantine", headers=auditor).json()["total"] == 1
    assert client.post(f"{batch}/replay", headers=auditor).status_code == 403
    assert client.post(f"{batch}/discard", headers=auditor, json={"reason": "x"}).status_code == 403
    # Consumers read data, not held rows.
    assert client.get("/api/v1/quarantine", headers=consumer).status_code == 403
    assert client.get(batch, headers=consumer).status_code == 403
    # A producer of another dataset does not see the batch at all.
    assert client.get("/api/v1/quarantine", headers=other).json()["total"] == 0
    assert client.get(batch, headers=other).status_code == 404
    assert client.post(f"{batch}/replay", headers=other).status_code == 404
    assert client.get("/api/v1/quarantine?dataset=patients", headers=other).status_code == 403
    # The dataset's producer acts.
    replay = client.post(f"{batch}/replay", headers=producer)
    assert replay.status_code == 200, replay.text
    assert replay.json()["released"] == 0  # the contract did not change: both still fail
    discarded = client.post(f"{batch}/discard", headers=producer, json={"reason": "bad export"})
    assert discarded.status_code == 200
    assert discarded.json()["closed_by"] == "producer-patients"
    entries = client.get("/api/v1/audit/log?dataset=patients&limit=100").json()["entries"]
    actions = {(e["actor"], e["action"], e["outcome"]) for e in entries}
    assert ("producer-patients", "POST /api/v1/quarantine/{batch_id}/replay", 200) in actions
    assert ("producer-patients", "POST /api/v1/quarantine/{batch_id}/discard", 200) in actions
    assert ("auditor-all", "GET /api/v1/quarantine/{batch_id}", 200) in actions
    assert ("auditor-all", "POST /api/v1/quarantine/{batch_id}/replay", 403) in actions
    after = _quarantine_metrics(client)
    assert after["held"] - before.get("held", 0) == 2
    assert after["discarded"] - before.get("discarded", 0) == 2


def _quarantine_metrics(client: TestClient) -> dict[str, float]:
    """Rows quarantined per outcome for patients (counters are per process: compare)."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            name, labels = sample.name, sample.labels
            if name == "datagate_quarantine_rows_total" and labels["dataset"] == "patients":
                found[labels["outcome"]] = sample.value
    return found


def test_the_ingest_event_has_the_batch_as_a_second_output(gateway: Gateway) -> None:
    client = gateway.client
    assert client is not None
    answer = upload(client, csv(with_bad_rows(patients())))
    run_id, batch_id = answer.json()["run_id"], answer.json()["quarantine"]["id"]
    with Session(gateway_engine(gateway)) as session:
        events = session.exec(select(LineageEvent).where(LineageEvent.run_id == run_id)).all()
    complete = next(e.payload for e in events if e.event_type == "COMPLETE")
    outputs = {o["name"]: o for o in complete["outputs"]}
    assert set(outputs) == {"patients", "patients.quarantine"}
    held = outputs["patients.quarantine"]
    assert held["facets"]["version"]["datasetVersion"] == batch_id
    assert held["outputFacets"]["outputStatistics"]["rowCount"] == 2
    assertions = held["facets"]["dataQualityAssertions"]["assertions"]
    assert {(a["column"], a["success"]) for a in assertions} == {
        ("country", False),
        ("score", False),
    }
    assert held["facets"]["datagate_quarantine"]["rows"] == 2
    graph = client.get("/api/v1/lineage?nodeId=dataset:datagate:patients.quarantine&depth=2")
    assert graph.status_code == 200
    ids = {node["id"] for node in graph.json()["graph"]}
    assert "job:datagate:ingest.patients" in ids


def test_concurrent_replays_of_one_batch_make_one_version(gateway: Gateway) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from gateway.errors import Conflict
    from gateway.review import release
    from gateway.uploads import UploadSpool

    client = gateway.client
    assert client is not None
    batch_id = upload(client, csv(with_bad_rows(patients()))).json()["quarantine"]["id"]
    gateway.stop()
    write_contract(gateway.contracts, ["US", "DE", "FR"], version="1.1.0")
    client = gateway.start()
    services = client.app.state.services  # type: ignore[attr-defined]
    start = Barrier(2)

    def replay(n: int) -> Any:
        spool = UploadSpool(services.work_dir / f"t{n}")
        start.wait()
        try:
            return release(services, batch_id, f"reviewer-{n}", spool)
        except Conflict as conflict:
            return conflict
        finally:
            spool.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(replay, range(2)))
    created = [o for o in outcomes if not isinstance(o, Conflict) and o.created]
    assert len(created) == 1, outcomes
    others = [o for o in outcomes if o not in created]
    assert isinstance(others[0], Conflict) or others[0].released == 0
    versions = client.get("/api/v1/datasets/patients/versions").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2] or [v["version"] for v in versions] == [2, 1]
    final = client.get(f"/api/v1/quarantine/{batch_id}").json()["batch"]
    assert (final["rows_released"], final["rows_held"], final["base_version"]) == (1, 1, 2)
    assert len(stored(client, 2)) == 19


def test_a_queued_upload_holds_rows_too(gateway: Gateway) -> None:
    from gateway.jobs import run_ingest

    client = gateway.client
    assert client is not None
    queued = client.post(
        "/api/v1/datasets/patients/uploads?format=csv",
        content=csv(with_bad_rows(patients())),
        headers={"Prefer": "respond-async"},
    )
    assert queued.status_code == 202, queued.text
    services = client.app.state.services  # type: ignore[attr-defined]
    if services.engine.dialect.name == "postgresql":
        run_ingest(services, queued.json()["run_id"])  # what a worker would do
    run = client.get(queued.headers["location"], params={"wait": 60}).json()
    assert run["status"] == "quarantined", run
    assert run["links"]["quarantine"] == f"/api/v1/quarantine/{run['quarantine_id']}"
    batch = client.get(run["links"]["quarantine"]).json()
    assert batch["batch"]["rows_held"] == 2
    assert [r["row"] for r in batch["rows"]] == [3, 7]


def _sealed_and_parts(home: Path) -> set[str]:
    folder = home / "snapshots"
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not p.relative_to(folder).as_posix().startswith((".staging/", ".audit/"))
    }


@pytest.mark.slow
def test_sigkill_mid_replay_leaves_no_partial_version(
    tmp_path: Path, database_url: str, pii_engine: PiiEngine
) -> None:
    """A real `datagate serve` killed while replaying (version published, still-held rows
    sealed anew, nothing recorded): after a restart no new version exists, the batch is as it
    was, nothing the dead replay wrote is left, and the replay then succeeds."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from tests.conftest import ADMIN_HEADERS
    from tests.serve import ServeProcess

    gateway = Gateway(tmp_path / "home", database_url, pii_engine)
    home, contracts = gateway.home, gateway.contracts
    write_contract(contracts, ["US", "DE"])
    client = gateway.start()
    answer = upload(client, csv(with_bad_rows(patients())))
    assert answer.status_code == 201, answer.text
    batch = f"/api/v1/quarantine/{answer.json()['quarantine']['id']}"
    gateway.stop()
    env = {"DATAGATE_CONTRACTS_DIR": str(contracts), "DATAGATE_SPACY_MODEL": ""}
    before = _sealed_and_parts(home)
    write_contract(contracts, ["US", "DE", "FR"], version="1.1.0")

    def replay(base: str) -> httpx.Response:
        return httpx.post(f"{base}{batch}/replay", headers=ADMIN_HEADERS, timeout=60)

    # Killed once the new version's objects are published and the still-held rows re-sealed,
    # before the transaction: the most a dead replay can leave behind.
    for number, point in enumerate(("replay:published",), start=1):
        server = ServeProcess(
            home,
            database_url,
            tmp_path / f"server-{number}.log",
            env={**env, "DATAGATE_DEBUG_HANG_AT": point},
        ).wait_ready()
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(replay, server.base)
            server.wait_for_log(f"checkpoint {point};")
            if point == "replay:published":
                assert _sealed_and_parts(home) - before, "nothing published before the kill"
            server.kill()
            with pytest.raises(httpx.TransportError):
                pending.result()

    final = ServeProcess(home, database_url, tmp_path / "server-final.log", env=env).wait_ready()
    try:
        path = f"{final.base}{batch}"
        state = httpx.get(path, headers=ADMIN_HEADERS, timeout=30).json()["batch"]
        assert (state["status"], state["revision"], state["rows_held"]) == ("open", 0, 2)
        versions = httpx.get(
            f"{final.base}/api/v1/datasets/patients/versions", headers=ADMIN_HEADERS, timeout=30
        ).json()["versions"]
        assert [v["version"] for v in versions] == [1]
        assert _sealed_and_parts(home) == before  # the dead replays' objects are gone
        done = httpx.post(f"{path}/replay", headers=ADMIN_HEADERS, timeout=60)
        assert done.status_code == 200, done.text
        assert (done.json()["released"], done.json()["version"]["version"]) == (1, 2)
    finally:
        final.stop()


def test_a_failure_of_no_row_in_particular_refuses_the_upload(gateway: Gateway) -> None:
    client = gateway.client
    assert client is not None
    missing = upload(client, csv(with_bad_rows(patients()).drop("score")))
    assert missing.status_code == 422
    assert "quarantine" not in missing.json()
    extra = upload(client, csv(with_bad_rows(patients()).with_columns(pl.lit(1).alias("x"))))
    assert extra.status_code == 422
    assert client.get("/api/v1/quarantine").json()["total"] == 0


def test_corrections_refuse_repeated_keys_and_keep_held_what_still_fails(gateway: Gateway) -> None:
    client = gateway.client
    assert client is not None
    batch_id = upload(client, csv(with_bad_rows(patients()))).json()["quarantine"]["id"]
    route = f"/api/v1/quarantine/{batch_id}/corrections?format=csv"
    twice = pl.DataFrame(
        {
            "patient_id": [7, 7],
            "email": ["a@example.com", "b@example.com"],
            "country": ["US", "US"],
            "score": [1.0, 2.0],
        }
    )
    refused = client.post(route, content=csv(twice))
    assert refused.status_code == 400
    assert "share a key" in refused.json()["detail"]
    # Still wrong: the corrected row replaces the held one, with its own failure.
    still = twice.head(1).with_columns(pl.lit(-5.0).alias("score"))
    answer = client.post(route, content=csv(still))
    assert answer.status_code == 200, answer.text
    assert (answer.json()["released"], answer.json()["still_held"]) == (0, 2)
    assert answer.json()["version"] is None
    rows = client.get(f"/api/v1/quarantine/{batch_id}").json()["rows"]
    seven = next(r for r in rows if r["row"] == 7)
    assert seven["failures"] == [
        {"column": "score", "check": "greater_than_or_equal_to(0)", "value": "-5.0"}
    ]
    # A correction to a key the version already holds stays held, as a duplicate.
    clash = twice.head(1).with_columns(pl.lit(3).alias("patient_id"), pl.lit("US").alias("country"))
    assert client.post(route, content=csv(clash)).json()["released"] == 1  # row 3, fixed
    again = client.post(route, content=csv(twice.head(1).with_columns(pl.lit(50.0).alias("score"))))
    assert again.json()["released"] == 1
    assert client.get(f"/api/v1/quarantine/{batch_id}").json()["batch"]["status"] == "replayed"


def test_a_correction_replaces_every_held_row_with_its_key(gateway: Gateway) -> None:
    client = gateway.client
    assert client is not None
    frame = with_bad_rows(patients()).with_columns(
        pl.when(pl.col("patient_id") == 3)
        .then(5)
        .otherwise(pl.col("patient_id"))
        .alias("patient_id")
    )
    # Row 3 (id 5, FR) and row 5 (id 5) repeat an id: both are held, with row 3's country too.
    answer = upload(client, csv(frame))
    assert answer.status_code == 201, answer.text
    batch_id = answer.json()["quarantine"]["id"]
    assert answer.json()["quarantine"]["rows"] == 3
    fixed = pl.DataFrame(
        {"patient_id": [5], "email": ["five@example.com"], "country": ["US"], "score": [5.0]}
    )
    route = f"/api/v1/quarantine/{batch_id}/corrections?format=csv"
    corrected = client.post(route, content=csv(fixed)).json()
    assert (corrected["released"], corrected["still_held"]) == (1, 1)
    v2 = stored(client, corrected["version"]["version"])
    assert v2.filter(pl.col("patient_id") == 5).height == 1
    assert corrected["batch"]["held_failures"] == [
        {"column": "score", "check": "less_than_or_equal_to(100)", "rows": 1}
    ]


def test_a_released_row_whose_key_is_stored_is_a_duplicate(tmp_path: Path) -> None:
    from gateway.contracts import load_contracts
    from gateway.review import _not_unique_against
    from gateway.snapshots import StagedSnapshot

    write_contract(tmp_path, ["US"])
    contract = load_contracts(tmp_path).require("patients")
    base = tmp_path / "base.parquet"
    pl.DataFrame({"patient_id": [2, 3], "email": ["h2", "h3"]}).write_parquet(base)
    released = pl.DataFrame({"patient_id": [1, 2], "email": ["h9", "h3"]})
    clash = _not_unique_against(released, contract, [StagedSnapshot(base, "x", 1, "k")])
    assert clash.to_list() == [False, True]  # id 2 is stored (email is not unique=True)


def test_quarantine_days_in_the_contract_and_the_manifest_reuses_stored_parts(
    gateway: Gateway,
) -> None:
    gateway.stop()
    (gateway.contracts / "patients.py").write_text(
        (gateway.contracts / "patients.py")
        .read_text()
        .replace('"min_valid_rows": 1,', '"min_valid_rows": 1, "quarantine_days": 3,')
    )
    client = gateway.start()
    answer = upload(client, csv(with_bad_rows(patients())))
    batch = client.get(f"/api/v1/quarantine/{answer.json()['quarantine']['id']}").json()["batch"]
    from datetime import datetime

    held_for = datetime.fromisoformat(batch["expires_at"]) - datetime.fromisoformat(
        batch["created_at"]
    )
    assert held_for == timedelta(days=3)
    described = client.get("/api/v1/contracts/patients").json()["policies"]
    assert described["quarantine"] == {
        "max_invalid_fraction": 0.3,
        "min_valid_rows": 1,
        "quarantine_days": 3,
        "keys": ["patient_id"],
    }
    gateway.stop()
    write_contract(gateway.contracts, ["US", "DE", "FR"], version="1.1.0")
    client = gateway.start()
    client.post(f"/api/v1/quarantine/{batch['id']}/replay")
    from gateway.snapshots import part_keys

    services = client.app.state.services  # type: ignore[attr-defined]
    with Session(services.engine) as session:
        from gateway.models import DatasetVersion

        keys = {v.number: v.storage_key for v in session.exec(select(DatasetVersion))}
    assert part_keys(services.snapshots, keys[2])[0] == keys[1]  # referred to, not copied


def test_the_readme_contract_quarantines(tmp_path: Path) -> None:
    import re

    from gateway.contracts import load_contracts

    readme = (CONTRACTS.parent / "README.md").read_text()
    section = readme[readme.index("## Quarantine and review") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    (tmp_path / "patients.py").write_text(code.group(1))
    contract = load_contracts(tmp_path).require("patients")
    assert contract.on_invalid == "quarantine"
    assert contract.quarantine is not None
    assert (
        contract.quarantine.max_invalid_fraction,
        contract.quarantine.min_valid_rows,
        contract.quarantine.expire_days,
        contract.quarantine.keys,
    ) == (0.05, 1, 30, ("patient_id",))


def test_every_gateway_process_expires_due_batches(gateway: Gateway) -> None:
    import time

    client = gateway.client
    assert client is not None
    batch_id = upload(client, csv(with_bad_rows(patients()))).json()["quarantine"]["id"]
    with unit_of_work(gateway_engine(gateway)) as session:
        row = session.get(QuarantineBatch, batch_id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
    # A restart with a quick heartbeat: its periodic sweep expires the batch, unasked.
    client = gateway.start(heartbeat_seconds=0.2, quarantine_sweep_seconds=0.2)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = client.get(f"/api/v1/quarantine/{batch_id}").json()["batch"]["status"]
        if state == "expired":
            break
        time.sleep(0.1)
    assert state == "expired"


def test_held_rows_on_an_object_store(gateway: Gateway, s3_url: str) -> None:
    """The snapshot store on S3: held rows sealed there, replayed, and their object deleted."""
    client = gateway.start(storage_url=s3_url)
    batch_id = upload(client, csv(with_bad_rows(patients()))).json()["quarantine"]["id"]
    services = client.app.state.services  # type: ignore[attr-defined]
    held = services.snapshots.keys(f"{QUARANTINE_PREFIX}/")
    assert len(held) == 1
    assert held[0].startswith(f"{QUARANTINE_PREFIX}/patients/{batch_id}/")
    gateway.stop()
    write_contract(gateway.contracts, ["US", "DE", "FR"], version="1.1.0")
    client = gateway.start(storage_url=s3_url)
    replay = client.post(f"/api/v1/quarantine/{batch_id}/replay")
    assert replay.status_code == 200, replay.text
    assert replay.json()["released"] == 1
    assert stored(client, 2).height == 19
    services = client.app.state.services  # type: ignore[attr-defined]
    (now,) = services.snapshots.keys(f"{QUARANTINE_PREFIX}/")
    assert now != held[0]  # the rows still held, sealed anew; the old object is gone
    discarded = client.post(f"/api/v1/quarantine/{batch_id}/discard", json={"reason": "done"})
    assert discarded.status_code == 200
    assert services.snapshots.keys(f"{QUARANTINE_PREFIX}/") == []
