"""Differential suite: Datagate's validation stage against ``Model.validate(df, lazy=True)``.

A matrix of contracts covers the pandera.polars DataFrameModel surface a contract can use;
hypothesis draws frames for each (valid and invalid values, nulls, wrong dtypes, missing and
extra columns). On every frame Datagate must give Pandera's verdict and, when it accepts, store
exactly the frame Pandera returns; when it rejects, it must fail the same rows. Where Pandera
itself crashes, Datagate must still answer with a report.

Known, documented differences (README, "Contracts"): Pandera counts a null as a coercion
failure once any cell of the column fails to coerce (Datagate reports the cells that did not
convert); Datagate rejects when ``drop_invalid_rows`` would drop every row.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import shutil
import tempfile
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandera.polars as pa
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from gateway.contracts import Contract, load_contracts
from gateway.validation import PANDERA_CRASHED, validate_frame

HEADER = """
import datetime
from typing import Optional

import pandera.polars as pa
import polars as pl
"""

CONTRACTS: dict[str, str] = {
    # Typed data is checked as it comes: no dtype is cast.
    "no_coercion": """
class NoCoercion(pa.DataFrameModel):
    small: pl.Int16 = pa.Field(ge=0)
    unsigned: pl.UInt16
    ratio: pl.Float32
    price: pl.Decimal(10, 2)
    at: pl.Datetime("us")
    flag: pl.Boolean
    color: pl.Enum(["red", "green"])
    tags: pl.List(pl.String)
    point: pl.Struct({"a": pl.Int64, "d": pl.String})

    class Config:
        coerce = False
""",
    # The same columns, cast by Pandera's engine.
    "coercing": """
class Coercing(pa.DataFrameModel):
    small: pl.Int16 = pa.Field(ge=0)
    unsigned: pl.UInt16
    ratio: pl.Float32
    price: pl.Decimal(12, 2) = pa.Field(ge=0)
    flag: pl.Boolean
    label: str

    class Config:
        coerce = True
""",
    "checks": """
