"""Every scalar dtype through every upload format: what is stored is what was sent, or the
upload is refused with a report — a text format never changes a value on its way in."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient
from polars.testing import assert_frame_equal

from gateway.app import create_app
from privacy import PiiEngine
from tests.conftest import admin_client, settings_for

CONTRACT = """
import pandera.polars as pa
import polars as pl


class Shapes(pa.DataFrameModel):
    tags: pl.List(pl.String) = pa.Field(nullable=True)
    point: pl.Struct({"x": pl.Int64, "label": pl.String})

    class Config:
        name = "shapes"
        coerce = False
        metadata = {"undeclared_pii": "warn"}


class Kinds(pa.DataFrameModel):
    i16: pl.Int16
    u16: pl.UInt16
    i64: pl.Int64
    f32: pl.Float32
    f64: pl.Float64
    dec: pl.Decimal(10, 2)
    day: pl.Date
    at: pl.Datetime("us")
    at_utc: pl.Datetime("us", "UTC")
    flag: pl.Boolean
    word: str

    class Config:
        name = "kinds"
        coerce = False
        metadata = {"undeclared_pii": "warn"}
"""

FRAME = pl.DataFrame(
    {
        "i16": pl.Series([-32768, 0, 32767], dtype=pl.Int16),
        "u16": pl.Series([0, 1, 65535], dtype=pl.UInt16),
        "i64": [-(2**63), 0, 2**63 - 1],
        "f32": pl.Series([0.1, -2.5, 3.4e38], dtype=pl.Float32),
        "f64": [0.1, -1e-300, 1.7976931348623157e308],
        "dec": pl.Series([Decimal("12.34"), Decimal("-0.01"), Decimal("99999999.99")]),
        "day": [dt.date(1970, 1, 1), dt.date(2024, 2, 29), dt.date(9999, 12, 31)],
        "at": [
            dt.datetime(2024, 1, 1, 0, 0, 0, 123456),
            dt.datetime(1999, 12, 31, 23, 59, 59),
            dt.datetime(2038, 1, 19, 3, 14, 8),
        ],
        "at_utc": pl.Series(
            [
                dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC),
                dt.datetime(2024, 6, 1, 0, 0, 0, 1, tzinfo=dt.UTC),
                dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
            ],
            dtype=pl.Datetime("us", "UTC"),
        ),
        "flag": [True, False, True],
        "word": ["alpha", "beta", "gamma"],
    },
    schema_overrides={"dec": pl.Decimal(10, 2), "at": pl.Datetime("us")},
)


def _parquet(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_parquet(out)
    return out.getvalue()


def _arrow(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_ipc(out)
    return out.getvalue()


FORMATS: dict[str, Callable[[pl.DataFrame], bytes]] = {
    "parquet": _parquet,
    "arrow": _arrow,
    "csv": lambda f: f.write_csv().encode(),
    "ndjson": lambda f: f.write_ndjson().encode(),
    "json": lambda f: f.write_json().encode(),
}


@pytest.fixture
def client(tmp_path: Path, database_url: str, pii_engine: PiiEngine) -> Iterator[TestClient]:
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "kinds.py").write_text(CONTRACT)
    settings = settings_for(tmp_path / "home", contracts, database_url=database_url)
    with admin_client(create_app(settings, pii_engine=pii_engine)) as test_client:
        yield test_client


def _stored(client: TestClient, version: int) -> pl.DataFrame:
    data = client.get(f"/api/v1/datasets/kinds/versions/{version}/data")
    assert data.status_code == 200, data.text
    return pl.read_parquet(io.BytesIO(data.content))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_dtype_arrives_unchanged_in_every_format(client: TestClient, fmt: str) -> None:
    response = client.post(
        f"/api/v1/datasets/kinds/uploads?format={fmt}", content=FORMATS[fmt](FRAME)
    )
    assert response.status_code in (200, 201), response.text
    assert_frame_equal(_stored(client, response.json()["version"]["version"]), FRAME)


REFUSED: dict[str, tuple[str, bytes, str]] = {
    # name: (format, body, the column reported)
    "csv-decimal-digits": (
        "csv",
        FRAME.with_columns(pl.col("dec").cast(pl.String))
        .with_columns(pl.lit("12.345").alias("dec"))
        .write_csv()
        .encode(),
        "dec",
    ),
    "csv-nanoseconds": (
        "csv",
        FRAME.with_columns(pl.lit("2024-01-01T00:00:00.123456789").alias("at"))
        .write_csv()
        .encode(),
        "at",
    ),
    "csv-int16-overflow": (
        "csv",
        FRAME.with_columns(pl.lit(70000).alias("i16")).write_csv().encode(),
        "i16",
    ),
    "csv-fraction-for-integer": (
        "csv",
        FRAME.with_columns(pl.lit(2.5).alias("i64")).write_csv().encode(),
        "i64",
    ),
    "ndjson-int16-overflow": (
        "ndjson",
        FRAME.with_columns(pl.lit(70000).alias("i16")).write_ndjson().encode(),
        "i16",
    ),
    "ndjson-decimal-digits": (
        "ndjson",
        FRAME.with_columns(pl.lit(12.345).alias("dec")).write_ndjson().encode(),
        "dec",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_value_that_would_change_is_reported_not_stored(client: TestClient, name: str) -> None:
    fmt, body, column = REFUSED[name]
    response = client.post(f"/api/v1/datasets/kinds/uploads?format={fmt}", content=body)
    assert response.status_code == 422, response.text
    assert column in {f["column"] for f in response.json()["report"]["failures"]}


def test_an_integer_written_as_a_float_is_that_integer(client: TestClient) -> None:
    frame = FRAME.head(2).with_columns(pl.Series("i64", [7.0, 0.0]))
    body = frame.write_csv().encode()
    assert b",7.0," in body
    response = client.post("/api/v1/datasets/kinds/uploads?format=csv", content=body)
    assert response.status_code == 201, response.text
    stored = _stored(client, response.json()["version"]["version"])
    assert stored["i64"].to_list() == [7, 0]


SHAPES = pl.DataFrame(
    {
        "tags": pl.Series([["a", "b"], [], None], dtype=pl.List(pl.String)),
        "point": [{"x": 1, "label": "p"}, {"x": -2, "label": None}, {"x": 3, "label": "r"}],
    }
)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_lists_and_structs_arrive_unchanged_or_are_refused(client: TestClient, fmt: str) -> None:
    # CSV has no nested values: a list or struct written as text is not one.
    body = b'tags,point\n"[""a""]","{""x"": 1}"\n' if fmt == "csv" else FORMATS[fmt](SHAPES)
    response = client.post(f"/api/v1/datasets/shapes/uploads?format={fmt}", content=body)
    if fmt == "csv":
        assert response.status_code == 422, response.text
        assert {f["column"] for f in response.json()["report"]["failures"]} == {"tags", "point"}
        return
    assert response.status_code in (200, 201), response.text
    data = client.get(
        f"/api/v1/datasets/shapes/versions/{response.json()['version']['version']}/data"
    )
    assert_frame_equal(pl.read_parquet(io.BytesIO(data.content)), SHAPES)
