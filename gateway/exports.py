"""Stored snapshots rendered in the download formats."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import polars as pl

from gateway.snapshots import ROW_GROUP_SIZE, write_parquet

ExportFormat = Literal["parquet", "csv", "ndjson"]
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


# Rows per piece of a streamed download: a few MB of text, whatever the version's size.
EXPORT_ROWS = ROW_GROUP_SIZE


def export_chunks(snapshot: Path | list[Path], fmt: str) -> Iterator[bytes]:
    """The Parquet snapshot (or its parts, in order) as ``fmt`` (csv or ndjson), in pieces of
    ``EXPORT_ROWS`` rows, each read when the previous one was sent: a download starts at once
    and its memory stays bounded, whatever the version's size. The bytes are those polars
    writes for the whole frame (the header once, for CSV)."""
    files = snapshot if isinstance(snapshot, list) else [snapshot]
    first = True
    for path in files:
        source = pl.scan_parquet(path)
        rows = source.select(pl.len()).collect().item()  # from the footer
        for start in range(0, rows, EXPORT_ROWS):
            # Only the row groups a slice needs are read (polars' batch stream would read the
            # whole file ahead of a slow client).
            frame = source.slice(start, EXPORT_ROWS)
            if fmt == "csv":
                frame = neutralise_formulas(nested_as_json(frame))
            out = io.BytesIO()
            batch = frame.collect()
            if fmt == "csv":
                batch.write_csv(out, include_header=first)
            else:
                batch.write_ndjson(out)
            first = False
            yield out.getvalue()
    if first and fmt == "csv":  # no rows: the header alone
        frame = neutralise_formulas(nested_as_json(pl.scan_parquet(files[0])))
        yield frame.head(0).collect().write_csv().encode()


def joined_parts(parts: list[Path], folder: Path) -> Path:
    """A version's Parquet parts as one Parquet file in ``folder`` (streamed: memory holds a
    row group, not the version); the caller removes it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="download-", suffix=".parquet", dir=folder)
    os.close(fd)
    target = Path(name)
    try:
        write_parquet(pl.scan_parquet(parts), target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target
