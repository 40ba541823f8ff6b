"""Apply a contract to a frame: cast to its dtypes, run Pandera lazily, report failures as data.

The report never holds a raw value of a column with a PII policy, and holds at most
``MAX_EXAMPLES`` example rows per (column, check).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandera.polars as pa
import polars as pl

from gateway.contracts import Contract

MAX_EXAMPLES = 10
MAX_VALUE_CHARS = 200
_FAILURE_SCHEMA = {
    "column": pl.String,
    "check": pl.String,
    "index": pl.Int64,
    "failure_case": pl.String,
}
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_SCHEMA_LEVEL_CHECKS = ("column_in_schema", "column_in_dataframe")


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating one upload: every failing (column, check), counted, redacted."""

    contract: dict[str, str]
    rows: int
    failures: list[dict[str, Any]]
    assertions: list[dict[str, Any]]

    @property
    def valid(self) -> bool:
        """True when no check failed."""
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON (the 422 extension and the run record)."""
        return {
            "valid": self.valid,
            "contract": self.contract,
            "rows": self.rows,
            "checks_run": len(self.assertions),
            "checks_failed": sum(1 for a in self.assertions if not a["success"]),
            "failures": self.failures,
        }

    def summary(self) -> dict[str, Any]:
        """The short form stored on a version."""
        return {
            "valid": self.valid,
            "checks_run": len(self.assertions),
            "checks_failed": sum(1 for a in self.assertions if not a["success"]),
        }


def _bool_from_text(text: pl.Expr) -> pl.Expr:
    lowered = text.str.strip_chars().str.to_lowercase()
    return (
        pl.when(lowered.is_in(_TRUE))
        .then(True)
        .when(lowered.is_in(_FALSE))
        .then(False)
        .otherwise(None)
    )


_AWARE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z")
_NAIVE_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
)


def _datetime_from_text(text: pl.Expr, target: pl.Datetime) -> pl.Expr:
    # ISO 8601 with or without an offset ("Z" included); naive values are read in the
    # contract's time zone, offset values converted to it.
    text = text.str.strip_chars().str.replace(r"Z$", "+00:00")
    unit = target.time_unit
    aware = pl.coalesce(
        [text.str.strptime(pl.Datetime(unit, "UTC"), f, strict=False) for f in _AWARE_FORMATS]
    )
    naive = pl.coalesce(
        [text.str.strptime(pl.Datetime(unit), f, strict=False) for f in _NAIVE_FORMATS]
    )
    if target.time_zone is None:
        return pl.coalesce(aware.dt.replace_time_zone(None), naive)
    return pl.coalesce(
        aware.dt.convert_time_zone(target.time_zone), naive.dt.replace_time_zone(target.time_zone)
    )


def _cast_expr(name: str, source: pl.DataType, target: pl.DataType) -> pl.Expr:
    col = pl.col(name)
    if source == pl.String:
        if target == pl.Date:
            return col.str.strip_chars().str.to_date(strict=False)
        if isinstance(target, pl.Datetime):
            return _datetime_from_text(col, target)
        if target == pl.Boolean:
            return _bool_from_text(col)
        if target.is_numeric():
            return col.str.strip_chars().cast(target, strict=False)
    return col.cast(target, strict=False)


def _align_time_zone(series: pl.Series, target: pl.Datetime) -> pl.Series:
    if not isinstance(series.dtype, pl.Datetime):
        return series
    current = series.dtype.time_zone
    if current == target.time_zone:
        return series
    if current is None:
        return series.dt.replace_time_zone(target.time_zone)
    if target.time_zone is None:
        return series.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return series.dt.convert_time_zone(target.time_zone)


def coerce_to_contract(
    frame: pl.DataFrame, contract: Contract, from_text: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cast the contract's columns that Pandera would coerce (``coerce`` on the model or the
    field) to their dtypes — every column when the upload was text (``from_text``: CSV, whose
    cells have no type until parsed); cells that do not convert become failures. A column that
    is not coerced keeps its dtype, and a wrong one fails Pandera's dtype check, as in Pandera.

    Returns the cast frame (failed cells are null) and the failures as rows of
    (column, check, index, failure_case).
    """
    casts: dict[str, pl.Expr] = {}
    for column in contract.columns:
        name, target = column.name, column.dtype
        if not (from_text or column.coerce):
            continue
        if name in frame.columns and frame.schema[name] != target:
            casts[name] = _cast_expr(name, frame.schema[name], target)
    if not casts:
        return frame, pl.DataFrame(schema=_FAILURE_SCHEMA)
    cast_columns: dict[str, pl.Series] = {}
    for name, expr in casts.items():
        target = contract.dtypes[name]
        try:
            series = frame.select(expr.alias(name)).to_series()
            if isinstance(target, pl.Datetime):
                series = _align_time_zone(series, target)
            series = series.cast(target, strict=False)
        except pl.exceptions.PolarsError:
            # The whole column is of a shape that cannot become the target (e.g. nested JSON).
            series = pl.Series(name, [None] * frame.height, dtype=target)
        cast_columns[name] = series
    cast = frame.with_columns(list(cast_columns.values()))
    failures = []
    for name, series in cast_columns.items():
        original = frame[name]
        failed = original.is_not_null() & series.is_null()
        if original.dtype.is_numeric() and series.dtype.is_numeric():
            # Catches silent truncation, e.g. 1.5 cast to an integer column.
            failed = failed | (series.cast(original.dtype, strict=False) != original).fill_null(
                False
            )
        rows = failed.arg_true()
        if rows.len():
            failures.append(
                pl.DataFrame(
                    {
                        "column": name,
                        "check": f"dtype('{contract.dtypes[name]}')",
                        "index": rows.cast(pl.Int64),
                        "failure_case": _as_text(original.gather(rows)),
                    },
                    schema=_FAILURE_SCHEMA,
                )
            )
    failure_frame = pl.concat(failures) if failures else pl.DataFrame(schema=_FAILURE_SCHEMA)
    return cast, failure_frame


