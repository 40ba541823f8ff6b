"""Data-subject search: which stored versions hold a person's pseudonymised identifiers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlmodel import Session, col, select

from gateway.models import Dataset, DatasetVersion
from gateway.snapshots import SnapshotStore, version_files
from privacy import RedactionKey
from privacy.actions import keyed_pseudonym


@dataclass(frozen=True)
class SubjectMatch:
    """A version and column whose pseudonyms match some of the identifiers searched for."""

    dataset: str
    version: int
    column: str
    rows: int


def identifier_variants(identifiers: Sequence[str]) -> list[str]:
    """Each identifier as given and trimmed/lower-cased (emails are often stored either way)."""
    variants: dict[str, None] = {}
    for identifier in identifiers:
        variants[identifier] = None
        variants[identifier.strip().lower()] = None
    return list(variants)


def pseudonyms(identifiers: Sequence[str], key: RedactionKey) -> list[str]:
    """The keyed pseudonyms ``hash`` redaction stores for these values."""
    frame = pl.DataFrame({"value": identifier_variants(identifiers)}, schema={"value": pl.String})
    return frame.select(keyed_pseudonym(pl.col("value"), key)).to_series().to_list()


def _hashed_columns(version: DatasetVersion) -> list[str]:
    summary: dict[str, Any] = version.pii_summary or {}
    return [c["column"] for c in summary.get("columns", []) if c.get("action") == "hash"]


def search_subjects(
    session: Session, store: SnapshotStore, identifiers: Sequence[str], key: RedactionKey
) -> tuple[list[SubjectMatch], int]:
    """Every (version, column) holding one of the identifiers, and how many versions were read.

    The raw identifiers are only turned into pseudonyms in memory; nothing is stored.
    """
    wanted = pl.Series(pseudonyms(identifiers, key), dtype=pl.String)
    rows = session.exec(
        select(Dataset.name, DatasetVersion).where(
            DatasetVersion.dataset_id == Dataset.id, col(DatasetVersion.deleted_at).is_(None)
        )
    ).all()
    matches: list[SubjectMatch] = []
    searched = 0
    for dataset, version in rows:
        columns = _hashed_columns(version)
        if not columns:
            continue
        searched += 1
        counts = (
            pl.scan_parquet(version_files(store, version.storage_key))
            .select(pl.col(c).is_in(wanted.implode()).sum().alias(c) for c in columns)
            .collect()
            .row(0, named=True)
        )
        matches.extend(
            SubjectMatch(dataset, version.number, column, int(n))
            for column, n in counts.items()
            if n
        )
    matches.sort(key=lambda m: (m.dataset, m.version, m.column))
    return matches, searched
