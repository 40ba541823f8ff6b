"""Streamed downloads: CSV and NDJSON are written piece by piece (bounded memory, first bytes
at once) and come out byte for byte as polars writes the whole frame."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from gateway import exports
from gateway.exports import export_chunks, nested_as_json, neutralise_formulas
from gateway.samples import customers


@pytest.fixture
def snapshot(tmp_path: Path) -> Path:
    frame = customers(2_500, notes=True).with_columns(
        pl.struct("country", "city").alias("place"),
        pl.concat_list("country", "segment").alias("tags"),
        pl.when(pl.col("customer_id") % 7 == 0)
        .then(pl.lit("=HYPERLINK(1)"))
        .otherwise(pl.col("notes"))
        .alias("notes"),
    )
    path = tmp_path / "snapshot.parquet"
    frame.write_parquet(path)
    return path


def test_pieces_join_into_what_polars_writes_for_the_whole_frame(
    snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exports, "EXPORT_ROWS", 1_000)  # three pieces
    pieces = list(export_chunks(snapshot, "csv"))
    assert len(pieces) == 3
    whole = neutralise_formulas(nested_as_json(pl.scan_parquet(snapshot))).collect()
    assert b"".join(pieces) == whole.write_csv().encode()
    assert b"".join(pieces).count(b"customer_id,") == 1  # one header
    assert b"'=HYPERLINK(1)" in b"".join(pieces)  # formulas still neutralised in every piece
    ndjson = b"".join(export_chunks(snapshot, "ndjson"))
    assert ndjson == pl.read_parquet(snapshot).write_ndjson().encode()


def test_a_version_without_rows_is_its_csv_header(snapshot: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.parquet"
    pl.read_parquet(snapshot).head(0).write_parquet(empty)
    (header,) = export_chunks(empty, "csv")
    assert header.decode().startswith("customer_id,email,")
    assert header.count(b"\n") == 1
    assert b"".join(export_chunks(empty, "ndjson")) == b""
