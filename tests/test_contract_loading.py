"""Contracts load like a package and are fingerprinted by their meaning: helper modules import,
check registrations never collide silently, object-API schemas are reported, nested models are
not datasets, and any change to the code or options of a contract changes its fingerprint while
a reformat does not."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.contracts import load_contracts

HELPERS = """
import polars as pl

LIMIT = {limit}


def below_limit(data) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(data.key) < LIMIT)
"""

ABSOLUTE = """
import pandera.polars as pa
import polars as pl
from _helpers import LIMIT, below_limit


class Readings(pa.DataFrameModel):
    value: int = pa.Field(le=LIMIT)

    @pa.check("value")
    def under(cls, data) -> pl.LazyFrame:
        return below_limit(data)
"""

RELATIVE = """
import pandera.polars as pa
from ._helpers import LIMIT


class Counts(pa.DataFrameModel):
    n: int = pa.Field(le=LIMIT)
"""


def _folder(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


def test_helper_modules_import_absolutely_and_relatively_and_stay_per_folder(
    tmp_path: Path,
) -> None:
    one = _folder(
        tmp_path / "one",
        {"_helpers.py": HELPERS.format(limit=10), "readings.py": ABSOLUTE, "counts.py": RELATIVE},
    )
    two = _folder(
        tmp_path / "two", {"_helpers.py": HELPERS.format(limit=99), "counts.py": RELATIVE}
    )
    first, second = load_contracts(one), load_contracts(two)
    assert not first.errors, first.errors
    assert not second.errors, second.errors
    assert set(first.contracts) == {"readings", "counts"}  # _helpers is no contract
    limit = first.contracts["counts"].columns[0].checks[0]["statistics"]["max_value"]
    assert limit == 10
    assert second.contracts["counts"].columns[0].checks[0]["statistics"]["max_value"] == 99


REGISTERING = """
import pandera.extensions as extensions
import pandera.polars as pa
import polars as pl


@extensions.register_check_method(statistics=["limit"])
def {name}(data, *, limit):
    return data.lazyframe.select(pl.col(data.key) < limit)


class {cls}(pa.DataFrameModel):
    x: int = pa.Field({name}={{"limit": 5}})
"""


def test_check_registrations_reload_and_never_collide_silently(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "c",
        {
            "a.py": REGISTERING.format(name="dg_below_a", cls="Alpha"),
            "b.py": REGISTERING.format(name="dg_below_a", cls="Beta"),
        },
    )
    catalog = load_contracts(folder)
    assert set(catalog.contracts) == {"alpha"}
    (error,) = catalog.errors
    assert error.file.endswith("b.py")
    assert "'dg_below_a' is already registered by a.py" in error.reason
    # The same folder loads again (a restart in the same process): its checks re-register.
    (folder / "b.py").write_text(REGISTERING.format(name="dg_below_b", cls="Beta"))
    again = load_contracts(folder)
    assert not again.errors, again.errors
    assert set(again.contracts) == {"alpha", "beta"}


def test_a_model_whose_schema_cannot_be_built_is_reported_and_the_others_load(
    tmp_path: Path,
) -> None:
    folder = _folder(
        tmp_path / "c",
        {
            "bad.py": """
            import pandera.polars as pa


            class Bad(pa.DataFrameModel):
                x: "NoSuchType"
            """,
            "good.py": """
            import pandera.polars as pa


            class Good(pa.DataFrameModel):
                x: int
            """,
        },
    )
    catalog = load_contracts(folder)
    assert set(catalog.contracts) == {"good"}
    (error,) = catalog.errors
    assert error.file.endswith("bad.py")
    assert "NameError" in error.reason


def test_an_object_api_schema_is_reported_not_ignored(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "c",
        {
            "orders.py": """
            import pandera.polars as pa

            orders = pa.DataFrameSchema({"id": pa.Column(int)})
            """
        },
    )
    catalog = load_contracts(folder)
    assert not catalog.contracts
    (error,) = catalog.errors
    assert "orders: a pa.DataFrameSchema object" in error.reason


def test_a_model_used_as_a_column_type_is_not_a_dataset(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path / "c",
        {
            "shipments.py": """
            import pandera.polars as pa


            class Address(pa.DataFrameModel):
                street: str
                city: str


            class Shipments(pa.DataFrameModel):
                id: int
                to: Address
            """
        },
    )
    catalog = load_contracts(folder)
    assert not catalog.errors, catalog.errors
    assert set(catalog.contracts) == {"shipments"}


BASE = """
import pandera.extensions as extensions
import pandera.polars as pa
import polars as pl

