"""What changed between two stored versions of a dataset: schema, rows, cells.

Rows are matched by the contract's ``primary_key`` (when both versions have its columns and it
is unique in each), else by whole-row hashes (a multiset: added and removed rows only). Both
versions are read with polars from the stored Parquet, lazily: the first pass keeps two 64-bit
hashes per row (key and whole row), the second reads again only the rows whose key matched
with a different row hash, to count changed cells per column. A sample of the keys added,
removed and changed is shown as keyed pseudonyms, never as values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from privacy import RedactionKey
from privacy.actions import keyed_pseudonym

SAMPLE = 10
_KEY, _ROW = "__datagate_key", "__datagate_row"


@dataclass(frozen=True)
class Side:
    """One version: its number, its stored parts, its schema, its hashed (pseudonym) columns."""

    number: int
    files: Sequence[Path]
    schema: dict[str, str]
    hashed: frozenset[str] = frozenset()


def _schema_changes(a: Side, b: Side) -> dict[str, Any]:
    added = [c for c in b.schema if c not in a.schema]
    removed = [c for c in a.schema if c not in b.schema]
    retyped = [
        {"column": c, "from": a.schema[c], "to": b.schema[c]}
        for c in a.schema
        if c in b.schema and a.schema[c] != b.schema[c]
    ]
    return {"added": added, "removed": removed, "type_changed": retyped}


def _comparable(side: Side, common: list[str], retyped: set[str]) -> list[pl.Expr]:
    # A column whose dtype changed is compared as text (Int32 1 and Int64 1 are the same).
    return [pl.col(c).cast(pl.String) if c in retyped else pl.col(c) for c in common]


def _key_hash(key: Sequence[str], retyped: set[str]) -> pl.Expr:
    parts = [pl.col(k).cast(pl.String) if k in retyped else pl.col(k) for k in key]
    return pl.struct(parts).hash(seed=0)


def _hashes(side: Side, key: Sequence[str], common: list[str], retyped: set[str]) -> pl.LazyFrame:
    values = _comparable(side, common, retyped)
    columns = [pl.struct(values).hash(seed=0).alias(_ROW)]
    if key:
        columns.append(_key_hash(key, retyped).alias(_KEY))
    return pl.scan_parquet(list(side.files)).select(columns)


def _shown_keys(
    side: Side, key: Sequence[str], retyped: set[str], wanted: pl.Series, secret: RedactionKey
) -> list[str]:
    """The keys of the rows whose key hash is in ``wanted``, as pseudonyms (a key that is one
    pseudonymised column is shown as stored: it is a pseudonym already)."""
    if wanted.is_empty():
        return []
    frame = (
        pl.scan_parquet(list(side.files))
        .select([pl.col(k) for k in key])
        .filter(_key_hash(key, retyped).is_in(wanted.implode()))
        .head(SAMPLE)
        .collect()
    )
    if len(key) == 1 and key[0] in side.hashed:
        return [str(v) for v in frame.get_column(key[0]).to_list()]
    joined = pl.concat_str([pl.col(k).cast(pl.String).fill_null("") for k in key], separator="\x1f")
    return frame.select(keyed_pseudonym(joined, secret)).to_series().to_list()


def diff_versions(
    a: Side, b: Side, primary_key: Sequence[str], secret: RedactionKey
) -> dict[str, Any]:
    """The differences from version ``a`` to version ``b``."""
    schema = _schema_changes(a, b)
    common = [c for c in b.schema if c in a.schema]
    retyped = {c["column"] for c in schema["type_changed"]}
    key = [k for k in primary_key if k in common]
    matched_by = "primary_key" if key and len(key) == len(primary_key) else "row_hash"
    note = None
    if primary_key and matched_by != "primary_key":
        note = "a primary key column is missing from one version: rows matched by whole-row hashes"
    if matched_by == "primary_key":
        left, right = (
            _hashes(side, key, common, retyped).collect(engine="streaming") for side in (a, b)
        )
        duplicated = any(f.get_column(_KEY).n_unique() != f.height for f in (left, right))
        if duplicated:
            matched_by, note = "row_hash", "the primary key is not unique in a version: rows "
            note += "matched by whole-row hashes"
    if matched_by == "primary_key":
        joined = left.join(right, on=_KEY, how="full", coalesce=True, suffix="_b")
        added_keys = joined.filter(pl.col(_ROW).is_null()).get_column(_KEY)
        removed_keys = joined.filter(pl.col(f"{_ROW}_b").is_null()).get_column(_KEY)
        both = joined.filter(pl.col(_ROW).is_not_null() & pl.col(f"{_ROW}_b").is_not_null())
        changed_keys = both.filter(pl.col(_ROW) != pl.col(f"{_ROW}_b")).get_column(_KEY)
        rows: dict[str, int | None] = {
            "added": added_keys.len(),
            "removed": removed_keys.len(),
            "changed": changed_keys.len(),
            "unchanged": both.height - changed_keys.len(),
        }
        cells = _changed_cells(a, b, key, common, retyped, changed_keys)
        sample = {
            "added": _shown_keys(b, key, retyped, added_keys.head(SAMPLE), secret),
            "removed": _shown_keys(a, key, retyped, removed_keys.head(SAMPLE), secret),
            "changed": _shown_keys(b, key, retyped, changed_keys.head(SAMPLE), secret),
        }
    else:
        counts = [_hashes(side, (), common, retyped).group_by(_ROW).len() for side in (a, b)]
        totals = (
            counts[0]
            .join(counts[1], on=_ROW, how="full", coalesce=True, suffix="_b")
            .with_columns(
                pl.col("len").fill_null(0).cast(pl.Int64),
                pl.col("len_b").fill_null(0).cast(pl.Int64),
            )
            .select(
                (pl.col("len_b") - pl.col("len")).clip(lower_bound=0).sum().alias("added"),
                (pl.col("len") - pl.col("len_b")).clip(lower_bound=0).sum().alias("removed"),
                pl.min_horizontal("len", "len_b").sum().alias("unchanged"),
            )
            .collect(engine="streaming")
            .row(0, named=True)
        )
        rows = {
            "added": int(totals["added"] or 0),
            "removed": int(totals["removed"] or 0),
            "changed": None,
            "unchanged": int(totals["unchanged"] or 0),
        }
        cells = None
        sample = None
    return {
        "from": a.number,
        "to": b.number,
        "schema": schema,
        "matched_by": matched_by,
        "key": key if matched_by == "primary_key" else [],
        "note": note,
        "rows": rows,
        "changed_cells": cells,
        "sample_keys": sample,
    }


def _changed_cells(
    a: Side,
    b: Side,
    key: Sequence[str],
    common: list[str],
    retyped: set[str],
    changed: pl.Series,
) -> dict[str, int]:
    """Per common column (keys aside), how many matched rows hold another value in ``b``."""
    compared = [c for c in common if c not in key]
    if changed.is_empty() or not compared:
        return dict.fromkeys(compared, 0)

    def rows_of(side: Side) -> pl.LazyFrame:
        values = _comparable(side, compared, retyped)
        return (
            pl.scan_parquet(list(side.files))
            .filter(_key_hash(key, retyped).is_in(changed.implode()))
            .select(_key_hash(key, retyped).alias(_KEY), *values)
        )

    joined = rows_of(a).join(rows_of(b), on=_KEY, how="inner", suffix="_b")
    counts = joined.select(
        pl.col(c).ne_missing(pl.col(f"{c}_b")).sum().alias(c) for c in compared
    ).collect(engine="streaming")
    return {c: int(counts.get_column(c)[0]) for c in compared}
