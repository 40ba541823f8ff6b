"""Casting to contract dtypes and Pandera validation reports, on frames built inline."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from bench.generate import customers
from gateway.app import create_app
from gateway.contracts import load_contracts
from gateway.validation import MAX_EXAMPLES, validate_frame
from privacy import PiiEngine
from tests.conftest import CONTRACTS, admin_client, settings_for

CATALOG = load_contracts(CONTRACTS)
CUSTOMERS = CATALOG.contracts["customers"]
TRANSACTIONS = CATALOG.contracts["transactions"]


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(pl.all().cast(pl.String))


def test_valid_text_frame_is_cast_to_contract_dtypes() -> None:
    frame, report = validate_frame(_as_text(customers(20)), CUSTOMERS, from_text=True)
    assert report.valid
    assert frame.schema["signup_date"] == pl.Date
    assert frame.schema["is_active"] == pl.Boolean
    assert frame.equals(customers(20))
    assert all(a["success"] for a in report.assertions)


def test_datetimes_with_offsets_are_converted_to_the_contract_time_zone() -> None:
    text = pl.DataFrame(
        {
            "transaction_id": ["TX-0000000001", "TX-0000000002"],
            "customer_id": ["1", "2"],
            "occurred_at": ["2024-05-01T12:00:00+02:00", "2024-05-01 10:30:00"],
            "amount": ["10.5", "3"],
            "currency": ["EUR", "USD"],
            "merchant_category": ["5411", "5812"],
            "card_number": ["4111111111111111", "5500000000000004"],
            "ip_address": [None, "10.0.0.1"],
            "is_fraud": ["false", None],
        }
    )
    frame, report = validate_frame(text, TRANSACTIONS, from_text=True)
    assert report.valid, report.failures
    assert frame["occurred_at"].dtype == pl.Datetime("us", "UTC")
    assert frame["occurred_at"][0] == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_report_counts_every_failing_row_but_shows_at_most_ten() -> None:
    frame = customers(30).with_columns(pl.lit(-1).alias("orders_count"))
    _, report = validate_frame(frame, CUSTOMERS)
    (failure,) = report.failures
    assert failure["column"] == "orders_count"
    assert failure["failing_rows"] == 30
    assert len(failure["examples"]) == MAX_EXAMPLES
    assert failure["examples"][0] == {"row": 1, "value": "-1"}


def test_values_of_pii_columns_never_appear_in_the_report() -> None:
    frame = customers(5).with_columns(
        pl.lit("ann.lee@@example").alias("email"), pl.lit("").alias("full_name")
    )
    _, report = validate_frame(frame, CUSTOMERS)
    text = str(report.as_dict())
    assert "ann.lee" not in text
    assert "<EMAIL_ADDRESS>" in text


def test_schema_level_failures_name_the_column() -> None:
    frame = customers(3).drop("segment").with_columns(pl.lit(1).alias("surprise"))
    _, report = validate_frame(frame, CUSTOMERS)
    found = {(f["column"], f["check"]) for f in report.failures}
    assert ("segment", "column_in_dataframe") in found
    assert ("surprise", "column_in_schema") in found
    failed = {(a["assertion"], a["column"]) for a in report.assertions if not a["success"]}
    assert ("column_in_dataframe", "segment") in failed
    assert ("column_in_schema", None) in failed


def test_coercion_is_pandera_s_and_text_parsing_is_exact() -> None:
    """A typed float cast to a coerced integer column comes out as Pandera makes it (2.5 -> 2:
    the contract asked for coercion); the same value as CSV text is not an integer, and text is
    never changed on its way in."""
    frame = customers(3).with_columns(pl.Series("orders_count", [1.0, 2.5, 3.0]))
    stored, report = validate_frame(frame, CUSTOMERS)
    assert report.valid
    assert (
        stored["orders_count"].to_list()
        == CUSTOMERS.schema.validate(frame)["orders_count"].to_list()
    )
    _, report = validate_frame(_as_text(frame), CUSTOMERS, from_text=True)
    assert report.failures == [
        {
            "column": "orders_count",
            "check": "dtype('Int64')",
            "failing_rows": 1,
            "examples": [{"row": 2, "value": "2.5"}],
        }
    ]


COERCION = """
import pandera.polars as pa


class Strict(pa.DataFrameModel):
    item_id: int
    qty: int = pa.Field(coerce=True)

    class Config:
        coerce = False


class Loose(pa.DataFrameModel):
    item_id: int

    class Config:
        name = "loose"
        coerce = True
"""


def test_coerce_is_honoured_as_pandera_defines_it(tmp_path: Path, pii_engine: PiiEngine) -> None:
    """``Config.coerce = False``: strings "1", "2" in an int column fail (finding 9), as they do
    in Pandera; a field's own ``coerce=True`` and a coercing model cast them."""
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "items.py").write_text(COERCION)
    settings = settings_for(tmp_path / "home", contracts)
    text_ids = b'{"item_id": "1", "qty": "5"}\n{"item_id": "2", "qty": "6"}\n'
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        refused = client.post("/api/v1/datasets/strict/uploads?format=ndjson", content=text_ids)
        assert refused.status_code == 422, refused.text
        failures = refused.json()["report"]["failures"]
        assert [(f["column"], f["check"]) for f in failures] == [("item_id", "dtype('Int64')")]
        typed = b'{"item_id": 1, "qty": "5"}\n{"item_id": 2, "qty": "6"}\n'
        accepted = client.post("/api/v1/datasets/strict/uploads?format=ndjson", content=typed)
        assert accepted.status_code == 201, accepted.text  # qty coerces on its own
        loose = client.post(
            "/api/v1/datasets/loose/uploads?format=ndjson", content=b'{"item_id": "1"}\n'
        )
        assert loose.status_code == 201, loose.text
        # CSV cells have no type until parsed: parsing into the contract's dtypes is not coercion.
        csv = client.post(
            "/api/v1/datasets/strict/uploads?format=csv", content=b"item_id,qty\n3,4\n"
        )
        assert csv.status_code == 201, csv.text
