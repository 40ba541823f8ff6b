"""Undeclared columns: a deterministic sample is analysed to decide whether a column holds PII."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from privacy.detection import DetectionConfig, Span
from privacy.engine import PiiEngine

SAMPLE_SIZE = 1_000
# A first, smaller sample decides columns whose share of one entity is at least CLEAR_SHARE.
FIRST_LOOK = 250
CLEAR_SHARE = 0.8
# A column is classified as an entity when at least this share of sampled values is one.
ENTITY_SHARE = 0.5
# A value "is" an entity when the entity's span covers this much of its non-space characters.
COVERAGE = 0.6
# Below the entity share, a column with PII spans in this share of values is free text.
FREE_TEXT_SHARE = 0.05
FREE_TEXT_WORDS = 4
SAMPLE_SEED = 0


@dataclass(frozen=True)
class Finding:
    """The decision about one undeclared column and its evidence. Never a value."""

    column: str
    kind: str  # "entity", "free_text" or "clean"
    entity: str | None
    share: float
    score: float
    sample_size: int
    entities_in_sample: dict[str, int]


def sample_values(values: pl.Series, size: int = SAMPLE_SIZE) -> pl.Series:
    """Up to ``size`` non-blank values, the same ones for the same column every time.

    Rows are sampled before nulls and blanks are dropped, so a large column is never copied.
    """
    picked = values if values.len() <= size else values.sample(size, seed=SAMPLE_SEED)
    text = picked.drop_nulls().cast(pl.String)
    return text.filter(text.str.strip_chars() != "")


def classify_column(values: pl.Series, engine: PiiEngine, config: DetectionConfig) -> Finding:
    """Decide whether a text column is one PII entity, free text with PII, or clean."""
    return classify_columns([values], engine, config)[0]


def classify_columns(
    columns: Sequence[pl.Series], engine: PiiEngine, config: DetectionConfig
) -> list[Finding]:
    """``classify_column`` for several columns, their samples analysed in one batch (so the
    engine's worker processes share the work).

    A first look at ``FIRST_LOOK`` values settles columns that are clearly one entity (a
    column of phone numbers costs a quarter of the analysis); the others get the full sample.
    """
    findings = _classify_batch(columns, engine, config, FIRST_LOOK)
    undecided = [
        i
        for i, (values, finding) in enumerate(zip(columns, findings, strict=True))
        if values.len() > FIRST_LOOK
        and not (finding.kind == "entity" and finding.share >= CLEAR_SHARE)
    ]
    if undecided:
        again = _classify_batch([columns[i] for i in undecided], engine, config, SAMPLE_SIZE)
        for i, finding in zip(undecided, again, strict=True):
            findings[i] = finding
    return findings


def _classify_batch(
    columns: Sequence[pl.Series], engine: PiiEngine, config: DetectionConfig, size: int
) -> list[Finding]:
    samples = [sample_values(values, size) for values in columns]
    # Named here: a column may be called anything, "count" included (value_counts' default).
    counts = [sample.alias("value").value_counts(name="frequency") for sample in samples]
    distinct = [c["value"].cast(pl.String) for c in counts]
    batch = pl.concat([d.rename("text") for d in distinct]) if distinct else None
    detected = engine.detect(batch, config) if batch is not None and batch.len() else []
    findings: list[Finding] = []
    offset = 0
    for values, sample, count, texts in zip(columns, samples, counts, distinct, strict=True):
        spans = detected[offset : offset + texts.len()]
        offset += texts.len()
        findings.append(_decide(values.name, sample, texts, count["frequency"].to_list(), spans))
    return findings


def _decide(
    name: str,
    sample: pl.Series,
    distinct: pl.Series,
    frequencies: list[int],
    detected: Sequence[Sequence[Span]],
) -> Finding:
    if sample.len() == 0:
        return Finding(name, "clean", None, 0.0, 0.0, 0, {})
    # Each distinct sampled value is analysed once and counted as often as it was sampled.
    whole: Counter[str] = Counter()
    scores: dict[str, list[float]] = {}
    anywhere: Counter[str] = Counter()
    values_with_pii = 0
    for text, frequency, spans in zip(distinct.to_list(), frequencies, detected, strict=True):
        if not spans:
            continue
        values_with_pii += frequency
        meaningful = len(text.replace(" ", "")) or 1
        for entity in {s.entity for s in spans}:
            anywhere[entity] += frequency
        for span in spans:
            covered = len(text[span.start : span.end].replace(" ", ""))
            if covered / meaningful >= COVERAGE:
                whole[span.entity] += frequency
                scores.setdefault(span.entity, []).append(span.score)
                break
    size = sample.len()
    if whole:
        entity, count = whole.most_common(1)[0]
        share = count / size
        if share >= ENTITY_SHARE:
            score = sum(scores[entity]) / len(scores[entity])
            return Finding(name, "entity", entity, share, score, size, dict(anywhere))
    share = values_with_pii / size
    # Free text is written in sentences; short values (cities, codes) are not scanned as text.
    words = sample.str.count_matches(r"\S+").median()
    sentence_like = float(words) if isinstance(words, int | float) else 0.0
    kind = "free_text" if share >= FREE_TEXT_SHARE and sentence_like >= FREE_TEXT_WORDS else "clean"
    return Finding(name, kind, None, share, 0.0, size, dict(anywhere))
