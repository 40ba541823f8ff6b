"""Apply a contract to a frame: cast to its dtypes, run Pandera lazily, report failures as data.

The report never holds a raw value of a column with a PII policy, and holds at most
``MAX_EXAMPLES`` example rows per (column, check).
"""

from __future__ import annotations

import copy
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandera.backends.polars.builtin_checks  # noqa: F401  (else the first validation loads it: 75 ms)
import pandera.polars as pa
import polars as pl
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pandera.api.polars.types import PolarsData

from gateway.contracts import ColumnSpec, Contract, nested_model
from privacy.freetext import MIN_ROW_VALUE_CHARS

MAX_EXAMPLES = 10
# The column holding a row's place in the upload, where a part needs it (see
# ChunkedValidation.needs_row_numbers); never stored.
ROW_PLACE = "__datagate_row_place"
PANDERA_CRASHED = (
    "Pandera could not build its own report of these failures (it raised an error): each "
    "column was checked on its own, and the failures are given without row numbers"
)
MAX_VALUE_CHARS = 200
_FAILURE_SCHEMA = {
    "column": pl.String,
    "check": pl.String,
    "index": pl.Int64,
    "failure_case": pl.String,
}
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
# Checks whose failure case is the name of the column at fault.
_SCHEMA_LEVEL_CHECKS = ("column_in_schema", "column_in_dataframe", "column_ordered")


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating one upload: every failing (column, check), counted, redacted."""

    contract: dict[str, str]
    rows: int
    failures: list[dict[str, Any]]
    assertions: list[dict[str, Any]]
    rejected: bool = False
    rows_dropped: int = 0
    """Rows a ``drop_invalid_rows`` contract removed (their failures are listed)."""
    notes: list[str] = field(default_factory=list)
    rows_quarantined: int | None = None
    """A quarantining contract's failing rows (None for any other contract)."""
    holds: bool = False
    """Whether the failing rows are held for review (within the contract's limits, or no
    row valid at all)."""

    @property
    def valid(self) -> bool:
        """True when the upload is accepted (rows a drop_invalid_rows contract removed
        do not make it invalid)."""
        return not self.rejected

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON (the 422 extension and the run record)."""
        return {
            "valid": self.valid,
            "contract": self.contract,
            "rows": self.rows,
            "checks_run": len(self.assertions),
            "checks_failed": sum(1 for a in self.assertions if not a["success"]),
            "rows_dropped": self.rows_dropped,
            **(
                {"rows_quarantined": self.rows_quarantined}
                if self.rows_quarantined is not None
                else {}
            ),
            "failures": self.failures,
            **({"notes": self.notes} if self.notes else {}),
        }

    def summary(self) -> dict[str, Any]:
        """The short form stored on a version."""
        return {
            "valid": self.valid,
            "checks_run": len(self.assertions),
            "checks_failed": sum(1 for a in self.assertions if not a["success"]),
            "rows_dropped": self.rows_dropped,
            **(
                {"rows_quarantined": self.rows_quarantined}
                if self.rows_quarantined is not None
                else {}
            ),
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


_INTEGER_TEXT = pl.Decimal(38, 9)


def _widest(target: pl.DataType) -> pl.DataType | None:
    # The same kind of value at full precision: text parsed into it and into the target must
    # agree, or the target would silently drop digits (12.345 into Decimal(12, 2)).
    if isinstance(target, pl.Decimal):
        return pl.Decimal(38, max(target.scale, 18))
    if isinstance(target, pl.Datetime) and target.time_unit != "ns":
        return pl.Datetime("ns", target.time_zone)
    if target.is_integer():
        return _INTEGER_TEXT
    return None


def _parsed(frame: pl.DataFrame, name: str, target: pl.DataType) -> pl.Series:
    try:
        expr = _cast_expr(name, frame.schema[name], target)
        if target.is_integer() and frame.schema[name] == pl.String:
            # "1.0" is the integer 1 (exports write integers so); "2.5" stays a failure, as
            # the exactness check compares with the text read at full precision.
            text = pl.col(name).str.strip_chars()
            expr = pl.coalesce(
                expr, text.cast(_INTEGER_TEXT, strict=False).cast(target, strict=False)
            )
        series = frame.select(expr.alias(name)).to_series()
        if isinstance(target, pl.Datetime):
            series = _align_time_zone(series, target)
        return series.cast(target, strict=False)
    except pl.exceptions.PolarsError:
        # The whole column is of a shape that cannot become the target.
        return pl.Series(name, [None] * frame.height, dtype=target)


def _failure_rows(name: str, check: str, rows: pl.Series, values: pl.Series) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "column": name,
            "check": check,
            "index": rows.cast(pl.Int64),
            "failure_case": _as_text(values.gather(rows)),
        },
        schema=_FAILURE_SCHEMA,
    )


def _contract_columns(frame: pl.DataFrame, contract: Contract) -> list[tuple[str, ColumnSpec]]:
    """The frame's columns the contract governs: by name, or every match of a regex column."""
    found: list[tuple[str, ColumnSpec]] = []
    for spec in contract.columns:
        if spec.regex:
            selector = contract.schema.columns[spec.name].selector
            found.extend((name, spec) for name in frame.select(pl.col(selector)).columns)
        elif spec.name in frame.columns:
            found.append((spec.name, spec))
    return found


