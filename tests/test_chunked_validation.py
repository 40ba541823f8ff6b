"""Property test: validating an upload part by part (``ChunkedValidation``, what the ingest
does) gives exactly the report and the stored rows of validating it whole (``validate_frame``),
for every contract of the differential suite, on frames cut at random places, duplicates that
straddle the cuts included."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from gateway.contracts import Contract
from gateway.validation import (
    ChunkedValidation,
    KeyColumn,
    duplicated_rows,
    split_schema,
    validate_frame,
)
from tests.test_pandera_equivalence import CONTRACTS, FRAMES, _wanted, load_catalog

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def catalog() -> dict[str, Contract]:
    return load_catalog()


def chunked(
    frame: pl.DataFrame, contract: Contract, cuts: list[int]
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Validate ``frame`` in the parts ``cuts`` makes; the stored rows and the report."""
    folder = Path(tempfile.mkdtemp(prefix="spill-"))
    counter = itertools.count()

    def spill() -> tuple[Path, IO[bytes]]:
        path = folder / f"{next(counter)}.keys"
        return path, path.open("wb")

    try:
        return _chunked(frame, contract, cuts, ChunkedValidation(contract, spill=spill))
    finally:
        shutil.rmtree(folder)


def _chunked(
    frame: pl.DataFrame, contract: Contract, cuts: list[int], validation: ChunkedValidation
) -> tuple[pl.DataFrame, dict[str, Any]]:
    stored: list[pl.DataFrame] = []
    places: list[pl.Series] = []
    bounds = [0, *sorted(set(cuts)), frame.height]
    for start, end in itertools.pairwise(bounds):
        if end <= start:
            continue
        rows, where = validation.feed(frame.slice(start, end - start))
        stored.append(rows)
        if where is not None:
            places.append(where)
    report, dropped = validation.finish()
    table = pl.concat(stored, how="vertical_relaxed")
    if places and not dropped.is_empty():
        keep = ~pl.concat(places).is_in(dropped.implode())
        table = table.filter(keep)
    return table, report.as_dict()


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    # Failures are listed by their first failing row; two checks failing first on the same row
    # may come in either order.
    failures = sorted(report["failures"], key=lambda f: (str(f["column"]), f["check"]))
    return {**report, "failures": failures}


@st.composite
def cut_frames(draw: st.DrawFn, name: str) -> tuple[pl.DataFrame, list[int]]:
    # Several drawn frames end to end, so that values (and duplicates) repeat across the cuts.
    parts = [draw(FRAMES[name]) for _ in range(draw(st.integers(1, 3)))]
    frame = parts[0]
    for part in parts[1:]:
        if part.columns == frame.columns:
            with contextlib.suppress(pl.exceptions.PolarsError):
                frame = pl.concat([frame, part], how="vertical_relaxed")
    cuts = draw(st.lists(st.integers(1, max(1, frame.height - 1)), max_size=4))
    return frame, cuts


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_chunked_validation_is_whole_frame_validation(
    name: str,
    catalog: dict[str, Contract],
) -> None:
    contract = catalog[name]

    @SETTINGS
    @given(drawn=cut_frames(name))
    def same(drawn: tuple[pl.DataFrame, list[int]]) -> None:
        frame, cuts = drawn
        frame = frame.select([c for c in frame.columns if c in _wanted(contract, frame)])
        whole_rows, whole = validate_frame(frame, contract)
        rows, report = chunked(frame, contract, cuts)
        assert _comparable(report) == _comparable(whole.as_dict())
        if whole.valid:
            assert_frame_equal(rows, whole_rows)

    same()


def test_duplicates_across_parts_are_found_with_their_global_rows(
    catalog: dict[str, Contract],
) -> None:
    contract = catalog["dropping_unique"]
    frame = pl.DataFrame({"id": [*list(range(10)), 3, 11, 9], "amount": [1.0] * 13})
    rows, report = chunked(frame, contract, [5, 10, 11])
    failure = next(f for f in report["failures"] if f["check"] == "field_uniqueness")
    assert [e["row"] for e in failure["examples"]] == [4, 10, 11, 13]
    assert report["rows_dropped"] == 4
    assert sorted(rows["id"].to_list()) == [0, 1, 2, 4, 5, 6, 7, 8, 11]


def test_only_whole_column_checks_keep_columns(catalog: dict[str, Contract]) -> None:
    # Row checks need no column kept across parts; uniqueness keeps its column only, and a
    # dataframe check (which may read any column) keeps every column.
    assert split_schema(catalog["dropping"]).whole is None
    assert split_schema(catalog["dropping_unique"]).whole is None  # checked by sorting
    assert split_schema(catalog["dropping_unique"]).unique_columns == ("id",)
    assert split_schema(catalog["checks"]).whole_columns is None
    assert split_schema(catalog["unique_together"]).whole_columns is None  # rows are shown


@pytest.mark.parametrize("values", [[3, 1, 3, None, 2, None], [1, 1, 2], ["b", "a", "b"], [1.5]])
def test_duplicated_rows_are_those_is_duplicated_finds(values: list[object]) -> None:
    series = pl.Series("v", values)
    expected = series.is_duplicated().arg_true().cast(pl.Int64).to_list()
    assert duplicated_rows(series).to_list() == expected
    assert duplicated_rows(series.sort(nulls_last=True)).to_list() == (
        series.sort(nulls_last=True).is_duplicated().arg_true().to_list()
    )


def test_keys_arriving_in_order_wait_on_disk_encrypted(tmp_path: Path) -> None:
    files: list[Path] = []

    def spill() -> tuple[Path, IO[bytes]]:
        files.append(tmp_path / f"{len(files)}.keys")
        return files[-1], files[-1].open("wb")

    ascending = KeyColumn(spill)
    for start in (0, 100, 200):
        ascending.add(
            pl.Series("email", [f"person{i:04d}@example.org" for i in range(start, start + 100)])
        )
    assert ascending.values() is None  # strictly ascending: nothing can repeat
    assert len(files) == 3
    assert not any(b"example.org" in f.read_bytes() for f in files)  # encrypted at rest

    keys = KeyColumn(spill)
    keys.add(pl.Series("id", [1, 2, 3]))
    keys.add(pl.Series("id", [4, 5]))
    keys.add(pl.Series("id", [2, 6]))  # out of order: the earlier values come back
    values = keys.values()
    assert values is not None
    assert values.to_list() == [1, 2, 3, 4, 5, 2, 6]
    assert duplicated_rows(values).to_list() == [1, 5]
    assert not files[3].exists()
    assert not files[4].exists()
