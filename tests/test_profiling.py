"""The distinct counts of an upload read in parts: a sketch per part, merged."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from gateway.profiling import DistinctSketch


def _frame(rows: int, distinct: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, distinct, rows)
    return pl.DataFrame(
        {
            "number": values,
            "text": [f"value-{v}" for v in values],
            "mostly_null": pl.Series([None] * (rows - 3) + ["a", "b", "a"], dtype=pl.String),
        }
    )


def test_the_parts_sketch_is_the_whole_uploads() -> None:
    frame = _frame(20_000, 5_000, seed=1)
    whole, parted = DistinctSketch(), DistinctSketch()
    whole.add(frame)
    for start in range(0, frame.height, 3_000):
        parted.add(frame.slice(start, 3_000))
    assert whole.registers.keys() == parted.registers.keys()
    for name in whole.registers:
        assert np.array_equal(whole.registers[name], parted.registers[name]), name
    assert whole.estimates() == parted.estimates()


@pytest.mark.parametrize("distinct", [1, 7, 300, 20_000, 150_000])
def test_estimates_are_within_two_percent(distinct: int) -> None:
    frame = _frame(300_000, distinct, seed=distinct)
    sketch = DistinctSketch()
    for start in range(0, frame.height, 70_000):
        sketch.add(frame.slice(start, 70_000))
    exact = frame.select(pl.all().n_unique()).row(0, named=True)
    estimates = sketch.estimates()
    for name, count in exact.items():
        assert abs(estimates[name] - count) <= max(1, 0.02 * count), (name, estimates, exact)


def test_nested_columns_are_not_counted() -> None:
    frame = pl.DataFrame({"id": [1, 2], "tags": [["a"], ["b"]], "meta": [{"a": 1}, {"a": 2}]})
    sketch = DistinctSketch()
    sketch.add(frame)
    assert sketch.estimates() == {"id": 2}