from _rules import THRESHOLD, positive

FACTOR = 2


@extensions.register_check_method(statistics=["limit"])
def {registered}(data, *, limit):
    return data.lazyframe.select(pl.col(data.key) < limit)


class Orders(pa.DataFrameModel):
    id: int = pa.Field(ge=0)
    qty: int = pa.Field({registered}={{"limit": 10**9}})
    amount: float = pa.Field(nullable=True)
    note: str = pa.Field(nullable=True)

    @pa.check("amount")
    def small(cls, data) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("amount") < THRESHOLD * FACTOR)

    @pa.dataframe_check
    def sane(cls, data) -> pl.LazyFrame:
        return positive(data)

    class Config:
        strict = True


class Other(pa.DataFrameModel):
    x: int
"""

RULES = """
import polars as pl

THRESHOLD = 100


def positive(data) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col("id") >= 0)
"""

CHANGES: dict[str, tuple[str, str, str]] = {
    # name: (file, old text, new text)
    "registered-check-body": ("orders.py", "< limit)", "<= limit)"),
    "check-body": ("orders.py", "< THRESHOLD * FACTOR", "<= THRESHOLD * FACTOR"),
    "dataframe-check-body": ("_rules.py", 'pl.col("id") >= 0', 'pl.col("id") > 0'),
    "helper-constant": ("_rules.py", "THRESHOLD = 100", "THRESHOLD = 101"),
    "module-constant": ("orders.py", "FACTOR = 2", "FACTOR = 3"),
    "ordered": ("orders.py", "strict = True", "strict = True\n        ordered = True"),
    "drop-invalid-rows": (
        "orders.py",
        "strict = True",
        "strict = True\n        drop_invalid_rows = True",
    ),
    "add-missing-columns": (
        "orders.py",
        "strict = True",
        "strict = True\n        add_missing_columns = True",
    ),
    "field-default": (
        "orders.py",
        "note: str = pa.Field(nullable=True)",
        'note: str = pa.Field(nullable=True, default="-")',
    ),
    "field-coerce": (
        "orders.py",
        "id: int = pa.Field(ge=0)",
        "id: int = pa.Field(ge=0, coerce=True)",
    ),
    "field-ignore-na": (
        "orders.py",
        "id: int = pa.Field(ge=0)",
        "id: int = pa.Field(ge=0, ignore_na=False)",
    ),
    "field-raise-warning": (
        "orders.py",
        "id: int = pa.Field(ge=0)",
        "id: int = pa.Field(ge=0, raise_warning=True)",
    ),
}


def _base(tmp_path: Path) -> str:
    # Registered check names are process-wide: each test's folder registers its own.
    return BASE.format(registered=f"dg_limit_{abs(hash(tmp_path))}")


def _fingerprint(folder: Path) -> str:
    catalog = load_contracts(folder)
    assert not catalog.errors, catalog.errors
    return catalog.contracts["orders"].fingerprint


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_any_change_of_meaning_changes_the_fingerprint(tmp_path: Path, change: str) -> None:
    folder = _folder(tmp_path / "c", {"orders.py": _base(tmp_path), "_rules.py": RULES})
    before = _fingerprint(folder)
    file, old, new = CHANGES[change]
    text = (folder / file).read_text()
    assert old in text
    (folder / file).write_text(text.replace(old, new))
    assert _fingerprint(folder) != before


def test_comments_formatting_and_other_models_leave_the_fingerprint_alone(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "c", {"orders.py": _base(tmp_path), "_rules.py": RULES})
    before = _fingerprint(folder)
    reformatted = (
        _base(tmp_path)
        .replace("FACTOR = 2", "FACTOR = 2  # doubles the threshold\n\n")
        .replace("id: int = pa.Field(ge=0)", "id: int = pa.Field(\n        ge=0,\n    )")
        .replace(
            "class Other(pa.DataFrameModel):\n    x: int",
            "class Other(pa.DataFrameModel):\n    x: str",
        )
    )
    (folder / "orders.py").write_text(textwrap.dedent(reformatted))
    (folder / "_rules.py").write_text("# shared rules\n" + RULES)
    assert _fingerprint(folder) == before
