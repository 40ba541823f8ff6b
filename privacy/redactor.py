"""Plan the redaction of a frame: declared columns, free-text columns and undeclared text of
any shape (plain, categorical, or nested in structs and lists)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import polars as pl

from privacy.actions import ACTIONS, RedactionAction, redaction_expr
from privacy.classify import Finding, classify_columns
from privacy.detection import DetectionConfig
from privacy.engine import PiiEngine
from privacy.freetext import mask_row_values, scan_column
from privacy.policy import ColumnPolicy, RedactionKey
from privacy.shapes import (
    LeafRewrite,
    TextLeaf,
    is_nested,
    leaf_values,
    rewrite_column,
    text_leaves,
)

FREE_TEXT = "FREE_TEXT"
UNDECLARED_POLICIES = frozenset({"redact", "reject", "warn"})


@dataclass(frozen=True)
class ColumnOutcome:
    """What happened to one column and why. Counts and evidence only, never a value."""

    column: str
    entity: str
    action: str
    values_redacted: int
    method: str = "declared"
    justification: str | None = None
    spans: dict[str, int] = field(default_factory=dict)
    sample_size: int | None = None
    share: float | None = None
    score: float | None = None
    model: str | None = None


def redact_frame(
    frame: pl.DataFrame,
    policies: Sequence[ColumnPolicy],
    key: RedactionKey,
    *,
    engine: PiiEngine | None = None,
    detection: DetectionConfig | None = None,
    undeclared: str = "redact",
) -> tuple[pl.DataFrame, list[ColumnOutcome]]:
    """Apply every policy to ``frame`` now (see ``plan_redaction``)."""
    plan, outcomes = plan_redaction(
        frame, policies, key, engine=engine, detection=detection, undeclared=undeclared
    )
    return plan.collect(), outcomes


def plan_redaction(
    frame: pl.DataFrame,
    policies: Sequence[ColumnPolicy],
    key: RedactionKey,
    *,
    engine: PiiEngine | None = None,
    detection: DetectionConfig | None = None,
    undeclared: str = "redact",
    classified: dict[str, Finding] | None = None,
) -> tuple[pl.LazyFrame, list[ColumnOutcome]]:
    """A lazy plan that redacts ``frame``, and one outcome per column (or nested text field)
    examined.

    - declared columns (``pii: ENTITY``) get their whole-column action as polars expressions,
      applied to every text value inside them when they are structs or lists;
    - free-text columns (``pii: "scan"``) get PII spans replaced inside each cell;
    - undeclared text — string and categorical columns, and every string field or element
      inside struct and list columns — is sampled to classify it: a field that is mostly one
      entity is replaced whole; every other one is scanned in full (structured entities always,
      names too when the sample found PII or the text reads like sentences), so a value is
      redacted however rare it is in its column. With ``undeclared="reject"``/``"warn"`` the
      outcome says so and the data is left for the caller to refuse or keep.

    The plan is meant to be streamed into a sink, so the redacted table never has to exist in
    memory beside the original. Without an ``engine`` nothing is detected, and free-text cells
    are withheld whole (``<FREE_TEXT>``) rather than kept raw.

    ``classified`` carries the classification of undeclared text from one part of an upload
    to the next: a field classified once (on the first part's sample) is treated the same way
    in every part, and every value of every part is still scanned.
    """
    if undeclared not in UNDECLARED_POLICIES:
        raise ValueError(f"undeclared policy must be one of {sorted(UNDECLARED_POLICIES)}")
    config = detection or DetectionConfig()
    replacements: list[pl.Expr | pl.Series] = []
    dropped: list[str] = []
    outcomes: list[ColumnOutcome] = []
    declared = {p.column for p in policies}
    present = [p for p in policies if p.column in frame.columns]
    non_null = dict(zip([p.column for p in present], _non_null_counts(frame, present), strict=True))
    # What each row declares (its name, address, number), to find again in its free text.
    row_declared = [
        (p.column, p.entity)
        for p in present
        if not p.is_free_text and not is_nested(frame.schema[p.column])
    ]
    for policy in present:
        if is_nested(frame.schema[policy.column]):
            replacement, outcome = _declared_nested(frame, policy, key, engine, config)
            outcomes.append(outcome)
            if replacement is None:
                dropped.append(policy.column)
            else:
                replacements.append(replacement)
            continue
        if policy.is_free_text and engine is not None:
            premasked, row_values = mask_row_values(frame, policy.column, row_declared)
            result = scan_column(premasked, engine, config)
            replacements.append(result.values)
            original = frame[policy.column].cast(pl.String)
            outcomes.append(
                ColumnOutcome(
                    column=policy.column,
                    entity="scan",
                    action="scan",
                    values_redacted=int(original.ne_missing(result.values).sum()),
                    method="scan",
                    spans=dict(Counter(result.spans) + row_values),
                    sample_size=result.distinct_values,
                    model=engine.model_label,
                )
            )
            continue
        effective = _withheld(policy) if policy.is_free_text else policy
        expr = redaction_expr(effective, key)
        if expr is None:
            dropped.append(policy.column)
        else:
            replacements.append(expr.alias(policy.column))
        outcomes.append(
            ColumnOutcome(
                column=policy.column,
                entity=policy.entity,
                action=effective.action,
                values_redacted=0 if policy.action == "keep" else non_null[policy.column],
                method="withheld (no detector)" if policy.is_free_text else "declared",
                justification=policy.justification,
            )
        )
    if engine is not None:
        known = {} if classified is None else classified
        leaves, values = _undeclared_text(frame, declared)
        _classify(leaves, values, engine, config, known)
        findings = [known[leaf.label] for leaf in leaves]
        rewrites: dict[str, dict[tuple[str, ...], LeafRewrite]] = {}
        for leaf, text, finding in zip(leaves, values, findings, strict=True):
            rewrite, outcome = _undeclared(text, finding, engine, config, undeclared)
            outcomes.append(outcome)
            if rewrite is not None:
                rewrites.setdefault(leaf.column, {})[leaf.path] = rewrite
        for column, column_rewrites in rewrites.items():
            replacements.append(rewrite_column(column, frame.schema[column], column_rewrites))
    return frame.lazy().with_columns(replacements).drop(dropped), outcomes


def _undeclared_text(
    frame: pl.DataFrame, declared: set[str]
) -> tuple[list[TextLeaf], list[pl.Series]]:
    """Every text field of the columns without a policy, and its values as text."""
    leaves = [
        leaf
        for column in frame.columns
        if column not in declared
        for leaf in text_leaves(column, frame.schema[column])
    ]
    values = [
        (frame[leaf.column] if not leaf.path else leaf_values(frame, leaf))
        .cast(pl.String)
        .rename(leaf.label)
        for leaf in leaves
    ]
    return leaves, values


def _classify(
    leaves: list[TextLeaf],
    values: list[pl.Series],
    engine: PiiEngine,
    config: DetectionConfig,
    known: dict[str, Finding],
) -> None:
    fresh = [i for i, leaf in enumerate(leaves) if leaf.label not in known]
    # Every sample in one batch, so the engine's workers share it.
    found = classify_columns([values[i] for i in fresh], engine, config) if fresh else []
    for i, finding in zip(fresh, found, strict=True):
        known[leaves[i].label] = finding


def classify_undeclared(
    frame: pl.DataFrame,
    policies: Sequence[ColumnPolicy],
    engine: PiiEngine,
    detection: DetectionConfig | None = None,
    classified: dict[str, Finding] | None = None,
) -> dict[str, Finding]:
    """Classify the undeclared text of ``frame`` on its samples, as ``plan_redaction`` does
    before it redacts, without redacting anything: what a ``classified`` argument carries to
    the other parts of an upload (the fields already in ``classified`` keep their finding)."""
    known = {} if classified is None else classified
    leaves, values = _undeclared_text(frame, {p.column for p in policies})
    _classify(leaves, values, engine, detection or DetectionConfig(), known)
    return known


def _placeholder(entity: str) -> LeafRewrite:
    def rewrite(values: pl.Expr) -> pl.Expr:
        return pl.when(values.is_null()).then(None).otherwise(pl.lit(f"<{entity}>"))

    return rewrite


def _undeclared(
    values: pl.Series, finding: Finding, engine: PiiEngine, config: DetectionConfig, policy: str
) -> tuple[LeafRewrite | None, ColumnOutcome]:
    name = values.name

    def outcome(
        entity: str, action: str, redacted: int, method: str, **extra: Any
    ) -> ColumnOutcome:
        evidence: dict[str, Any] = {
            "sample_size": finding.sample_size,
            "share": round(finding.share, 4),
            "score": round(finding.score, 4) if finding.kind == "entity" else None,
            "model": engine.model_label,
            "spans": finding.entities_in_sample,
        }
        evidence.update(extra)
        return ColumnOutcome(name, entity, action, redacted, method=method, **evidence)

    present = values.len() - values.null_count()
    if finding.kind == "entity":
        entity = finding.entity or "scan"
        if policy != "redact":
            return None, outcome(entity, policy, 0, "detected (sample)")
        return _placeholder(entity), outcome(entity, "replace", present, "detected (sample)")
    # A sample decides only how hard to look, never whether found values stay: every value is
    # scanned for structured entities, and for names too where the sample saw PII (full names
    # only, unless the text reads like sentences).
    if finding.kind == "free_text":
        scan_config = config
    elif finding.entities_in_sample:
        scan_config = config.full_names_only()
    else:
        scan_config = config.structured_only()
    result = scan_column(values, engine, scan_config, materialize=False)
    method = "detected (sample), scanned" if finding.kind == "free_text" else "full scan"
    if not result.spans:
        return None, outcome("", "none", 0, method)
    share = round(result.cells_changed / present, 4) if present else 0.0
    if policy != "redact":
        return None, outcome("scan", policy, 0, method, spans=result.spans, share=share)
    return result.rewrite, outcome(
        "scan", "scan", result.cells_changed, method, spans=result.spans, share=share
    )


def _declared_nested(
    frame: pl.DataFrame,
    policy: ColumnPolicy,
    key: RedactionKey,
    engine: PiiEngine | None,
    config: DetectionConfig,
) -> tuple[pl.Expr | None, ColumnOutcome]:
    """A declared policy on a struct or list column applies to every text value inside it."""
    column = policy.column
    dtype = frame.schema[column]
    leaves = text_leaves(column, dtype)
    values = {leaf.path: leaf_values(frame, leaf) for leaf in leaves}
    present = sum(v.len() - v.null_count() for v in values.values())
    effective = _withheld(policy) if policy.is_free_text and engine is None else policy
    spans: Counter[str] = Counter()
    rewrites: dict[tuple[str, ...], LeafRewrite] = {}
    changed = present
    if effective.action == "drop":
        expr = None
    else:
        if effective.is_free_text:
            assert engine is not None
            changed = 0
            for path, text in values.items():
                result = scan_column(text, engine, config, materialize=False)
                rewrites[path] = result.rewrite
                spans.update(result.spans)
                changed += result.cells_changed
        else:
            action = ACTIONS[effective.action]
            for path in values:
                rewrites[path] = partial(_apply, action, effective, key)
        expr = rewrite_column(column, dtype, rewrites)
    return expr, ColumnOutcome(
        column=column,
        entity=effective.entity,
        action=effective.action,
        values_redacted=0 if effective.action == "keep" else changed,
        method="declared (every nested text value)",
        justification=effective.justification,
        spans=dict(spans),
    )


def _apply(
    action: RedactionAction, policy: ColumnPolicy, key: RedactionKey, values: pl.Expr
) -> pl.Expr:
    expr = action(values, policy, key)
    assert expr is not None, "drop is handled for the whole column"
    return expr


def _non_null_counts(frame: pl.DataFrame, policies: Sequence[ColumnPolicy]) -> list[int]:
    if not policies:
        return []
    return [int(n) for n in frame.select(pl.col(p.column).count() for p in policies).row(0)]


def _withheld(policy: ColumnPolicy) -> ColumnPolicy:
    return ColumnPolicy(column=policy.column, entity=FREE_TEXT, action="replace")


_STRENGTH = {"none": 0, "warn": 1, "reject": 2}


def merge_outcomes(parts: Sequence[Sequence[ColumnOutcome]]) -> list[ColumnOutcome]:
    """The outcomes of an upload redacted in parts, as one outcome per column: counts and
    spans added up; where parts differ in what they found (one part's undeclared text held
    PII, another's none), the column counts as having held it."""
    merged: dict[str, ColumnOutcome] = {}
    for outcomes in parts:
        for outcome in outcomes:
            seen = merged.get(outcome.column)
            if seen is None:
                merged[outcome.column] = outcome
                continue
            stronger = _STRENGTH.get(outcome.action, 3) > _STRENGTH.get(seen.action, 3)
            base = outcome if stronger else seen
            merged[outcome.column] = replace(
                base,
                values_redacted=seen.values_redacted + outcome.values_redacted,
                spans=dict(Counter(seen.spans) + Counter(outcome.spans)),
                sample_size=(
                    seen.sample_size + outcome.sample_size
                    if base.method == "scan"
                    and seen.sample_size is not None
                    and outcome.sample_size is not None
                    else base.sample_size
                ),
            )
    return list(merged.values())