def _json_has_no_type_for(source: pl.DataType, target: pl.DataType) -> bool:
    # JSON writes dates, times, durations and decimals as strings, and has one integer and one
    # float type: those values are read into the contract's dtype like CSV text. Anything else
    # (the string "1" for an integer column, say) is a value of another type, left to Pandera.
    if source == pl.String:
        return target.is_temporal() or isinstance(target, pl.Decimal)
    if source.is_integer():
        return target.is_integer() or target.is_float() or isinstance(target, pl.Decimal)
    if source.is_float():
        return target.is_float() or isinstance(target, pl.Decimal)
    return False


def parse_text(
    frame: pl.DataFrame, contract: Contract, json_values: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read an upload's text values into the contract's dtypes, exactly: a value that does not
    parse, or would lose digits or precision on the way, is a failure, never a changed value.

    CSV cells have no type until parsed, so every column is read; JSON values
    (``json_values``) only where JSON has no type of the contract's kind: dates and decimals
    are strings in JSON, and its numbers have no width.

    Returns the parsed frame (failed cells are null) and the failures as rows of
    (column, check, index, failure_case).
    """
    parsed: list[pl.Series] = []
    failures: list[pl.DataFrame] = []
    for name, spec in _contract_columns(frame, contract):
        if frame.schema[name] == spec.dtype:
            continue
        if json_values and not _json_has_no_type_for(frame.schema[name], spec.dtype):
            continue
        original = frame[name]
        series = _parsed(frame, name, spec.dtype)
        failed = original.is_not_null() & series.is_null()
        wide = _widest(spec.dtype)
        if original.dtype.is_numeric() and not spec.dtype.is_float():
            # A number narrowed to the contract's width or scale must keep its value.
            failed = failed | (series.cast(original.dtype, strict=False) != original).fill_null(
                False
            )
        elif wide is not None:
            exact = _parsed(frame, name, wide)
            failed = failed | (series.cast(wide, strict=False) != exact).fill_null(False)
        parsed.append(series)
        rows = failed.arg_true()
        if rows.len():
            failures.append(_failure_rows(name, f"dtype('{spec.dtype}')", rows, original))
    failure_frame = pl.concat(failures) if failures else pl.DataFrame(schema=_FAILURE_SCHEMA)
    return frame.with_columns(parsed), failure_frame


def coerce_like_pandera(
    frame: pl.DataFrame, contract: Contract
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Coerce the columns Pandera would (``coerce`` on the model or the field) with Pandera's
    own dtype engine, so values come out as ``Model.validate`` makes them; a column that does
    not coerce is reported cell by cell, named by its column.

    Returns the coerced frame and the failures as rows of (column, check, index, failure_case).
    """
    failures: list[pl.DataFrame] = []
    for name, spec in _contract_columns(frame, contract):
        if not spec.coerce or frame.schema[name] == spec.dtype:
            continue
        if nested_model(contract.schema.columns[spec.name]) is not None:
            continue  # Pandera validates the struct against its model itself
        engine_dtype = contract.schema.columns[spec.name].dtype
        try:
            # Pandera's own cast (``try_coerce`` is the same cast, collected twice).
            frame = engine_dtype.coerce(PolarsData(frame.lazy(), name)).collect()
            continue
        except (pa.errors.ParserError, pl.exceptions.PolarsError, TypeError, ValueError):
            pass
        original = frame[name]
        check = f"dtype('{spec.dtype}')"
        try:
            series = original.cast(spec.dtype, strict=False)
        except pl.exceptions.PolarsError:
            # No cell can convert (e.g. text to Boolean): every value fails, as in Pandera, and
            # the column stays as it came (Pandera's dtype check names it too).
            failures.append(_failure_rows(name, check, original.is_not_null().arg_true(), original))
            continue
        rows = (original.is_not_null() & series.is_null()).arg_true()
        if not rows.len():
            continue  # no single cell is at fault: Pandera's dtype check names the column
        failures.append(_failure_rows(name, check, rows, original))
        frame = frame.with_columns(series)
    failure_frame = pl.concat(failures) if failures else pl.DataFrame(schema=_FAILURE_SCHEMA)
    return frame, failure_frame


def _as_text(values: pl.Series) -> pl.Series:
    """Values as text for a report: lists and structs as JSON, other types as polars prints them."""
    dtype = values.dtype
    if dtype == pl.String:
        return values
    try:
        if isinstance(dtype, (pl.List, pl.Array, pl.Struct)):
            # JSON of {"v": value}, the wrapper cut off again: vectorised, for any number of rows.
            wrapped = pl.struct(pl.col("v")).struct.json_encode().str.slice(5).str.head(-1)
            text = pl.when(pl.col("v").is_null()).then(None).otherwise(wrapped)
            return values.to_frame("v").select(text.alias(values.name)).to_series()
        return values.cast(pl.String)
    except pl.exceptions.PolarsError:
        return pl.Series(values.name, [str(v) for v in values.to_list()], dtype=pl.String)


def _normalised(cases: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """Pandera's failure cases as (column, check, index, failure_case), each named by its
    place: the column for column checks and for missing, extra or misordered columns; the
    columns of ``Config.unique``; none for other dataframe-wide checks (their check names them).
    """
    frame_level = pl.col("schema_context") == "DataFrameSchema"
    names_column = pl.col("check").is_in(_SCHEMA_LEVEL_CHECKS)
    unique = contract.definition["unique"]
    unique_columns = ", ".join(unique) if isinstance(unique, list) else unique
    # Only nested-model columns are still coerced by Pandera here (see _without_coercion): a
    # coercion failure is theirs, named by their column and model, not the schema's text.
    nested = {
        name: model
        for name, column in contract.checked_schema.columns.items()
        if (model := nested_model(column)) is not None
    }
    in_nested = pl.col("check").str.starts_with("coerce_dtype(")
    text = cases.with_columns(_as_text(cases["failure_case"]).alias("failure_case"))
    return text.select(
        pl.when(names_column)
        .then(pl.col("failure_case"))
        .when(frame_level & (pl.col("check") == "multiple_fields_uniqueness"))
        .then(pl.lit(unique_columns, dtype=pl.String))
        .when(frame_level & in_nested & bool(nested))
        .then(pl.lit(", ".join(nested), dtype=pl.String))
        .when(frame_level)
        .then(None)
        .otherwise(pl.col("column"))
        .cast(pl.String)
        .alias("column"),
        pl.when(in_nested & bool(nested))
        .then(pl.lit(f"nested({', '.join(sorted(set(nested.values())))})", dtype=pl.String))
        .otherwise(pl.col("check").cast(pl.String))
        .alias("check"),
        pl.col("index").cast(pl.Int64),
        pl.when(names_column).then(None).otherwise(pl.col("failure_case")).alias("failure_case"),
        (frame_level & ~names_column & ~(in_nested & bool(nested))).alias("whole_row"),
    )


def _column_by_column(frame: pl.DataFrame, schema: pa.DataFrameSchema) -> pl.DataFrame:
    # Pandera failed to build its own report (it cannot turn some dtypes, e.g. Duration, into
    # text): each column is checked alone, eagerly, and reported without row numbers.
    rows: list[dict[str, Any]] = []
    for name, component in schema.columns.items():
        if name not in frame.columns and not component.required:
            continue
        try:
            component.validate(frame, lazy=False)
        except pa.errors.SchemaError as exc:
            cases = exc.failure_cases
            values = (
                _as_text(cases.to_series(0)).to_list()
                if isinstance(cases, pl.DataFrame) and cases.width
                else [None]
            )
            check = str(exc.check) if exc.check is not None else type(exc).__name__
            check = getattr(exc.check, "name", None) or check
            rows.extend(
                {"column": name, "check": check, "index": None, "failure_case": v} for v in values
            )
        except Exception as exc:  # a Pandera crash is reported, never raised
            rows.append(
                {
                    "column": name,
                    "check": f"pandera raised {type(exc).__name__}",
                    "index": None,
                    "failure_case": None,
                }
            )
    if not rows:
        rows.append(
            {
                "column": None,
                "check": "pandera could not validate the upload",
                "index": None,
                "failure_case": None,
            }
        )
    return pl.DataFrame(rows, schema=_FAILURE_SCHEMA).with_columns(
        pl.lit(False).alias("whole_row"), pl.lit(True).alias("by_column")
    )


def _run_pandera(
    frame: pl.DataFrame,
    contract: Contract,
    checked: pa.DataFrameSchema | None = None,
    reporting: pa.DataFrameSchema | None = None,
) -> tuple[pl.DataFrame | None, pl.DataFrame]:
    """Pandera's validation of the coerced frame (by the contract's schemas, or the given
    ``checked`` and ``reporting`` ones): its output frame (None when it rejects) and its
    failures, normalised. With ``drop_invalid_rows`` the output lacks the failing rows and
    the failures say which were dropped."""
    checked = contract.checked_schema if checked is None else checked
    reporting = contract.reporting_schema if reporting is None else reporting
    try:
        output = checked.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        try:
            return None, _normalised(exc.failure_cases, contract)
        except pl.exceptions.PolarsError:
            return None, _column_by_column(frame, checked)
    except pa.errors.SchemaError as exc:
        return None, pl.DataFrame(
            {
                "column": [getattr(exc.schema, "name", None)],
                "check": [str(exc.check) if exc.check is not None else type(exc).__name__],
                "index": [None],
                "failure_case": [None],
                "whole_row": [False],
            },
            schema={**_FAILURE_SCHEMA, "whole_row": pl.Boolean},
        )
    except Exception:  # Pandera crashed (e.g. building its report): say where
        return None, _column_by_column(frame, checked)
    if output.height == frame.height:
        return output, _no_failures()
    # drop_invalid_rows: Pandera dropped rows without a word; the report names them.
    try:
        reporting.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return output, _normalised(exc.failure_cases, contract)
    except Exception:  # as above
        return output, _column_by_column(frame, reporting)
    return output, _no_failures()


def _no_failures() -> pl.DataFrame:
    return pl.DataFrame(schema={**_FAILURE_SCHEMA, "whole_row": pl.Boolean})


def _placeholder(spec: ColumnSpec | None) -> str | None:
    if spec is None or spec.policy is None:
        return None
    return "<REDACTED>" if spec.policy.entity == "scan" else f"<{spec.policy.entity}>"


Scrub = Callable[[list[str]], list[str]]


def _redacted_row(
    item: dict[str, Any], contract: Contract, to_scrub: list[tuple[dict[str, Any], str]]
) -> None:
    # A whole-row example (a dataframe check, Config.unique) as Pandera gives it, JSON: its
    # declared-PII cells become their placeholder; every other text, nested values written
    # as JSON included, is scanned like any shown value.
    try:
        row = json.loads(item["value"])
    except ValueError:
        row = None
    if not isinstance(row, dict):
        if contract.pii_columns:
            item["value"] = "<REDACTED>"
        else:
            to_scrub.append((item, "value"))
        return
    # What the row declares (its name, address...) is replaced wherever its other cells repeat
    # it, before they are scanned: NER does not know every name (as in the stored free text).
    own = sorted(
        (
            (str(value), shown)
            for key, value in row.items()
            if value is not None
            and (shown := _placeholder(contract.spec_for(key))) not in (None, "<REDACTED>")
            and len(str(value)) >= MIN_ROW_VALUE_CHARS
        ),
        key=lambda pair: -len(pair[0]),
    )
    for key, value in row.items():
        shown = _placeholder(contract.spec_for(key))
        if shown is not None and value is not None:
            row[key] = shown
            continue
        if isinstance(value, (list, dict)):
            value = json.dumps(value, default=str)
        elif not isinstance(value, str):
            continue
        for declared, placeholder in own:
            value = value.replace(declared, placeholder)
        row[key] = value
        to_scrub.append((row, key))
    item["value"] = row


def digest_failures(failures: pl.DataFrame, offset: int = 0) -> list[dict[str, Any]]:
    """Failures as one entry per (column, check) in order of their first failing row: how many
    rows fail and the first ``MAX_EXAMPLES`` of them (row number counted from 1, plus
    ``offset``: where the frame starts in the upload), raw. Digests of consecutive parts of
    an upload merge (``merge_digests``) into the digest of the whole."""
    if failures.is_empty():
        return []
    ordered = failures.with_columns(
        pl.col("failure_case").str.slice(0, MAX_VALUE_CHARS).alias("value"),
        (pl.col("index") + 1 + offset).alias("row"),
    ).sort("row", nulls_last=True, maintain_order=True)
    grouped = ordered.group_by(["column", "check"], maintain_order=True).agg(
        pl.col("index").drop_nulls().n_unique().alias("failing_rows"),
        pl.col("whole_row").first(),
        pl.struct("row", "value", pl.col("failure_case").alias("full"))
        .filter(pl.col("row").is_not_null())
        .head(MAX_EXAMPLES)
        .alias("examples"),
    )
    return grouped.to_dicts()


def merge_digests(digests: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One digest from the digests of an upload's parts: counts added (each part's rows are its
    own), the first ``MAX_EXAMPLES`` examples kept, groups in order of their first failing
    row (a group without row numbers, such as a missing column, once, after them)."""
    merged: dict[tuple[Any, Any], dict[str, Any]] = {}
    for digest in digests:
        for group in digest:
            key = (group["column"], group["check"])
            if key not in merged:
                merged[key] = {**group, "examples": list(group["examples"])}
                continue
            into = merged[key]
            into["failing_rows"] += group["failing_rows"]
            into["examples"] = sorted(
                into["examples"] + list(group["examples"]), key=lambda e: e["row"]
            )[:MAX_EXAMPLES]
    groups = list(merged.values())
    last = float("inf")
    return sorted(groups, key=lambda g: g["examples"][0]["row"] if g["examples"] else last)


def _summarise(
    failures: pl.DataFrame, contract: Contract, scrub: Scrub | None
) -> list[dict[str, Any]]:
    return summarise_digest(digest_failures(failures), contract, scrub)


def summarise_digest(
    digest: list[dict[str, Any]], contract: Contract, scrub: Scrub | None
) -> list[dict[str, Any]]:
    """The report's failures from a digest: examples of PII columns as their placeholder, whole
    rows with their declared cells replaced, every other shown value scrubbed by ``scrub``."""
    summary: list[dict[str, Any]] = []
    to_scrub: list[tuple[dict[str, Any], str]] = []
    for group in digest:
        placeholder = _placeholder(contract.spec_for(group["column"]))
        examples = []
        for example in group["examples"]:
            item: dict[str, Any] = {"row": example["row"], "value": example["value"]}
            if example["value"] is None:
                pass
            elif group["whole_row"]:
                item["value"] = example["full"]
                _redacted_row(item, contract, to_scrub)
            elif placeholder is not None:
                item["value"] = placeholder
            else:
                to_scrub.append((item, "value"))
            examples.append(item)
        summary.append(
            {
                "column": group["column"],
                "check": group["check"],
                "failing_rows": group["failing_rows"],
                "examples": examples,
            }
        )
    if scrub is not None and to_scrub:
        # Values of undeclared columns are shown, but PII found inside them is replaced.
        cleaned = scrub([str(holder[key]) for holder, key in to_scrub])
        for (holder, key), clean in zip(to_scrub, cleaned, strict=True):
            holder[key] = clean
    for failure in summary:
        for example in failure["examples"]:
            if isinstance(example["value"], dict):
                example["value"] = json.dumps(example["value"], default=str)[:MAX_VALUE_CHARS]
    return summary


def _assertions(contract: Contract, failed: set[tuple[Any, Any]]) -> list[dict[str, Any]]:
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


# Pandera's built-in checks that look at one value at a time: checkable part by part.
_ROW_LOCAL_BUILTINS = frozenset(
    {
        "equal_to",
        "not_equal_to",
        "greater_than",
        "greater_than_or_equal_to",
        "less_than",
        "less_than_or_equal_to",
        "in_range",
        "isin",
        "notin",
        "str_matches",
        "str_contains",
        "str_startswith",
        "str_endswith",
        "str_length",
    }
)


def _row_local(check: Any) -> bool:
    """Whether a check's verdict on a row depends on that row alone: an element-wise check, or
    a built-in comparison. Any other (a vectorised custom check may take a mean) is global."""
    if getattr(check, "element_wise", False):
        return True
    builtin = getattr(getattr(check, "_check_fn", None), "__module__", "") or ""
    return builtin.startswith("pandera.") and check.name in _ROW_LOCAL_BUILTINS


@dataclass(frozen=True)
class SplitSchema:
    """A contract's checks in two parts: those decided row by row (any part of an upload
    alone), and those that need whole columns (uniqueness, vectorised custom checks,
    dataframe checks), run once over the columns they read."""

    checked: pa.DataFrameSchema
    reporting: pa.DataFrameSchema
    # Whole-column checks Pandera runs (None: none); ``unique=True`` on a named column is
    # checked by ``duplicated_rows`` instead, which needs far less memory.
    whole: pa.DataFrameSchema | None
    # The columns Pandera's whole-column checks read; None: every column (a dataframe check,
    # or Config.unique, whose failures show whole rows).
    whole_columns: frozenset[str] | None
    unique_columns: tuple[str, ...] = ()


def split_schema(contract: Contract) -> SplitSchema:
    """Split the contract's checks into row-local and whole-column ones (see SplitSchema)."""
    local = copy.deepcopy(contract.checked_schema)
    whole_columns: dict[str, pa.Column] = {}
    unique_columns: list[str] = []
    for name, column in local.columns.items():
        kept = [c for c in column.checks if _row_local(c)]
        moved = [c for c in column.checks if not _row_local(c)]
        own_unique = column.unique and not column.regex
        if own_unique:
            unique_columns.append(name)
        if moved or (column.unique and not own_unique):
            whole_columns[name] = pa.Column(
                None,
                checks=moved,
                unique=column.unique and not own_unique,
                nullable=True,
                required=False,
                regex=column.regex,
                name=name,
            )
        column.checks = kept
        column.unique = False
    frame_checks = list(local.checks)
    unique = local.unique
    local.checks = []
    local.unique = None
    reporting = copy.deepcopy(local)
    reporting.drop_invalid_rows = False
    whole = None
    if whole_columns or frame_checks or unique:
        whole = pa.DataFrameSchema(
            whole_columns,
            checks=frame_checks,
            unique=unique,
            strict=False,
            coerce=False,
            name=contract.checked_schema.name,
        )
    needed: frozenset[str] | None = None
    if not frame_checks and not unique and not any(c.regex for c in whole_columns.values()):
        needed = frozenset(whole_columns)
    return SplitSchema(local, reporting, whole, needed, tuple(unique_columns))


def duplicated_rows(values: pl.Series) -> pl.Series:
    """The rows (ascending) whose value occurs more than once, nulls equal to nulls: what
    Pandera's ``unique=True`` fails. By sorting (unless already sorted), which takes a fraction
    of the memory of the hash table ``is_duplicated`` builds (for 38 million integers, 0.7 GB
    against 2.4 GB, and a tenth of the time)."""
    n = values.len()
    if n < 2:
        return pl.Series("index", [], dtype=pl.Int64)
    try:
        order = None if values.is_sorted() else values.arg_sort(nulls_last=True)
        ordered = values if order is None else values.gather(order)
        same = ordered.slice(1).eq_missing(ordered.slice(0, n - 1))
    except pl.exceptions.PolarsError:  # a dtype that does not sort (nested, say)
        return values.is_duplicated().arg_true().cast(pl.Int64).rename("index")
    del ordered
    edge = pl.Series([False])
    duplicated = pl.concat([edge, same]) | pl.concat([same, edge])
    positions = duplicated.arg_true()
    rows = positions if order is None else order.gather(positions).sort()
    return rows.cast(pl.Int64).rename("index")


Spill = Callable[[], tuple[Path, IO[bytes]]]


def _strictly_ascending(values: pl.Series, last: Any) -> bool:
    n = values.len()
    if n == 0:
        return True
    if values.null_count():
        return False
    try:
        if last is not None and not values[0] > last:
            return False
        return n < 2 or bool((values.slice(1) > values.slice(0, n - 1)).all())
    except (TypeError, pl.exceptions.PolarsError):  # values that do not compare (nested)
        return False


class KeyColumn:
    """The values of one ``unique=True`` column over every part, for the check at the end.

    Values that arrive strictly ascending (ids exported in order, the common case) cannot
    repeat: they are written, encrypted under a key that lives only in this object (so a file
    left by a crash is unreadable), to files ``spill`` gives, instead of being held. The first
    part out of order reads them back, and from then on every value is held in memory. Without
    ``spill`` every value is held.
    """

    def __init__(self, spill: Spill | None) -> None:
        self.spill = spill
        self.ascending = spill is not None
        self.last: Any = None
        self.held: list[pl.Series] = []
        self.files: list[Path] = []
        self.cipher = AESGCM(AESGCM.generate_key(256))

    def add(self, values: pl.Series) -> None:
        """The next part's values of the column."""
        if self.ascending and _strictly_ascending(values, self.last):
            if values.len():
                self.last = values[-1]
                self._write(values)
            return
        if self.ascending:  # out of order: what went to disk comes back
            self.held = [self._read(path) for path in self.files]
            self.files.clear()
            self.ascending = False
        self.held.append(values)

    def values(self) -> pl.Series | None:
        """Every value, in order; None when they were strictly ascending (none repeats)."""
        if self.ascending:
            return None
        if not self.held:
            return None
        return pl.concat([v.to_frame() for v in self.held], how="vertical_relaxed").to_series()

    def _write(self, values: pl.Series) -> None:
        assert self.spill is not None
        buffer = io.BytesIO()
        values.to_frame().write_ipc(buffer)
        nonce = os.urandom(12)
        path, handle = self.spill()
        with handle:
            handle.write(nonce + self.cipher.encrypt(nonce, buffer.getvalue(), None))
        self.files.append(path)

    def _read(self, path: Path) -> pl.Series:
        data = path.read_bytes()
        plain = self.cipher.decrypt(data[:12], data[12:], None)
        path.unlink(missing_ok=True)
        return pl.read_ipc(io.BytesIO(plain)).to_series()


HELD_FAILURES = "__datagate_failures"
HELD_FAILURE_TYPE = pl.List(pl.Struct({"column": pl.String, "check": pl.String}))


def held_failures(failures: pl.DataFrame, offset: int = 0) -> pl.DataFrame:
    """Failures (index, column, check) as one row per failing row: its place in the upload
    (``ROW_PLACE``, from 0, plus ``offset``) and every failure of it (``HELD_FAILURES``)."""
    return (
        failures.filter(pl.col("index").is_not_null())
        .group_by("index", maintain_order=True)
        .agg(pl.struct("column", "check").alias(HELD_FAILURES))
        .select(
            (pl.col("index") + offset).cast(pl.Int64).alias(ROW_PLACE),
            pl.col(HELD_FAILURES).cast(HELD_FAILURE_TYPE),
        )
    )


def held_rows(frame: pl.DataFrame, failures: pl.DataFrame, offset: int) -> pl.DataFrame:
    """The failing rows of ``frame`` (a part starting at ``offset``) as read, with their place
    and their failures: what a quarantine batch holds."""
    failing = held_failures(failures)
    rows = frame.gather(failing.get_column(ROW_PLACE))
    return rows.with_columns(
        (failing.get_column(ROW_PLACE) + offset).alias(ROW_PLACE),
        failing.get_column(HELD_FAILURES),
    )


@dataclass
class ChunkedValidation:
    """Validate an upload part by part, exactly as ``validate_frame`` validates it whole.

    Each part (``feed``) is parsed, coerced and checked by the row-local checks; its failures
    are kept as a digest (counts and the first examples, row numbers global). The columns the
    whole-column checks read are kept, narrow, and checked once at ``finish``, so uniqueness
    holds across parts. Memory: one part, plus those columns (a ``unique=True`` column only
    once its values stop arriving in ascending order, see ``KeyColumn``).
    """

    contract: Contract
    scrub: Scrub | None = None
    from_text: bool = False
    from_json: bool = False
    rows: int = 0
    stored_rows: int = 0
    split: SplitSchema | None = None
    digests: list[list[dict[str, Any]]] = field(default_factory=list)
    failed: set[tuple[Any, Any]] = field(default_factory=set)
    kept: list[pl.DataFrame] = field(default_factory=list)
    # Where ``unique=True`` columns may put their values while they arrive in order.
    spill: Spill | None = None
    keys: dict[str, KeyColumn] = field(default_factory=dict)
    # Rows a part dropped already (drop_invalid_rows with whole-column checks only).
    dropped_early: list[pl.Series] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rejected: bool = False
    # A quarantining contract: each part's failing rows as read, with the failures of each
    # (``held_rows``), go here; ``finish`` leaves the whole-column failures in ``late``.
    hold: Callable[[pl.DataFrame], None] | None = None
    late: pl.DataFrame | None = None

    def __post_init__(self) -> None:
        if self.split is None:
            self.split = split_schema(self.contract)

    @property
    def needs_row_numbers(self) -> bool:
        """Whether rows may be dropped at ``finish`` (drop_invalid_rows with whole-column
        checks): then each part's output rows must be known by their place in the upload."""
        split = self.split
        assert split is not None
        whole = split.whole is not None or bool(split.unique_columns)
        return whole and bool(self.contract.checked_schema.drop_invalid_rows)

    def feed(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series | None]:
        """Validate the next part; returns the rows to store (coerced, invalid rows dropped by
        a drop_invalid_rows contract) and, when ``needs_row_numbers``, their rows' places."""
        split = self.split
        assert split is not None
        offset = self.rows
        quarantine = self.contract.quarantine is not None
        coerced, output, failures = _check(
            frame,
            self.contract,
            split.checked,
            split.reporting,
            self.from_text,
            self.from_json,
            drop_cells=quarantine,
        )
        if "by_column" in failures.columns:
            if PANDERA_CRASHED not in self.notes:
                self.notes.append(PANDERA_CRASHED)
            failures = failures.drop("by_column")
        self.rows += frame.height
        if output is None:
            self.rejected = True
        self.failed.update(failures.select("column", "check").unique().iter_rows())
        self.digests.append(digest_failures(failures, offset))
        if split.whole is not None:
            columns = (
                coerced.columns
                if split.whole_columns is None
                else [c for c in coerced.columns if c in split.whole_columns]
            )
            self.kept.append(coerced.select(columns))
        for name in split.unique_columns:
            if name in coerced.columns:
                self.keys.setdefault(name, KeyColumn(self.spill)).add(coerced[name])
        if quarantine and output is not None and failures.get_column("index").null_count():
            self.rejected = True  # a failure of no row in particular: nothing to hold
        if quarantine and output is not None and not failures.is_empty() and self.hold:
            self.hold(held_rows(frame, failures, offset))
        stored = coerced if output is None else output
        self.stored_rows += stored.height
        places = None
        if self.needs_row_numbers:
            dropped = failures.get_column("index").drop_nulls().unique()
            everything = pl.int_range(offset, offset + frame.height, eager=True, dtype=pl.Int64)
            places = everything.filter(~everything.is_in((dropped + offset).implode()))
            self.dropped_early.append(dropped + offset)
            assert places.len() == stored.height, "Pandera dropped rows it did not report"
        return stored, places

    def finish(self) -> tuple[ValidationReport, pl.Series]:
        """Run the whole-column checks and merge every part's failures into the report.

        Returns the report and the places of rows the whole-column checks failed (dropped by a
        drop_invalid_rows contract; with any other contract they reject the upload).
        """
        split = self.split
        assert split is not None
        dropped = pl.Series("index", [], dtype=pl.Int64)
        found: list[pl.DataFrame] = []
        for name, keys in self.keys.items():
            values = keys.values()
            if values is not None and (rows := duplicated_rows(values)).len():
                failed = _failure_rows(name, "field_uniqueness", rows, values)
                found.append(failed.with_columns(pl.lit(False).alias("whole_row")))
        self.keys.clear()
        if self.kept and split.whole is not None:
            columns = pl.concat(self.kept, how="vertical_relaxed")
            self.kept.clear()
            _, failures = _run_pandera(columns, self.contract, split.whole, split.whole)
            del columns
            if "by_column" in failures.columns:
                if PANDERA_CRASHED not in self.notes:
                    self.notes.append(PANDERA_CRASHED)
                failures = failures.drop("by_column")
            found.append(failures)
        if found:
            failures = pl.concat(found)
            if not failures.is_empty():
                self.failed.update(failures.select("column", "check").unique().iter_rows())
                self.digests.append(digest_failures(failures))
                dropped = failures.get_column("index").drop_nulls().unique().sort()
                if self.contract.quarantine is not None:
                    self.late = failures.select("index", "column", "check")
                if self.contract.checked_schema.drop_invalid_rows:
                    early = pl.concat([dropped.clear(), *self.dropped_early])
                    self.stored_rows -= dropped.filter(~dropped.is_in(early.implode())).len()
                else:
                    self.rejected = True
                if dropped.is_empty():
                    self.rejected = True  # failed, but names no row to drop
        rejected = self.rejected
        if self.stored_rows == 0 < self.rows:
            rejected = True  # drop_invalid_rows dropped every row: nothing valid to store
        held, holds, notes = 0, False, list(self.notes)
        policy = self.contract.quarantine
        if policy is not None and not self.rejected:
            held = self.rows - self.stored_rows
            holds = held > 0
            if held and self.stored_rows:
                share = held / self.rows
                if share > policy.max_invalid_fraction:
                    rejected, holds = True, False
                    notes.append(
                        f"{held} of {self.rows} rows fail ({share:.2%}), more than "
                        f"max_invalid_fraction {policy.max_invalid_fraction:.2%} allows: the "
                        "whole upload is refused and nothing is held"
                    )
                elif self.stored_rows < policy.min_valid_rows:
                    rejected, holds = True, False
                    notes.append(
                        f"only {self.stored_rows} rows pass, fewer than min_valid_rows "
                        f"{policy.min_valid_rows}: the whole upload is refused and nothing is held"
                    )
        report = ValidationReport(
            contract={
                "name": self.contract.dataset,
                "version": self.contract.version,
                "fingerprint": self.contract.fingerprint,
            },
            rows=self.rows,
            failures=summarise_digest(merge_digests(self.digests), self.contract, self.scrub),
            assertions=_assertions(self.contract, self.failed),
            rejected=rejected,
            rows_dropped=0 if rejected or policy is not None else self.rows - self.stored_rows,
            notes=notes,
            rows_quarantined=held if policy is not None else None,
            holds=holds,
        )
        return report, dropped


def _check(
    frame: pl.DataFrame,
    contract: Contract,
    checked: pa.DataFrameSchema,
    reporting: pa.DataFrameSchema,
    from_text: bool,
    from_json: bool,
    drop_cells: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame]:
    """Parse, coerce and check one frame: the coerced frame, Pandera's output (None when it
    rejects) and every failure, cell failures first (``whole_row`` says which are rows).
    A value that does not convert rejects the frame, unless ``drop_cells`` (a quarantining
    contract): then its row leaves the output like a row Pandera dropped."""
    if from_text or from_json:
        frame, parse_failures = parse_text(frame, contract, json_values=from_json and not from_text)
    else:
        parse_failures = pl.DataFrame(schema=_FAILURE_SCHEMA)
    coerced, coerce_failures = coerce_like_pandera(frame, contract)
    cell_failures = pl.concat([parse_failures, coerce_failures]).with_columns(
        pl.lit(False).alias("whole_row")
    )
    output, checked_failures = _run_pandera(coerced, contract, checked, reporting)
    crashed = "by_column" in checked_failures.columns
    if crashed:
        checked_failures = checked_failures.drop("by_column")
    pandera_dropped = checked_failures.get_column("index").drop_nulls().unique()
    if not cell_failures.is_empty() and not checked_failures.is_empty():
        # A cell that did not convert is null now; its not-null failure would only repeat that.
        repeated = cell_failures.select("column", "index").with_columns(
            pl.lit("not_nullable").alias("check")
        )
        checked_failures = checked_failures.join(
            repeated, on=["column", "check", "index"], how="anti", nulls_equal=True
        )
    failures = pl.concat([cell_failures, checked_failures])
    if not cell_failures.is_empty():
        if drop_cells and output is not None:
            everything = pl.int_range(0, frame.height, eager=True, dtype=pl.Int64)
            places = everything.filter(~everything.is_in(pandera_dropped.implode()))
            bad = cell_failures.get_column("index").implode()
            output = output.filter(~places.is_in(bad))
        else:
            output = None  # a value that does not convert rejects the upload
    if crashed:
        failures = failures.with_columns(pl.lit(True).alias("by_column"))
    return coerced, output, failures


def validate_frame(
    frame: pl.DataFrame,
    contract: Contract,
    scrub: Scrub | None = None,
    from_text: bool = False,
    from_json: bool = False,
) -> tuple[pl.DataFrame, ValidationReport]:
    """Validate ``frame`` as ``Model.validate(frame, lazy=True)`` would, and return the frame
    Pandera returns (coerced, ``strict="filter"`` applied, defaults filled, missing columns
    added, invalid rows dropped) with a report of every failure.

    ``from_text``: the upload was CSV, parsed exactly into the contract's dtypes first;
    ``from_json``: it was JSON, whose strings and numbers are read likewise where JSON has no
    type of the contract's kind (see ``parse_text``).
    ``scrub`` replaces PII inside example values of columns without a PII policy.
    """
    coerced, output, failures = _check(
        frame,
        contract,
        contract.checked_schema,
        contract.reporting_schema,
        from_text,
        from_json,
    )
    notes = []
    if "by_column" in failures.columns:
        notes.append(PANDERA_CRASHED)
        failures = failures.drop("by_column")
    rejected = output is None
    if output is not None and output.height == 0 < frame.height:
        rejected = True  # drop_invalid_rows dropped every row: nothing valid to store
    stored = coerced if output is None else output
    report = ValidationReport(
        contract={
            "name": contract.dataset,
            "version": contract.version,
            "fingerprint": contract.fingerprint,
        },
        rows=frame.height,
        failures=_summarise(failures, contract, scrub),
        assertions=_assertions(contract, set(failures.select("column", "check").iter_rows())),
        rejected=rejected,
        rows_dropped=0 if rejected else frame.height - stored.height,
        notes=notes,
    )
    return stored, report
