"""Uploads through the API, on SQLite and PostgreSQL: versions, dedupe, rejections, errors."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import zstandard
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from gateway.models import DatasetVersion, IngestRun, LineageEvent
from gateway.settings import Settings
from privacy import RedactionKey
from tests.conftest import TEST_PII_KEY, csv_bytes
from tests.openlineage_spec import validate_event

UPLOAD = "/api/v1/datasets/customers/uploads"
PROBLEM = "application/problem+json"


def _post(client: TestClient, body: bytes, content_type: str = "text/csv", query: str = "") -> Any:
    return client.post(UPLOAD + query, content=body, headers={"Content-Type": content_type})


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _leftover_files(settings: Settings) -> list[Path]:
    folders = [settings.tmp_dir, settings.home / "snapshots" / ".staging"]
    # Each process keeps its own (empty when idle) working folder in both places.
    return [p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()]


def _events(client: TestClient) -> list[LineageEvent]:
    with Session(client.app.state.services.engine) as session:  # type: ignore[attr-defined]
        return list(session.exec(select(LineageEvent).order_by(col(LineageEvent.id))).all())


def test_csv_upload_creates_version_one_with_metadata(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    response = client.post(
        UPLOAD + "?source=crm:exports/customers.csv",
        content=csv_bytes(customers_frame),
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    version = body["version"]
    assert response.headers["location"] == "/api/v1/datasets/customers/versions/1"
    assert body["created"] is True
    assert version["version"] == 1
    assert version["row_count"] == 50
    assert version["source"] == "crm:exports/customers.csv"
    assert version["contract"]["name"] == "customers"
    assert version["contract"]["version"] == "1.2.0"
    assert len(version["contract"]["fingerprint"]) == 64
    assert len(version["content_hash"]) == 64
    assert version["byte_size"] > 0
    assert version["uploader"] == "admin-key"
    assert {f["name"] for f in version["schema"]} >= {"customer_id", "email", "signup_date"}
    assert version["validation"]["valid"] is True
    assert {c["column"]: c["action"] for c in version["pii"]["columns"]} == {
        "email": "hash",
        "full_name": "mask",
        "phone": "replace",
        "notes": "scan",
        "country": "none",
        "city": "none",
        "segment": "none",
    }
    listed = client.get("/api/v1/datasets/customers/versions").json()["versions"]
    assert [v["version"] for v in listed] == [1]


@pytest.mark.parametrize(
    ("encode", "content_type", "query"),
    [
        (lambda f: _parquet(f), "application/vnd.apache.parquet", ""),
        (lambda f: f.write_ndjson().encode(), "application/x-ndjson", ""),
        (lambda f: f.write_json().encode(), "application/json", ""),
        (lambda f: gzip.compress(csv_bytes(f)), "application/gzip", "?format=csv"),
        (lambda f: zstandard.compress(_parquet(f)), "application/octet-stream", ""),
        (lambda f: csv_bytes(f), "application/octet-stream", ""),
    ],
    ids=["parquet", "ndjson", "json-array", "csv-gzip", "parquet-zstd", "csv-sniffed"],
)
def test_identical_data_in_another_format_returns_the_existing_version(
    client: TestClient, customers_frame: pl.DataFrame, encode: object, content_type: str, query: str
) -> None:
    first = _post(client, csv_bytes(customers_frame))
    assert first.status_code == 201
    again = _post(client, encode(customers_frame), content_type, query)  # type: ignore[operator]
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert again.json()["version"]["version"] == 1
    assert again.json()["version"]["content_hash"] == first.json()["version"]["content_hash"]
    assert len(client.get("/api/v1/datasets/customers/versions").json()["versions"]) == 1


def test_multipart_upload_with_file_name(client: TestClient, customers_frame: pl.DataFrame) -> None:
    response = client.post(
        UPLOAD,
        files={
            "file": ("customers.ndjson.gz", gzip.compress(customers_frame.write_ndjson().encode()))
        },
    )
    assert response.status_code == 201, response.text
    run = client.get(f"/api/v1/runs/{response.json()['run_id']}").json()
    assert run["filename"] == "customers.ndjson.gz"
    assert run["format"] == "ndjson"


def test_changed_data_becomes_the_next_version(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    assert _post(client, csv_bytes(customers_frame)).status_code == 201
    changed = customers_frame.with_columns(pl.col("orders_count") + 1)
    response = _post(client, csv_bytes(changed))
    assert response.status_code == 201
    assert response.json()["version"]["version"] == 2
    dataset = client.get("/api/v1/datasets/customers").json()
    assert dataset["latest_version"]["version"] == 2
    assert dataset["version_count"] == 2
    assert dataset["contract"]["owner"] == "crm-team"


def test_pseudonyms_are_keyed_hmac_and_stable_across_uploads(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    _post(client, csv_bytes(customers_frame))
    _post(client, csv_bytes(customers_frame.head(10).with_columns(pl.col("orders_count") + 7)))
    first = pl.read_parquet(
        io.BytesIO(client.get("/api/v1/datasets/customers/versions/1/data").content)
    )
    second = pl.read_parquet(
        io.BytesIO(client.get("/api/v1/datasets/customers/versions/2/data").content)
    )
    subkey = RedactionKey(TEST_PII_KEY.encode()).derive("pseudonym")
    expected = [
        hmac.new(subkey, e.encode(), hashlib.sha256).hexdigest() for e in customers_frame["email"]
    ]
    assert first["email"].to_list() == expected
    assert second["email"].to_list() == expected[:10]


def test_downloads_hold_only_redacted_values(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    frame = customers_frame.with_columns(
        pl.lit("Spoke with Mary Jones, call back on +1 202 555 0143").alias("notes")
    )
    _post(client, csv_bytes(frame))
    raw_values = {*frame["email"], *frame["full_name"], *frame["phone"].drop_nulls(), "Mary Jones"}
    for fmt, media in [
        ("parquet", "application/vnd.apache.parquet"),
        ("csv", "text/csv"),
        ("ndjson", "application/x-ndjson"),
    ]:
        response = client.get(f"/api/v1/datasets/customers/versions/1/data?format={fmt}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media)
        if fmt == "parquet":
            stored = pl.read_parquet(io.BytesIO(response.content))
        elif fmt == "csv":
            stored = pl.read_csv(io.BytesIO(response.content))
        else:
            stored = pl.read_ndjson(io.BytesIO(response.content))
        assert stored.height == 50
        text = response.content.decode("latin-1")
        assert not [v for v in raw_values if v in text]
        assert stored["phone"].drop_nulls().unique().to_list() == ["<PHONE_NUMBER>"]
        assert stored["notes"].unique().to_list() == [
            "Spoke with <PERSON>, call back on <PHONE_NUMBER>"
        ]
        assert stored["full_name"].str.contains(r"[A-Za-z]").sum() == 0


def test_contract_violation_is_rejected_with_a_capped_redacted_report(
    client: TestClient, customers_frame: pl.DataFrame, settings: Settings
) -> None:
    bad = customers_frame.with_columns(
        pl.when(pl.int_range(pl.len()) < 15)
        .then(pl.lit("not-an-email"))
        .otherwise(pl.col("email"))
        .alias("email"),
        pl.when(pl.int_range(pl.len()) == 3)
        .then(-5.0)
        .otherwise(pl.col("lifetime_value"))
        .alias("lifetime_value"),
    )
    text = csv_bytes(bad).decode().replace(",enterprise,", ",galactic,", 1)
    response = _post(client, text.encode())
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"].endswith("/contract-violation")
    assert problem["status"] == 422
    report = problem["report"]
    by_check = {(f["column"], f["check"].split("(")[0]): f for f in report["failures"]}
    email = by_check[("email", "str_matches")]
    assert email["failing_rows"] == 15
    assert len(email["examples"]) == 10
    assert {e["value"] for e in email["examples"]} == {"<EMAIL_ADDRESS>"}
    assert [e["row"] for e in email["examples"]] == list(range(1, 11))
    value = by_check[("lifetime_value", "greater_than_or_equal_to")]
    assert value["examples"] == [{"row": 4, "value": "-5.0"}]
    assert ("segment", "isin") in by_check
    assert "not-an-email" not in response.text
    run = client.get(f"/api/v1/runs/{problem['run_id']}").json()
    assert run["status"] == "rejected"
    assert run["validation_report"] == report
    assert run["version"] is None
    assert client.get("/api/v1/datasets/customers/versions").json()["versions"] == []
    snapshots = settings.home / "snapshots"
    assert list(snapshots.rglob("*.parquet")) == []
    assert _leftover_files(settings) == []


def test_unparseable_cells_are_contract_failures_not_server_errors(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    text = csv_bytes(customers_frame.head(3)).decode().splitlines()
    cells = text[2].split(",")
    cells[0], cells[6] = "12x", "2021-02-30"
    text[2] = ",".join(cells)
    response = _post(client, ("\n".join(text) + "\n").encode())
    assert response.status_code == 422
    failures = {f["column"]: f for f in response.json()["report"]["failures"]}
    assert failures["customer_id"]["check"] == "dtype('Int64')"
    assert failures["customer_id"]["examples"] == [{"row": 2, "value": "12x"}]
    assert failures["signup_date"]["examples"] == [{"row": 2, "value": "2021-02-30"}]
    assert "not_nullable" not in {f["check"] for f in response.json()["report"]["failures"]}


@pytest.mark.parametrize(
    ("body", "content_type", "query", "status", "kind"),
    [
        (b"", "text/csv", "", 400, "empty-upload"),
        (b"customer_id,email\n", "text/csv", "", 400, "empty-upload"),
        (
            b"PAR1 this is not parquet",
            "application/vnd.apache.parquet",
            "",
            400,
            "unreadable-upload",
        ),
        (gzip.compress(b"a,b\n1,2\n")[:-8] + b"\x00" * 3, "text/csv", "", 400, "unreadable-upload"),
        (b"a,b\n1,2\n", "image/png", "", 415, "unsupported-format"),
        (b"a,b\n1,2\n", "text/csv", "?format=xml", 415, "unsupported-format"),
        (b"x" * 5_000_001, "text/csv", "", 413, "upload-too-large"),
        (gzip.compress(b"a\n" + b"1\n" * 3_000_000), "text/csv", "", 413, "upload-too-large"),
        (b"a,b\n1,2\n", "text/csv", "?source=nonsense", 400, "invalid-request"),
        (b"[1, 2, 3]", "application/json", "", 400, "unreadable-upload"),
        (b"customer_id,email\n1,a@b.co,extra\n", "text/csv", "", 400, "unreadable-upload"),
        ("customer_id\n1\n".encode("utf-16"), "text/csv", "", 400, "unreadable-upload"),
        (b'{"a": 1}\n[2]\n', "application/x-ndjson", "", 400, "unreadable-upload"),
        (
            b"ARROW1\x00\x00garbage",
            "application/vnd.apache.arrow.file",
            "",
            400,
            "unreadable-upload",
        ),
    ],
    ids=[
        "empty",
        "header-only",
        "corrupt-parquet",
        "truncated-gzip",
        "png",
        "format-xml",
        "too-large",
        "gzip-bomb",
        "bad-source",
        "json-not-records",
        "ragged-csv",
        "utf16-csv",
        "ndjson-mixed-shapes",
        "corrupt-arrow",
    ],
)
def test_bad_uploads_get_problem_json_and_leave_nothing_behind(
    client: TestClient,
    settings: Settings,
    body: bytes,
    content_type: str,
    query: str,
    status: int,
    kind: str,
) -> None:
    response = _post(client, body, content_type, query)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("/" + kind)
    assert response.json()["status"] == status
    assert _leftover_files(settings) == []
    if kind not in ("invalid-request", "upload-too-large"):
        # A body refused while it streamed never arrived: no run (only its audit entry).
        run = client.get(f"/api/v1/runs/{response.json()['run_id']}").json()
        assert run["status"] == "failed"
        assert run["error"]["status"] == status


def test_unknown_dataset_is_404_problem(client: TestClient) -> None:
    response = client.post("/api/v1/datasets/nope/uploads", content=b"a\n1\n")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("/dataset-not-found")
    for path in [
        "/api/v1/datasets/nope",
        "/api/v1/datasets/customers/versions/9",
        "/api/v1/runs/x",
        "/api/v1/contracts/nope",
    ]:
        missing = client.get(path)
        assert missing.status_code == 404, path
        assert missing.headers["content-type"] == PROBLEM


def test_run_reports_status_and_timing_of_every_stage(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    response = _post(client, csv_bytes(customers_frame))
    run = client.get(f"/api/v1/runs/{response.json()['run_id']}").json()
    assert run["status"] == "accepted"
    assert run["version"] == 1
    assert set(run["timings"]) == {"parse", "validate", "redact", "version", "drift", "record"}
    assert run["validation_report"]["valid"] is True
    assert run["pii_report"]["columns"]
    assert run["finished_at"] is not None


def test_every_ingest_stores_start_and_final_events_that_follow_the_spec(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    accepted = _post(
        client, csv_bytes(customers_frame), query="?source=s3://user:secret@bucket/in/c.csv"
    )
    rejected = _post(client, csv_bytes(customers_frame.with_columns(pl.lit("XX").alias("country"))))
    events = _events(client)
    by_run: dict[str, list[str]] = {}
    for event in events:
        validate_event(event.payload)
        by_run.setdefault(str(event.run_id), []).append(str(event.event_type))
    assert by_run[accepted.json()["run_id"]] == ["START", "COMPLETE"]
    assert by_run[rejected.json()["run_id"]] == ["START", "FAIL"]
    complete = next(e.payload for e in events if e.event_type == "COMPLETE")
    assert complete["job"] == {
        "namespace": "datagate",
        "name": "ingest.customers",
        "facets": complete["job"]["facets"],
    }
    assert complete["job"]["facets"]["jobType"]["jobType"] == "INGEST"
    assert complete["inputs"][0]["namespace"] == "s3://bucket"
    assert "secret" not in json.dumps(complete)
    output = complete["outputs"][0]
    assert output["facets"]["version"]["datasetVersion"] == "1"
    assert {f["name"] for f in output["facets"]["schema"]["fields"]} >= {"email", "customer_id"}
    assert output["facets"]["ownership"]["owners"][0]["name"] == "crm-team"
    assertions = complete["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert all(a["success"] for a in assertions)
    metrics = complete["inputs"][0]["inputFacets"]["dataQualityMetrics"]
    assert metrics["rowCount"] == 50
    assert metrics["columnMetrics"]["customer_id"]["nullCount"] == 0
    assert metrics["columnMetrics"]["customer_id"]["distinctCount"] == 50
    assert metrics["columnMetrics"]["notes"]["nullCount"] == 50
    lineage = output["facets"]["columnLineage"]["fields"]
    email = lineage["email"]
    assert email["transformationType"] == "MASKED"
    assert email["inputFields"][0]["field"] == "email"
    assert email["inputFields"][0]["namespace"] == "s3://bucket"
    assert email["inputFields"][0]["transformations"][0]["masking"] is True
    assert lineage["customer_id"]["transformationType"] == "IDENTITY"
    assert lineage["customer_id"]["inputFields"][0]["transformations"][0]["masking"] is False
    pii = {c["column"]: c["action"] for c in output["facets"]["datagate_pii"]["columns"]}
    assert pii["email"] == "hash"
    assert output["facets"]["datagate_pii"]["_schemaURL"].startswith("https://")
    fail = next(e.payload for e in events if e.event_type == "FAIL")
    assert "Contract violation" in fail["run"]["facets"]["errorMessage"]["message"]
    failed = [
        a
        for a in fail["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]
        if not a["success"]
    ]
    assert [(a["assertion"], a["column"]) for a in failed] == [("isin", "country")]


def test_rejected_upload_stores_nothing_but_its_run(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    _post(client, csv_bytes(customers_frame.with_columns(pl.lit(-1).alias("orders_count"))))
    with Session(client.app.state.services.engine) as session:  # type: ignore[attr-defined]
        assert session.exec(select(DatasetVersion)).all() == []
        runs = session.exec(select(IngestRun)).all()
    assert [r.status for r in runs] == ["rejected"]


def test_csv_with_a_byte_order_mark_is_accepted(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    response = _post(client, b"\xef\xbb\xbf" + csv_bytes(customers_frame))
    assert response.status_code == 201, response.text
    assert response.json()["version"]["schema"][0]["name"] == "customer_id"


def test_nested_json_values_are_dtype_failures_not_server_errors(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    records = json.loads(customers_frame.head(2).write_json())
    for record in records:
        record["customer_id"] = {"nested": [1, 2]}
    response = _post(client, json.dumps(records).encode(), "application/json")
    assert response.status_code == 422, response.text
    failure = next(f for f in response.json()["report"]["failures"] if f["column"] == "customer_id")
    assert failure["check"] == "dtype('Int64')"


def test_successful_upload_and_downloads_leave_no_temporary_files(
    client: TestClient, customers_frame: pl.DataFrame, settings: Settings
) -> None:
    assert _post(client, gzip.compress(csv_bytes(customers_frame))).status_code == 201
    assert _post(client, csv_bytes(customers_frame)).status_code == 200
    for fmt in ("csv", "ndjson", "parquet"):
        url = f"/api/v1/datasets/customers/versions/1/data?format={fmt}"
        assert client.get(url).status_code == 200
    assert _leftover_files(settings) == []
    stored = list((settings.home / "snapshots" / "customers").iterdir())
    assert len(stored) == 1  # the matched upload stored no object of its own
    run_id = client.get("/api/v1/datasets/customers/versions/1").json()["run_id"]
    assert stored[0].name.endswith(f"-{run_id}.parquet")


def test_unexpected_error_names_the_stage_and_logs_no_data(
    client: TestClient,
    customers_frame: pl.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from gateway import pipeline, stages

    def broken_redact(batch: stages.Batch, services: object) -> stages.Batch:
        raise ValueError("cannot handle ann.lee@example.com")

    broken = tuple((name, broken_redact if name == "redact" else fn) for name, fn in stages.STAGES)
    monkeypatch.setattr(pipeline, "STAGES", broken)  # what run_pipeline runs
    response = _post(client, csv_bytes(customers_frame))
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith("/ingest-failed")
    assert response.json()["stage"] == "redact"
    run = client.get(f"/api/v1/runs/{response.json()['run_id']}").json()
    assert run["status"] == "failed"
    assert "ann.lee" not in response.text + json.dumps(run) + caplog.text
    assert "failed in stage redact" in caplog.text
    assert client.get("/api/v1/datasets/customers/versions").json()["versions"] == []


def test_csv_downloads_neutralise_spreadsheet_formulas(
    client: TestClient, customers_frame: pl.DataFrame
) -> None:
    formula = "=cmd|' /C calc'!A0"
    frame = customers_frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 0)
        .then(pl.lit(formula))
        .otherwise(pl.col("city"))
        .alias("city")
    )
    assert _post(client, csv_bytes(frame)).status_code == 201
    csv = client.get("/api/v1/datasets/customers/versions/1/data?format=csv").content
    assert pl.read_csv(io.BytesIO(csv))["city"][0] == "'" + formula
    parquet = client.get("/api/v1/datasets/customers/versions/1/data").content
    assert pl.read_parquet(io.BytesIO(parquet))["city"][0] == formula


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (UPLOAD, b"customer_id,customer_id\n1,2\n"),
        (UPLOAD, b"customer_id,\n1,2\n"),
        (UPLOAD, (",".join(f"c{i}" for i in range(10_000)) + "\n" + "1," * 9_999 + "1\n").encode()),
        (UPLOAD, b"customer_id\n" + b"9" * 4_000_000 + b"\n"),
        ("/api/v1/datasets/..%2F..%2Fetc%2Fpasswd/uploads", b"a\n1\n"),
        ("/api/v1/datasets/a%00b/uploads", b"a\n1\n"),
        ("/api/v1/datasets/x';DROP TABLE dataset;--/uploads", b"a\n1\n"),
    ],
    ids=[
        "duplicate-columns",
        "empty-column-name",
        "10k-columns",
        "4MB-line",
        "dot-dot",
        "nul",
        "sql",
    ],
)
def test_hostile_uploads_get_a_4xx_problem_and_leave_nothing(
    client: TestClient, settings: Settings, path: str, body: bytes
) -> None:
    response = client.post(path, content=body, headers={"Content-Type": "text/csv"})
    assert 400 <= response.status_code < 500, response.text[:300]
    assert response.headers["content-type"] == PROBLEM
    assert _leftover_files(settings) == []
    assert client.get("/api/v1/datasets/customers/versions").json()["versions"] == []
    assert client.get("/healthz").status_code == 200
