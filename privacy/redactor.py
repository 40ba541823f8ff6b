"""Plan the redaction of a frame: declared columns, free-text columns and undeclared columns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from privacy.actions import redaction_expr
from privacy.classify import classify_column
from privacy.detection import DetectionConfig
from privacy.engine import PiiEngine
from privacy.freetext import scan_column
from privacy.policy import ColumnPolicy, RedactionKey

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
) -> tuple[pl.LazyFrame, list[ColumnOutcome]]:
    """A lazy plan that redacts ``frame``, and one outcome per column examined.

    - declared columns (``pii: ENTITY``) get their whole-column action as polars expressions;
    - free-text columns (``pii: "scan"``) get PII spans replaced inside each cell;
    - undeclared text columns are sampled; one that is mostly one entity is replaced whole,
      free text with PII is scanned (``undeclared="redact"``), or the outcome's action is
      ``reject``/``warn`` and the data is left for the caller to refuse or keep.

    The plan is meant to be streamed into a sink, so the redacted table never has to exist in
    memory beside the original. Without an ``engine`` nothing is detected, and free-text cells
    are withheld whole (``<FREE_TEXT>``) rather than kept raw.
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
    for policy in present:
        if policy.is_free_text and engine is not None:
            result = scan_column(frame[policy.column], engine, config)
            replacements.append(result.values)
            outcomes.append(
                ColumnOutcome(
                    column=policy.column,
                    entity="scan",
                    action="scan",
                    values_redacted=result.cells_changed,
                    method="scan",
                    spans=result.spans,
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
        for column in frame.columns:
            if column in declared or frame.schema[column] != pl.String:
                continue
            replacement, outcome = _undeclared(frame[column], engine, config, undeclared)
            outcomes.append(outcome)
            if replacement is not None:
                replacements.append(replacement)
    return frame.lazy().with_columns(replacements).drop(dropped), outcomes


def _undeclared(
    values: pl.Series, engine: PiiEngine, config: DetectionConfig, policy: str
) -> tuple[pl.Series | pl.Expr | None, ColumnOutcome]:
    finding = classify_column(values, engine, config)
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

    if finding.kind == "clean":
        return None, outcome("", "none", 0, "detected (sample)")
    entity = finding.entity or "scan"
    if policy != "redact":
        return None, outcome(entity, policy, 0, "detected (sample)")
    if finding.kind == "entity":
        expr = redaction_expr(ColumnPolicy(name, entity, "replace"), RedactionKey(b""))
        assert expr is not None
        count = values.len() - values.null_count()
        return expr.alias(name), outcome(entity, "replace", count, "detected (sample)")
    result = scan_column(values, engine, config)
    return result.values, outcome(
        "scan", "scan", result.cells_changed, "detected (sample), scanned", spans=result.spans
    )


def _non_null_counts(frame: pl.DataFrame, policies: Sequence[ColumnPolicy]) -> list[int]:
    if not policies:
        return []
    return [int(n) for n in frame.select(pl.col(p.column).count() for p in policies).row(0)]


def _withheld(policy: ColumnPolicy) -> ColumnPolicy:
    return ColumnPolicy(column=policy.column, entity=FREE_TEXT, action="replace")
