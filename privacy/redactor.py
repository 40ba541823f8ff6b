"""Apply declared column policies to a frame, counting what was redacted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from privacy.actions import redaction_expr
from privacy.policy import ColumnPolicy, RedactionKey

FREE_TEXT = "FREE_TEXT"


@dataclass(frozen=True)
class ColumnOutcome:
    """What happened to one column: entity, action, how many values it touched. Never a value."""

    column: str
    entity: str
    action: str
    values_redacted: int
    method: str = "declared"
    justification: str | None = None


def redact_frame(
    frame: pl.DataFrame, policies: Sequence[ColumnPolicy], key: RedactionKey
) -> tuple[pl.DataFrame, list[ColumnOutcome]]:
    """Apply each column policy to ``frame`` now (see ``plan_redaction``)."""
    plan, outcomes = plan_redaction(frame, policies, key)
    return plan.collect(), outcomes


def plan_redaction(
    frame: pl.DataFrame, policies: Sequence[ColumnPolicy], key: RedactionKey
) -> tuple[pl.LazyFrame, list[ColumnOutcome]]:
    """A lazy plan applying each column policy in one polars pass, and what it will redact.

    The plan is meant to be streamed (e.g. into a Parquet sink), so the redacted table never
    needs to exist in memory beside the original.

    Free-text (``scan``) columns have no span detector yet, so each of their non-null cells is
    withheld whole (replaced by ``<FREE_TEXT>``) rather than stored raw. Columns named by a
    policy but absent from the frame are ignored (optional columns).
    """
    present = [p for p in policies if p.column in frame.columns]
    replacements: list[pl.Expr] = []
    dropped: list[str] = []
    for policy in present:
        expr = redaction_expr(_withheld(policy) if policy.is_free_text else policy, key)
        if expr is None:
            dropped.append(policy.column)
        else:
            replacements.append(expr.alias(policy.column))
    non_null = frame.select(pl.col(p.column).count() for p in present).row(0) if present else ()
    redacted = frame.lazy().with_columns(replacements).drop(dropped)
    outcomes = [
        ColumnOutcome(
            column=p.column,
            entity=p.entity,
            action="replace" if p.is_free_text else p.action,
            values_redacted=0 if p.action == "keep" else int(count),
            method="withheld (no span detector)" if p.is_free_text else "declared",
            justification=p.justification,
        )
        for p, count in zip(present, non_null, strict=True)
    ]
    return redacted, outcomes


def _withheld(policy: ColumnPolicy) -> ColumnPolicy:
    return ColumnPolicy(column=policy.column, entity=FREE_TEXT, action="replace")
