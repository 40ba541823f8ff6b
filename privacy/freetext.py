"""Free-text columns: PII spans inside each cell are replaced, the rest of the text is kept.

Analysis runs once per distinct value (polars ``unique``), the results are mapped back onto the
column with a vectorized ``replace``. Before it, what the row itself declares — its name, e-mail
address or phone number in the contract's PII columns — is replaced wherever the row's text
repeats it (``mask_row_values``): a name the NER model does not know is still the row's own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from privacy.detection import DetectionConfig, replace_spans
from privacy.engine import PiiEngine


@dataclass(frozen=True)
class ScanResult:
    """The scanned column, how many spans of each entity were replaced in it (all rows), and
    the mapping from each changed value to its redacted text."""

    values: pl.Series
    spans: dict[str, int]
    cells_changed: int
    distinct_values: int
    old: list[str]
    new: list[str]

    def rewrite(self, values: pl.Expr) -> pl.Expr:
        """The same replacement as an expression, for text nested inside other columns."""
        return values.replace(self.old, self.new) if self.old else values


# Shorter declared values ("Al", "NY") would be found inside ordinary words.
MIN_ROW_VALUE_CHARS = 4


def mask_row_values(
    frame: pl.DataFrame, column: str, declared: Sequence[tuple[str, str]]
) -> tuple[pl.Series, Counter[str]]:
    """``frame[column]`` with each occurrence of the same row's value of every ``declared``
    (column, entity) replaced by ``<ENTITY>``, and how many were replaced per entity."""
    original = frame[column].cast(pl.String)
    present = original.is_not_null()
    if not declared or not present.any():
        return original, Counter()
    # Only the rows with text are worked on (a notes column is often mostly empty).
    work = frame.filter(present).select(
        pl.col(column).cast(pl.String).alias("text"),
        *(
            pl.col(other).cast(pl.String).alias(f"value_{i}")
            for i, (other, _) in enumerate(declared)
        ),
    )
    text = pl.col("text")
    totals: Counter[str] = Counter()
    for index, (_, entity) in enumerate(declared):
        value = pl.col(f"value_{index}")
        usable = value.str.len_chars() >= MIN_ROW_VALUE_CHARS
        found = pl.when(usable).then(text.str.count_matches(value, literal=True)).otherwise(0)
        work = work.with_columns(found.alias("found"))
        totals[entity] += int(work["found"].sum())
        # split + join: a literal replace whose pattern differs from row to row.
        replaced = text.str.split(value).list.join(f"<{entity}>")
        work = work.with_columns(pl.when(pl.col("found") > 0).then(replaced).otherwise(text))
    if not totals:
        return original, Counter()
    return original.scatter(present.arg_true(), work["text"]), +totals


def scan_texts(texts: list[str], engine: PiiEngine, config: DetectionConfig) -> list[str]:
    """Each text with its PII spans replaced by ``<ENTITY>`` placeholders."""
    series = pl.Series(texts, dtype=pl.String)
    return [replace_spans(t, s) for t, s in zip(texts, engine.detect(series, config), strict=True)]


def scan_column(
    values: pl.Series, engine: PiiEngine, config: DetectionConfig, *, materialize: bool = True
) -> ScanResult:
    """Find and replace PII spans in every cell of a text column (``values`` holds the
    replaced column only when ``materialize``; ``rewrite`` always gives it as an expression)."""
    text = values.cast(pl.String)
    distinct = text.drop_nulls().unique()
    detected = engine.detect(distinct, config)
    old: list[str] = []
    new: list[str] = []
    findings = []
    for value, found in zip(distinct, detected, strict=True):
        if found:
            old.append(value)
            new.append(replace_spans(value, found))
            findings.append(found)
    spans: Counter[str] = Counter()
    cells_changed = 0
    if old:  # how often each changed value occurs (most columns have none to count)
        changed = text.filter(text.is_in(old)).alias("value")  # its own name may be "count"
        counts = dict(changed.value_counts(name="cells").iter_rows())
        for value, found in zip(old, findings, strict=True):
            cells_changed += counts[value]
            for span in found:
                spans[span.entity] += counts[value]
    scanned = text.replace(old, new) if old and materialize else text
    return ScanResult(
        values=scanned,
        spans=dict(spans),
        cells_changed=cells_changed,
        distinct_values=len(distinct),
        old=old,
        new=new,
    )