class Checks(pa.DataFrameModel):
    id: int = pa.Field(unique=True, ge=1)
    email: str = pa.Field(
        str_matches=r"^[^@]+@[^@]+$", metadata={"pii": "EMAIL_ADDRESS", "redact": "hash"}
    )
    name: str = pa.Field(str_length={"min_value": 2}, metadata={"pii": "PERSON", "redact": "mask"})
    country: str = pa.Field(isin=["US", "GB"])
    status: str = pa.Field(notin=["banned"])
    score: float = pa.Field(in_range={"min_value": 0, "max_value": 100}, nullable=True)
    note: Optional[str]

    @pa.check("score")
    def not_fifty(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key) != 50)

    @pa.dataframe_check
    def id_below_score(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(
            (pl.col("score").is_null()) | (pl.col("id") < pl.col("score") + 1000)
        )

    class Config:
        strict = True
        ordered = True
        unique = ["name", "country"]
""",
    "filtering": """
class Filtering(pa.DataFrameModel):
    id: int
    label: str = pa.Field(default="none")
    extra_note: Optional[str] = pa.Field(nullable=True)
    remark: str = pa.Field(nullable=True)

    class Config:
        strict = "filter"
        add_missing_columns = True
""",
    "dropping": """
class Dropping(pa.DataFrameModel):
    id: int = pa.Field(ge=0)
    amount: float = pa.Field(le=1000)

    class Config:
        drop_invalid_rows = True
""",
    # Rows dropped by row checks and by uniqueness (whole-column) alike.
    "dropping_unique": """
class DroppingUnique(pa.DataFrameModel):
    id: int = pa.Field(ge=0, unique=True)
    amount: float = pa.Field(le=1000)

    class Config:
        drop_invalid_rows = True
""",
    # Uniqueness of a column pair: its failures show whole rows.
    "unique_together": """
class UniqueTogether(pa.DataFrameModel):
    a: int
    b: Optional[str] = pa.Field(nullable=True)
    c: float

    class Config:
        unique = ["a", "b"]
""",
    "regex_columns": """
class RegexColumns(pa.DataFrameModel):
    sensor: float = pa.Field(alias=r"sensor_\\d+", regex=True, ge=0)
    site: str

    class Config:
        coerce = True
""",
    "registered": """
import pandera.extensions as extensions


@extensions.register_check_method(statistics=["limit"])
def dg_equivalence_below(data, *, limit):
    return data.lazyframe.select(pl.col(data.key) < limit)


class Registered(pa.DataFrameModel):
    x: int = pa.Field(dg_equivalence_below={"limit": 3})
""",
    "aliased": """
class Aliased(pa.DataFrameModel):
    value: int = pa.Field(alias="Value (raw)", ge=0)
    kind: str = pa.Field(alias="kind-of", isin=["a", "b"])
""",
    # A model as a column type: its struct's fields are validated against it.
    "nested": """
class Address(pa.DataFrameModel):
    street: str
    zip: int = pa.Field(ge=0)


class Nested(pa.DataFrameModel):
    id: int
    to: Address
""",
    "durations": """
class Durations(pa.DataFrameModel):
    wait: pl.Duration("us") = pa.Field(le=datetime.timedelta(seconds=5))
    id: int
""",
}


@functools.cache
def load_catalog() -> dict[str, Contract]:
    """The matrix, loaded once per process (a registered check's name may be taken once)."""
    folder = Path(tempfile.mkdtemp(prefix="equivalence-contracts-"))
    atexit.register(shutil.rmtree, folder, True)
    for name, body in CONTRACTS.items():
        (folder / f"{name}.py").write_text(HEADER + textwrap.dedent(body))
    loaded = load_contracts(folder)
    assert not loaded.errors, loaded.errors
    return loaded.contracts


@pytest.fixture(scope="module")
def catalog() -> dict[str, Contract]:
    return load_catalog()


def _pandera(frame: pl.DataFrame, contract: Contract) -> tuple[str, Any]:
    """('accept', output) | ('reject', (rows, coercion failed)) | ('crash', exception)."""
    try:
        return "accept", contract.schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        # Pandera coerces the frame all at once and, when that fails, reports the cells of the
        # first column it could not cast (nulls included): which rows it names depends on its
        # column order, so coercion failures are compared as "some", other checks row by row.
        checks = exc.failure_cases.select("index", "check")
        coercion = any(check.startswith("coerce_dtype") for check in checks["check"])
        rows = {
            row
            for row, check in checks.iter_rows()
            if row is not None and not check.startswith("coerce_dtype")
        }
        return "reject", (rows, coercion)
    except Exception as exc:
        return "crash", exc


def _datagate(frame: pl.DataFrame, contract: Contract) -> tuple[pl.DataFrame, Any]:
    stored, report = validate_frame(frame, contract)
    return stored, report


# Datagate's names for what Pandera reports as coerce_dtype (a nested model is validated by it).
CAST_CHECKS = ("dtype(", "nested(")


def _failing_rows(report: Any) -> set[int]:
    # Rows named by checks; cells that did not convert are compared as "some" (see _pandera).
    return {
        example["row"] - 1
        for failure in report.failures
        if not failure["check"].startswith(CAST_CHECKS)
        for example in failure["examples"]
        if example["row"] is not None
    }


def _compare(frame: pl.DataFrame, contract: Contract) -> None:
    verdict, expected = _pandera(frame, contract)
    stored, report = _datagate(frame, contract)
    if verdict == "crash":
        # Pandera could not validate this frame; Datagate answers with a report all the same.
        assert not report.valid
        assert report.failures
        return
    if verdict == "accept" and not (expected.height == 0 < frame.height):
        assert report.valid, report.failures
        assert_frame_equal(stored, expected)
        return
    assert not report.valid
    assert report.failures
    if verdict != "reject":
        return
    rows, coercion = expected
    if coercion:
        assert any(f["check"].startswith(CAST_CHECKS) for f in report.failures)
    if all(f["failing_rows"] <= 10 for f in report.failures):  # every failing row is shown
        assert _failing_rows(report) == rows


# -- frames -----------------------------------------------------------------------------------

COLOR_DTYPES: list[pl.DataType] = [pl.Enum(["red", "green"]), pl.Categorical(), pl.String()]
_ints = st.one_of(st.integers(-5, 200), st.integers(60_000, 70_000), st.none())
_floats = st.one_of(
    st.floats(-10, 2000, allow_nan=False, width=32), st.sampled_from([0.1, 12.345, 50.0]), st.none()
)


def _column(draw: st.DrawFn, values: st.SearchStrategy[Any], n: int) -> list[Any]:
    return draw(st.lists(values, min_size=n, max_size=n))


@st.composite
def typed_frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 6))
    ints = _column(draw, _ints, n)
    narrow = draw(st.booleans())
    return pl.DataFrame(
        {
            "small": pl.Series(
                [None if v is None else min(v, 32_767) for v in ints] if narrow else ints,
                dtype=pl.Int16 if narrow else pl.Int64,
            ),
            "unsigned": pl.Series(
                [None if v is None else min(abs(v), 65_535) for v in _column(draw, _ints, n)],
                dtype=draw(st.sampled_from([pl.UInt16, pl.Int64])),
            ),
            "ratio": pl.Series(
                _column(draw, _floats, n), dtype=draw(st.sampled_from([pl.Float32, pl.Float64]))
            ),
            "price": pl.Series(
                [
                    None if v is None else Decimal(str(round(v, 2)))
                    for v in _column(draw, _floats, n)
                ],
                dtype=pl.Decimal(10, 2),
            )
            if draw(st.booleans())
            else pl.Series(_column(draw, _floats, n), dtype=pl.Float64),
            "at": pl.Series(
                [dt.datetime(2024, 1, 1) + dt.timedelta(minutes=i) for i in range(n)],
                dtype=draw(st.sampled_from([pl.Datetime("us"), pl.Datetime("ns", "UTC")])),
            ),
            "flag": pl.Series(_column(draw, st.booleans(), n))
            if draw(st.booleans())
            else pl.Series(_column(draw, st.sampled_from(["true", "false"]), n)),
            "color": pl.Series(
                _column(draw, st.sampled_from(["red", "green"]), n),
                dtype=draw(st.sampled_from(COLOR_DTYPES)),
            ),
            "tags": pl.Series(
                _column(draw, st.lists(st.sampled_from(["a", "b"]), max_size=2), n),
                dtype=pl.List(pl.String),
            )
            if draw(st.booleans())
            else pl.Series([[1, 2]] * n, dtype=pl.List(pl.Int64)),
            "point": pl.Series([{"a": 1, "d": "x"}] * n)
            if draw(st.booleans())
            else pl.Series([{"a": 1}] * n),
            "label": _column(draw, st.sampled_from(["x", "yy", None]), n),
        }
    )


