"""Stored snapshots rendered in the download formats."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl

EXPORT_MEDIA_TYPES = {
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
}


# A spreadsheet runs a cell that starts like a formula (CSV injection); such text cells are
# written with a leading apostrophe, which spreadsheets show as plain text.
FORMULA_START = r"^[=+\-@\t\r]"


def neutralise_formulas(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Prefix text cells that a spreadsheet would evaluate with an apostrophe."""
    text_columns = [name for name, dtype in frame.collect_schema().items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(FORMULA_START))
        .then("'" + pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c in text_columns
    )


_WRAPPER_KEY = r'^\{"(?:[^"\\]|\\.)*":'


def nested_as_json(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Struct and list columns as JSON text: CSV has no nested values."""
    nested = [
        (name, dtype)
        for name, dtype in frame.collect_schema().items()
        if isinstance(dtype, pl.Struct | pl.List | pl.Array)
    ]
    return frame.with_columns(
        pl.when(pl.col(name).is_null())
        .then(None)
        .otherwise(
            pl.col(name).struct.json_encode()
            if isinstance(dtype, pl.Struct)
            # A list is encoded inside a one-field struct, whose key is then cut away.
            else pl.struct(name)
            .struct.json_encode()
            .str.replace(_WRAPPER_KEY, "")
            .str.strip_suffix("}")
        )
        .alias(name)
        for name, dtype in nested
    )


def export_snapshot(snapshot: Path, fmt: str, folder: Path) -> Path:
    """Write the Parquet snapshot as ``fmt`` into a new temporary file the caller removes."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="export-", suffix=f".{fmt}", dir=folder)
    os.close(fd)
    target = Path(name)
    try:
        frame = pl.scan_parquet(snapshot)
        if fmt == "csv":
            neutralise_formulas(nested_as_json(frame)).sink_csv(target)
        else:
            frame.sink_ndjson(target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target
