"""Data-subject search: which stored versions hold a person's identifiers, as their columns
store them (pseudonymised, encrypted or kept)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlmodel import Session, col, select

from gateway.models import Dataset, DatasetVersion
from gateway.snapshots import SnapshotStore, version_files
from privacy import RedactionKey
from privacy.actions import encrypt_values, keyed_pseudonym


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


# The actions after which a stored value still identifies its subject, to whoever holds the key:
# ``hash`` (a keyed pseudonym), ``encrypt`` (a deterministic token) and ``keep`` (the value).
SEARCHABLE_ACTIONS = ("hash", "encrypt", "keep")


@dataclass(frozen=True)
class SubjectForms:
    """One subject's identifiers as each searchable action stores them (in memory only)."""

    by_action: dict[str, list[str]]

    def held_in(self, column: str, action: str, dtype: pl.DataType) -> pl.Expr:
        """True on the rows whose ``column``, stored by ``action``, holds one of the
        identifiers; in a nested column, as any of its text values."""
        forms = self.by_action[action]
        if dtype.is_nested():
            # Each text value of a nested cell, as JSON writes it: quoted, then , ] or }.
            text = pl.struct(pl.col(column)).struct.json_encode()
            quoted = [json.dumps(f, ensure_ascii=False) + end for f in forms for end in ",]}"]
            return text.str.contains_any(quoted).fill_null(False)
        wanted = pl.Series(forms, dtype=pl.String).implode()
        return pl.col(column).cast(pl.String).is_in(wanted).fill_null(False)

    def held_in_any(self, columns: dict[str, str], schema: pl.Schema) -> pl.Expr:
        """True on the rows where any of ``columns`` (name → action) holds one of them."""
        present = [(c, a) for c, a in columns.items() if c in schema]
        if not present:
            return pl.lit(False)
        return pl.any_horizontal(self.held_in(c, a, schema[c]) for c, a in present)


def subject_forms(identifiers: Sequence[str], key: RedactionKey) -> SubjectForms:
    """The forms ``identifiers`` (as given, and trimmed and lower-cased) take when stored."""
    raw = identifier_variants(identifiers)
    return SubjectForms(
        {
            "hash": pseudonyms(identifiers, key),
            "encrypt": encrypt_values(pl.Series(raw, dtype=pl.String), key).to_list(),
            "keep": raw,
        }
    )


def searchable_columns(version: DatasetVersion) -> dict[str, str]:
    """The columns of a version (→ their action) that may hold a subject's identifiers."""
    summary: dict[str, Any] = version.pii_summary or {}
    return {
        c["column"]: c["action"]
        for c in summary.get("columns", [])
        if c.get("action") in SEARCHABLE_ACTIONS
    }


def search_subjects(
    session: Session, store: SnapshotStore, identifiers: Sequence[str], key: RedactionKey
) -> tuple[list[SubjectMatch], int]:
    """Every (version, column) holding one of the identifiers, and how many versions were read.

    The raw identifiers are only turned into their stored forms in memory; nothing is stored.
    """
    forms = subject_forms(identifiers, key)
    rows = session.exec(
        select(Dataset.name, DatasetVersion).where(
            DatasetVersion.dataset_id == Dataset.id, col(DatasetVersion.deleted_at).is_(None)
        )
    ).all()
    matches: list[SubjectMatch] = []
    searched = 0
    for dataset, version in rows:
        columns = searchable_columns(version)
        if not columns:
            continue
        searched += 1
        stored = pl.scan_parquet(version_files(store, version.storage_key))
        schema = stored.collect_schema()
        present = {c: a for c, a in columns.items() if c in schema}
        if not present:
            continue
        counts = (
            stored.select(forms.held_in(c, a, schema[c]).sum().alias(c) for c, a in present.items())
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