@st.composite
def check_frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 6))
    frame = pl.DataFrame(
        {
            "id": _column(draw, st.integers(0, 4), n),
            "email": _column(draw, st.sampled_from(["ann@x.org", "bob.at.example", "cy@y.io"]), n),
            "name": _column(draw, st.sampled_from(["Robert Miller", "A", "Ann Lee"]), n),
            "country": _column(draw, st.sampled_from(["US", "GB", "FR"]), n),
            "status": _column(draw, st.sampled_from(["ok", "banned"]), n),
            "score": _column(draw, st.one_of(st.sampled_from([10.0, 50.0, 150.0]), st.none()), n),
            "note": _column(draw, st.sampled_from(["fine", None]), n),
        },
        schema_overrides={"score": pl.Float64, "note": pl.String},
    )
    return _mutated(draw, frame)


def _mutated(draw: st.DrawFn, frame: pl.DataFrame) -> pl.DataFrame:
    mutation = draw(st.sampled_from(["none", "none", "drop", "extra", "reorder"]))
    if mutation == "drop":
        return frame.drop(draw(st.sampled_from(frame.columns)))
    if mutation == "extra":
        return frame.with_columns(pl.lit("surprise").alias("unexpected"))
    if mutation == "reorder":
        return frame.select(list(reversed(frame.columns)))
    return frame


@st.composite
def filtering_frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 5))
    frame = pl.DataFrame(
        {
            "id": _column(draw, st.integers(0, 9), n),
            "label": _column(draw, st.sampled_from(["a", None]), n),
            "extra_note": _column(draw, st.sampled_from(["n", None]), n),
        },
        schema_overrides={"label": pl.String, "extra_note": pl.String},
    )
    return _mutated(draw, frame)


@st.composite
def dropping_frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 6))
    return pl.DataFrame(
        {
            "id": _column(draw, st.integers(-2, 5), n),
            "amount": _column(draw, st.sampled_from([1.0, 999.0, 5000.0]), n),
        }
    )


@st.composite
def together_frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 6))
    return pl.DataFrame(
        {
            "a": _column(draw, st.integers(0, 2), n),
            "b": _column(draw, st.sampled_from(["x", "y", None]), n),
            "c": _column(draw, st.sampled_from([1.0, 2.5]), n),
        },
        schema_overrides={"b": pl.String, "c": pl.Float64},
    )


