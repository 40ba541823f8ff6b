"""An upload read in parts (``DATAGATE_INGEST_CHUNK_ROWS``) is stored, reported and refused
exactly as the same upload read whole: for every format, with duplicates and bad cells in later
parts, free text analysed once per distinct value, and undeclared PII found in any part."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from sqlmodel import Session, select

from gateway import formats
from gateway.app import create_app
from gateway.decoding import DecodeLimits
from gateway.jobs import run_ingest
from gateway.models import LineageEvent
from gateway.samples import customers
from gateway.validation import ROW_PLACE
from privacy import DetectionConfig, DetectionMemo, PiiEngine
from tests.conftest import CONTRACTS, admin_client, csv_bytes, encode, settings_for

ROWS = 300
PART = 37  # rows per part: nine parts, the last one short

NOTES = """
import pandera.polars as pa


class Notes(pa.DataFrameModel):
    id: int = pa.Field(unique=True)
    comment: str = pa.Field(nullable=True)

    class Config:
        name = "{name}"
        metadata = {{"version": "1.0.0", "undeclared_pii": "{policy}"}}
"""


@pytest.fixture
def contracts(tmp_path: Path) -> Path:
    folder = tmp_path / "contracts"
    shutil.copytree(CONTRACTS, folder)
    (folder / "notes.py").write_text(NOTES.format(name="notes", policy="redact"))
    (folder / "strict_notes.py").write_text(
        NOTES.format(name="strict_notes", policy="reject").replace("Notes(", "StrictNotes(")
    )
    return folder


@pytest.fixture
def pair(
    tmp_path: Path, database_url: str, contracts: Path, pii_engine: PiiEngine
) -> Iterator[tuple[TestClient, TestClient]]:
    """Two gateways on their own databases' homes: one reads uploads whole, one in parts."""
    clients = []
    for name, rows in (("whole", 1_000_000), ("parts", PART)):
        url = database_url if name == "parts" else f"sqlite:///{tmp_path / 'whole.db'}"
        settings = settings_for(
            tmp_path / name, contracts, database_url=url, ingest_chunk_rows=rows
        )
        clients.append(admin_client(create_app(settings, pii_engine=pii_engine)))
    with clients[0] as whole, clients[1] as parts:
        yield whole, parts


def _post(client: TestClient, dataset: str, body: bytes, fmt: str = "csv") -> Any:
    return client.post(f"/api/v1/datasets/{dataset}/uploads?format={fmt}", content=body)


def _stored(client: TestClient, dataset: str, number: int) -> pl.DataFrame:
    url = f"/api/v1/datasets/{dataset}/versions/{number}/data?format=parquet"
    response = client.get(url)
    assert response.status_code == 200, response.text
    return pl.read_parquet(io.BytesIO(response.content))


def _input_metrics(client: TestClient, run_id: str) -> Any:
    with Session(client.app.state.services.engine) as session:  # type: ignore[attr-defined]
        event = session.exec(
            select(LineageEvent).where(
                LineageEvent.run_id == run_id, LineageEvent.event_type == "COMPLETE"
            )
        ).one()
    return event.payload["inputs"][0]["inputFacets"]["dataQualityMetrics"]


