"""Per-column counts of an upload, for the OpenLineage data-quality metrics facet."""

from __future__ import annotations

import polars as pl

from lineage import ColumnMetrics, InputMetrics

# Up to this many rows distinct counts are exact; above, HyperLogLog estimates keep it cheap.
EXACT_DISTINCT_ROWS = 100_000


def profile_frame(frame: pl.DataFrame, size_bytes: int) -> InputMetrics:
    """Row count, bytes received, and each column's null and distinct counts (one polars pass)."""
    exact = frame.height <= EXACT_DISTINCT_ROWS
    countable = [
        name for name, dtype in frame.schema.items() if not isinstance(dtype, pl.List | pl.Struct)
    ]
    if not countable:
        return InputMetrics(row_count=frame.height, size_bytes=size_bytes)
    distinct = [
        (pl.col(c).n_unique() if exact else pl.col(c).approx_n_unique()).alias(f"d{i}")
        for i, c in enumerate(countable)
    ]
    nulls = [pl.col(c).null_count().alias(f"n{i}") for i, c in enumerate(countable)]
    row = frame.select(*nulls, *distinct).row(0, named=True)
    return InputMetrics(
        row_count=frame.height,
        size_bytes=size_bytes,
        columns=[
            ColumnMetrics(column=c, nulls=int(row[f"n{i}"]), distinct=int(row[f"d{i}"]))
            for i, c in enumerate(countable)
        ],
    )