@st.composite
def regex_frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 4))
    sensors = draw(st.integers(0, 3))
    columns: dict[str, pl.Series] = {
        f"sensor_{i}": pl.Series(
            _column(draw, st.sampled_from([1.5, -1.0, 2.0]), n),
            dtype=draw(st.sampled_from([pl.Float32, pl.Float64])),
        )
        for i in range(sensors)
    }
    columns["site"] = pl.Series(_column(draw, st.sampled_from(["a", "b"]), n))
    return pl.DataFrame(columns)


@st.composite
def duration_frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 4))
    seconds = _column(draw, st.sampled_from([1, 4, 9]), n)
    return pl.DataFrame(
        {
            "wait": pl.Series([dt.timedelta(seconds=s) for s in seconds], dtype=pl.Duration("us")),
            "id": list(range(n)),
        }
    )


@st.composite
def nested_frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 4))
    zips = _column(draw, st.sampled_from([1, -4, 90210]), n)
    return pl.DataFrame({"id": list(range(n)), "to": [{"street": "Main", "zip": z} for z in zips]})


@st.composite
def aliased_frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 4))
    frame = pl.DataFrame(
        {
            "Value (raw)": _column(draw, st.integers(-1, 3), n),
            "kind-of": _column(draw, st.sampled_from(["a", "c"]), n),
        }
    )
    return _mutated(draw, frame)


@st.composite
def registered_frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(1, 4))
    return pl.DataFrame({"x": _column(draw, st.integers(0, 5), n)})