def _same_outcome(whole: TestClient, parts: TestClient, dataset: str, body: bytes, fmt: str) -> Any:
    expected, got = _post(whole, dataset, body, fmt), _post(parts, dataset, body, fmt)
    assert got.status_code == expected.status_code, got.text
    if expected.status_code >= 400:
        report, wanted = got.json()["report"], expected.json()["report"]
        if "columns" in wanted:
            # PII found: the same columns, entities and action. How an undeclared column was
            # looked at may differ: its kind is decided on the first part's sample.
            def found(pii: dict[str, Any]) -> list[tuple[str, str, str]]:
                return [(c["column"], c["entity"], c["action"]) for c in pii["columns"]]

            assert found(report) == found(wanted)
        else:
            assert report == wanted
        return got.json()
    run_whole = whole.get(f"/api/v1/runs/{expected.json()['run_id']}").json()
    run_parts = parts.get(f"/api/v1/runs/{got.json()['run_id']}").json()
    assert run_parts["validation_report"] == run_whole["validation_report"]
    pii = {c["column"]: c for c in run_parts["pii_report"]["columns"]}
    for column in run_whole["pii_report"]["columns"]:
        mine = pii[column["column"]]
        assert (mine["action"], mine["values_redacted"], mine.get("spans")) == (
            column["action"],
            column["values_redacted"],
            column.get("spans"),
        ), column["column"]
    assert_frame_equal(_stored(parts, dataset, 1), _stored(whole, dataset, 1))
    # Counted exactly from the one part, estimated from the parts' sketch: the same counts.
    metrics_whole, metrics_parts = (
        _input_metrics(c, r.json()["run_id"]) for c, r in ((whole, expected), (parts, got))
    )
    assert metrics_parts["rowCount"] == metrics_whole["rowCount"]
    assert metrics_parts["columnMetrics"].keys() == metrics_whole["columnMetrics"].keys()
    for column, wanted in metrics_whole["columnMetrics"].items():
        mine = metrics_parts["columnMetrics"][column]
        assert mine["nullCount"] == wanted["nullCount"], column
        assert abs(mine["distinctCount"] - wanted["distinctCount"]) <= max(
            1, 0.02 * wanted["distinctCount"]
        ), column
    for download in ("csv", "ndjson"):  # streamed from the parts, the same bytes
        url = f"/api/v1/datasets/{dataset}/versions/1/data?format={download}"
        assert parts.get(url).content == whole.get(url).content
    # Stored in parts (a hash over the parts' hashes), the same upload again is the same data.
    again = _post(parts, dataset, body, fmt)
    assert again.status_code == 200, again.text
    assert again.json()["version"]["content_hash"] == got.json()["version"]["content_hash"]
    return got.json()


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json", "parquet", "arrow"])
def test_every_format_in_parts_is_stored_as_it_is_whole(
    pair: tuple[TestClient, TestClient], fmt: str
) -> None:
    frame = customers(ROWS, seed=3, notes=True)
    answer = _same_outcome(*pair, "customers", encode(frame, fmt), fmt)
    assert answer["version"]["row_count"] == ROWS


def test_duplicates_in_different_parts_are_refused_with_their_rows(
    pair: tuple[TestClient, TestClient],
) -> None:
    frame = customers(ROWS, seed=5)
    ids = frame["customer_id"].to_list()
    ids[250] = ids[3]  # rows 4 and 251, seven parts apart
    ids[299] = ids[40]  # and in the last, short part
    body = csv_bytes(frame.with_columns(pl.Series("customer_id", ids)))
    answer = _same_outcome(*pair, "customers", body, "csv")
    unique = next(f for f in answer["report"]["failures"] if f["check"] == "field_uniqueness")
    assert [e["row"] for e in unique["examples"]] == [4, 41, 251, 300]


def test_a_bad_cell_in_a_late_part_is_reported_as_whole(
    pair: tuple[TestClient, TestClient],
) -> None:
    # The first parts parse straight into the contract's dtypes; the part with the bad cell
    # and the rest are read as text: the report is the whole upload's, rows counted globally.
    text = csv_bytes(customers(ROWS, seed=8)).decode().splitlines()
    cells = text[200].split(",")
    cells[text[0].split(",").index("orders_count")] = "many"
    text[200] = ",".join(cells)
    answer = _same_outcome(*pair, "customers", ("\n".join(text) + "\n").encode(), "csv")
    failure = next(f for f in answer["report"]["failures"] if f["column"] == "orders_count")
    assert failure["examples"][0]["row"] == 200


def test_undeclared_pii_in_a_late_part_is_found(pair: tuple[TestClient, TestClient]) -> None:
    comments: list[str | None] = [None] * ROWS
    comments[290] = "write to ann.lee@example.com about the refund"
    frame = pl.DataFrame({"id": range(ROWS), "comment": comments})
    body = csv_bytes(frame)
    _same_outcome(*pair, "notes", body, "csv")
    stored = _stored(pair[1], "notes", 1)
    assert "ann.lee@example.com" not in json.dumps(stored.to_dicts())
    refused = _same_outcome(*pair, "strict_notes", body, "csv")
    assert refused["type"].endswith("/undeclared-pii")


