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


def export_snapshot(snapshot: Path, fmt: str, folder: Path) -> Path:
    """Write the Parquet snapshot as ``fmt`` into a new temporary file the caller removes."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="export-", suffix=f".{fmt}", dir=folder)
    os.close(fd)
    target = Path(name)
    try:
        frame = pl.scan_parquet(snapshot)
        if fmt == "csv":
            frame.sink_csv(target)
        else:
            frame.sink_ndjson(target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target