FRAMES: dict[str, st.SearchStrategy[pl.DataFrame]] = {
    "registered": registered_frames(),
    "aliased": aliased_frames(),
    "nested": nested_frames(),
    "no_coercion": typed_frames(),
    "coercing": typed_frames(),
    "checks": check_frames(),
    "filtering": filtering_frames(),
    "dropping": dropping_frames(),
    "dropping_unique": dropping_frames(),
    "unique_together": together_frames(),
    "regex_columns": regex_frames(),
    "durations": duration_frames(),
}


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_datagate_gives_pandera_s_verdict_and_stores_pandera_s_frame(
    name: str, catalog: dict[str, Contract]
) -> None:
    contract = catalog[name]

    @settings(
        max_examples=40,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(frame=FRAMES[name])
    def differential(frame: pl.DataFrame) -> None:
        frame = frame.select([c for c in frame.columns if c in _wanted(contract, frame)])
        _compare(frame, contract)

    differential()


def _wanted(contract: Contract, frame: pl.DataFrame) -> set[str]:
    # The typed generator serves two contracts: each gets its own columns (plus any extra one
    # a mutation added, which is not part of the generator's shared columns).
    shared = {"small", "unsigned", "ratio", "price", "at", "flag", "color", "tags", "point"}
    own = {c.name for c in contract.columns}
    return {c for c in frame.columns if c in own or c not in shared | {"label"}}


# -- examples the review reported --------------------------------------------------------------


def _one(contract: Contract, frame: pl.DataFrame) -> tuple[pl.DataFrame, Any]:
    return validate_frame(frame, contract)


def test_the_review_s_cases_now_agree_with_pandera(catalog: dict[str, Contract]) -> None:
    strict = catalog["no_coercion"]
    base = {
        "small": pl.Series([1], dtype=pl.Int16),
        "unsigned": pl.Series([1], dtype=pl.UInt16),
        "ratio": pl.Series([0.5], dtype=pl.Float32),
        "price": pl.Series([Decimal("1.50")], dtype=pl.Decimal(10, 2)),
        "at": pl.Series([dt.datetime(2024, 1, 1)], dtype=pl.Datetime("us")),
        "flag": [True],
        "color": pl.Series(["red"], dtype=pl.Enum(["red", "green"])),
        "tags": pl.Series([["a"]], dtype=pl.List(pl.String)),
        "point": [{"a": 1, "d": "x"}],
    }
    assert _one(strict, pl.DataFrame(base))[1].valid
    # coerce = False: each wrong dtype is refused, as Pandera refuses it.
    wrong = {
        "small": pl.Series([1], dtype=pl.Int64),
        "unsigned": pl.Series([1], dtype=pl.Int64),
        "ratio": pl.Series([0.5], dtype=pl.Float64),
        "price": pl.Series([1.5], dtype=pl.Float64),
        "at": pl.Series([dt.datetime(2024, 1, 1)], dtype=pl.Datetime("ns", "UTC")),
        "flag": ["true"],
        "color": pl.Series(["red"], dtype=pl.Categorical),
        "tags": pl.Series([[1]], dtype=pl.List(pl.Int64)),
        "point": [{"a": 1}],
    }
    for column, series in wrong.items():
        frame = pl.DataFrame({**base, column: series})
        stored, report = _one(strict, frame)
        assert not report.valid, column
        assert {f["column"] for f in report.failures} == {column}
    # coerce = True: Float64 0.1 into Float32 and 12.345 into Decimal(12, 2), as Pandera casts.
    coercing = catalog["coercing"]
    frame = pl.DataFrame(
        {
            "small": [1],
            "unsigned": [2],
            "ratio": [0.1],
            "price": [12.345],
            "flag": [True],
            "label": ["x"],
        }
    )
    stored, report = _one(coercing, frame)
    assert report.valid, report.failures
    assert_frame_equal(stored, coercing.schema.validate(frame))


def test_stored_data_is_pandera_s_output(catalog: dict[str, Contract]) -> None:
    dropping = catalog["dropping"]
    stored, report = _one(dropping, pl.DataFrame({"id": [1, -1, 2], "amount": [1.0, 2.0, 5000.0]}))
    assert report.valid
    assert stored["id"].to_list() == [1]
    assert report.rows_dropped == 2
    assert report.as_dict()["rows_dropped"] == 2
    assert {f["check"] for f in report.failures} == {
        "greater_than_or_equal_to(0)",
        "less_than_or_equal_to(1000)",
    }
    filtering = catalog["filtering"]
    stored, report = _one(
        filtering, pl.DataFrame({"id": [1, 2], "label": ["a", None], "x": [0, 0]})
    )
    assert report.valid, report.failures
    # The extra column is dropped, the missing required one added (an Optional one is not).
    assert stored.columns == ["id", "label", "remark"]
    assert stored["label"].to_list() == ["a", "none"]  # the default fills the null
    # Every row invalid under drop_invalid_rows: nothing valid to store, so the upload is refused.
    stored, report = _one(dropping, pl.DataFrame({"id": [-1], "amount": [1.0]}))
    assert not report.valid


def test_no_failure_case_of_any_dtype_is_a_server_error(catalog: dict[str, Contract]) -> None:
    durations = catalog["durations"]
    frame = pl.DataFrame(
        {"wait": pl.Series([dt.timedelta(seconds=9)], dtype=pl.Duration("us")), "id": [1]}
    )
    with pytest.raises(pl.exceptions.InvalidOperationError):  # Pandera cannot report it
        durations.schema.validate(frame, lazy=True)
    _, report = _one(durations, frame)
    assert not report.valid
    assert report.failures[0]["column"] == "wait"
    assert report.as_dict()["notes"] == [PANDERA_CRASHED]  # and it says so
    regex = catalog["regex_columns"]
    _, report = _one(regex, pl.DataFrame({"site": ["a"]}))  # no column matches the pattern
    assert not report.valid
    assert report.failures


def test_reports_name_the_place_and_never_show_declared_pii(catalog: dict[str, Contract]) -> None:
    checks = catalog["checks"]
    frame = pl.DataFrame(
        {
            "id": [1, 2],
            "email": ["robert@example.org", "robert@example.org"],
            "name": ["Robert Miller", "Robert Miller"],
            "country": ["US", "US"],
            "status": ["ok", "ok"],
            "score": [10.0, 10.0],
            "note": ["fine", None],
        }
    )
    _, report = _one(checks, frame)
    assert not report.valid
    text = str(report.as_dict())
    assert "Robert Miller" not in text
    assert "robert@example.org" not in text
    assert ("name, country", "multiple_fields_uniqueness") in {
        (f["column"], f["check"]) for f in report.failures
    }
    _, report = _one(checks, frame.with_columns(pl.Series("id", [5000, 5001])))
    by_check = {f["check"]: f for f in report.failures}
    assert by_check["id_below_score"]["column"] is None  # a dataframe check: named by itself
    _, report = _one(checks, frame.select(list(reversed(frame.columns))))
    ordered = [f for f in report.failures if f["check"] == "column_ordered"]
    assert ordered
    assert all(f["column"] in frame.columns for f in ordered)


def test_a_nested_model_failure_names_its_column_and_model(catalog: dict[str, Contract]) -> None:
    nested = catalog["nested"]
    assert "address" not in catalog  # the nested model is no dataset
    frame = pl.DataFrame(
        {"id": [1, 2], "to": [{"street": "a", "zip": 1}, {"street": "b", "zip": -4}]}
    )
    _, report = _one(nested, frame)
    assert [(f["column"], f["check"], f["failing_rows"]) for f in report.failures] == [
        ("to", "nested(Address)", 1)
    ]