def test_progress_counts_rows_and_parts(pair: tuple[TestClient, TestClient]) -> None:
    _, parts = pair
    body = csv_bytes(customers(ROWS, seed=9))
    response = parts.post(
        "/api/v1/datasets/customers/uploads",
        content=body,
        headers={"Content-Type": "text/csv", "Prefer": "respond-async"},
    )
    assert response.status_code == 202
    services = parts.app.state.services  # type: ignore[attr-defined]
    if services.engine.dialect.name == "postgresql":  # no worker in this process: be one
        run_ingest(services, response.json()["run_id"])
    run = parts.get(f"{response.headers['Location']}?wait=30").json()
    assert run["status"] == "accepted", run
    assert run["progress"] == {
        "stages_done": 5,
        "stages_total": 5,
        "rows_done": ROWS,
        "rows_total": ROWS,
        "parts_done": -(-ROWS // PART),
    }


def test_a_text_seen_in_an_earlier_part_is_not_analysed_again(pii_engine: PiiEngine) -> None:
    analysed: list[str] = []

    class Counting(PiiEngine):
        def __init__(self) -> None:
            self.__dict__.update(pii_engine.__dict__)

        def detect(self, texts: pl.Series, config: DetectionConfig) -> list[Any]:
            analysed.extend(texts.to_list())
            return pii_engine.detect(texts, config)

    memo = DetectionMemo(Counting())
    config = DetectionConfig()
    seen = ["mail ann@example.org", "no PII here", "mail ann@example.org"]
    first = memo.detect(pl.Series(seen), config)
    again = memo.detect(pl.Series(["no PII here", "mail bo@example.org", None]), config)
    assert analysed == ["mail ann@example.org", "no PII here", "mail bo@example.org", ""]
    assert first[0] == first[2]
    assert [s.entity for s in first[0]] == ["EMAIL_ADDRESS"]
    assert again[0] == first[1] == []
    assert [s.entity for s in again[1]] == ["EMAIL_ADDRESS"]


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(
    texts=st.lists(
        st.text(alphabet=st.sampled_from('ab,"\n\r é'), max_size=12) | st.none(), max_size=40
    ),
    rows=st.integers(1, 7),
    block=st.integers(1, 64),
)
def test_csv_parts_end_only_between_rows(
    tmp_path_factory: pytest.TempPathFactory, texts: list[str | None], rows: int, block: int
) -> None:
    # Quoted fields with newlines, commas and doubled quotes, cut at any block size: each part
    # read with the header is exactly its rows of the whole file.
    path = tmp_path_factory.mktemp("csv") / "upload.csv"
    frame = pl.DataFrame(
        {"n": range(len(texts)), "text": texts}, schema_overrides={"text": pl.String}
    )
    frame.write_csv(path)
    whole = pl.read_csv(path, infer_schema=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(formats, "_SPLIT_BLOCK", block)
        limits = DecodeLimits(bytes=1 << 30, rows=1 << 30, columns=10, depth=4)
        if whole.height == 0:
            return
        parts = list(formats.read_chunks(path, "csv", {"text": pl.String()}, limits, rows))
    assert all(p.height == rows for p in parts[:-1])
    joined = pl.concat([p.cast(pl.String) for p in parts])
    assert_frame_equal(joined, whole)


def test_the_column_that_places_rows_cannot_be_uploaded(
    pair: tuple[TestClient, TestClient],
) -> None:
    # A part of a drop_invalid_rows contract keeps its rows' places in a hidden column; an
    # upload's own column of that name would be taken for it (and dropped), so it is refused.
    _, parts = pair
    body = csv_bytes(pl.DataFrame({"id": [1, 2], "comment": ["a", "b"], ROW_PLACE: [0, 1]}))
    response = _post(parts, "notes", body)
    assert response.status_code == 400, response.text
    assert "reserved" in response.json()["detail"]
