"""Names that come from the data — column names, struct field names, file names, sources —
carry personal data as easily as cells do (``jane@example.com`` as a column header). They pass
through the same detection before anything stores, logs or serves them."""

from __future__ import annotations

from collections.abc import Collection

import polars as pl

from privacy.detection import DetectionConfig
from privacy.engine import PiiEngine
from privacy.freetext import scan_texts
from privacy.shapes import field_names, rename_fields, unique_names


def scrub_text(text: str, engine: PiiEngine, config: DetectionConfig) -> str:
    """``text`` with PII spans replaced by placeholders (full names only, as in short text)."""
    return scan_texts([text], engine, config.full_names_only())[0] if text else text


def scrub_column_names(
    frame: pl.DataFrame, engine: PiiEngine, config: DetectionConfig, keep: Collection[str]
) -> tuple[pl.DataFrame, int]:
    """``frame`` with PII in column names (other than ``keep``, the contract's own) and in
    struct field names replaced; returns it with the number of names changed."""
    names = {c for c in frame.columns if c not in keep}
    for dtype in frame.schema.values():
        names |= field_names(dtype)
    ordered = sorted(names)
    clean = scan_texts(ordered, engine, config.full_names_only()) if ordered else []
    renamed = {old: new for old, new in zip(ordered, clean, strict=True) if old != new}
    if not renamed:
        return frame, 0
    nested = [
        expr
        for column, dtype in frame.schema.items()
        if (expr := rename_fields(column, dtype, renamed)) is not None
    ]
    if nested:
        frame = frame.with_columns(nested)
    taken = {c for c in frame.columns if c in keep or c not in renamed}
    mapping: dict[str, str] = {}
    for column in frame.columns:
        if column in keep or column not in renamed:
            continue
        new = unique_names([*sorted(taken), renamed[column]])[-1]
        taken.add(new)
        mapping[column] = new
    return frame.rename(mapping), len(renamed)