def _as_text(values: pl.Series) -> pl.Series:
    # Nested values (lists, structs from JSON) have no plain text form: show their type.
    try:
        return values.cast(pl.String)
    except pl.exceptions.PolarsError:
        return pl.Series(values.name, [f"<{values.dtype}>"] * values.len(), dtype=pl.String)


def _pandera_failures(frame: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    try:
        contract.checked_schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases: pl.DataFrame = exc.failure_cases
    except pa.errors.SchemaError as exc:
        return pl.DataFrame(
            {
                "column": [getattr(exc.schema, "name", None)],
                "check": [str(exc.check) if exc.check is not None else type(exc).__name__],
                "index": [None],
                "failure_case": [None],
            },
            schema=_FAILURE_SCHEMA,
        )
    else:
        return pl.DataFrame(schema=_FAILURE_SCHEMA)
    schema_level = pl.col("check").is_in(_SCHEMA_LEVEL_CHECKS)
    return cases.select(
        # For "column not in schema/dataframe", Pandera puts the schema name in ``column`` and
        # the offending column's name in ``failure_case``.
        pl.when(schema_level)
        .then(pl.col("failure_case"))
        .otherwise(pl.col("column"))
        .alias("column"),
        pl.col("check").cast(pl.String),
        pl.col("index").cast(pl.Int64),
        pl.when(schema_level)
        .then(None)
        .otherwise(pl.col("failure_case"))
        .cast(pl.String)
        .alias("failure_case"),
    )


def _shown_value(contract: Contract) -> pl.Expr:
    entities = {c.name: c.policy.entity for c in contract.columns if c.policy is not None}
    value = pl.col("failure_case").str.slice(0, MAX_VALUE_CHARS)
    if not entities:
        return value
    placeholder = pl.col("column").replace_strict(
        {
            name: ("<REDACTED>" if entity == "scan" else f"<{entity}>")
            for name, entity in entities.items()
        },
        default=None,
        return_dtype=pl.String,
    )
    return (
        pl.when(pl.col("failure_case").is_null())
        .then(None)
        .when(placeholder.is_not_null())
        .then(placeholder)
        .otherwise(value)
    )


Scrub = Callable[[list[str]], list[str]]


def _summarise(
    failures: pl.DataFrame, contract: Contract, scrub: Scrub | None
) -> list[dict[str, Any]]:
    if failures.is_empty():
        return []
    shown = failures.with_columns(
        _shown_value(contract).alias("value"), (pl.col("index") + 1).alias("row")
    ).sort("row", nulls_last=True, maintain_order=True)
    grouped = shown.group_by(["column", "check"], maintain_order=True).agg(
        pl.col("index").drop_nulls().n_unique().alias("failing_rows"),
        pl.struct("row", "value")
        .filter(pl.col("row").is_not_null())
        .head(MAX_EXAMPLES)
        .alias("examples"),
    )
    summary = [
        {
            "column": row["column"],
            "check": row["check"],
            "failing_rows": row["failing_rows"],
            "examples": row["examples"],
        }
        for row in grouped.iter_rows(named=True)
    ]
    if scrub is not None:
        # Values of undeclared columns are shown, but PII found inside them is replaced.
        displayed: list[dict[str, Any]] = [
            example
            for failure in summary
            if failure["column"] not in contract.pii_columns
            for example in failure["examples"]
            if example["value"] is not None
        ]
        values = [str(e["value"]) for e in displayed]
        for example, clean in zip(displayed, scrub(values), strict=True):
            example["value"] = clean
    return summary


def _assertions(contract: Contract, failures: pl.DataFrame) -> list[dict[str, Any]]:
    failed = set(failures.select("column", "check").unique().iter_rows())
    missing = {c for c, check in failed if check == "column_in_dataframe"}
    results: list[dict[str, Any]] = []

    def add(assertion: str, column: str | None, failure_check: str) -> None:
        ok = (column, failure_check) not in failed and column not in missing
        results.append({"assertion": assertion, "column": column, "success": ok})

    for column in contract.columns:
        if column.required:
            add("column_in_dataframe", column.name, "column_in_dataframe")
        add(f"dtype('{column.dtype}')", column.name, f"dtype('{column.dtype}')")
        if not column.nullable:
            add("not_null", column.name, "not_nullable")
        if column.unique:
            add("unique", column.name, "field_uniqueness")
        for check in column.checks:
            add(check["name"], column.name, check["id"])
    if contract.definition["strict"]:
        extra = any(check == "column_in_schema" for _, check in failed)
        results.append({"assertion": "column_in_schema", "column": None, "success": not extra})
    for check in contract.definition["dataframe_checks"]:
        add(check["name"], None, check["id"])
    return results


def validate_frame(
    frame: pl.DataFrame, contract: Contract, scrub: Scrub | None = None, from_text: bool = False
) -> tuple[pl.DataFrame, ValidationReport]:
    """Cast ``frame`` to the contract's dtypes where Pandera would coerce (or the upload was
    text) and run every check, collecting all failures.

    ``scrub`` replaces PII inside example values of columns without a PII policy.
    """
    cast, parse_failures = coerce_to_contract(frame, contract, from_text)
    checked = _pandera_failures(cast, contract)
    if not parse_failures.is_empty() and not checked.is_empty():
        # A cell that did not parse is null now; its not-null failure would only repeat that.
        repeated = parse_failures.select("column", "index").with_columns(
            pl.lit("not_nullable").alias("check")
        )
        checked = checked.join(
            repeated, on=["column", "check", "index"], how="anti", nulls_equal=True
        )
    failures = pl.concat([parse_failures, checked])
    report = ValidationReport(
        contract={
            "name": contract.dataset,
            "version": contract.version,
            "fingerprint": contract.fingerprint,
        },
        rows=frame.height,
        failures=_summarise(failures, contract, scrub),
        assertions=_assertions(contract, failures),
    )
    return cast, report
