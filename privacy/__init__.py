"""PII detection and redaction for polars frames, on Presidio and spaCy.

A library: no settings, no database, never imports gateway.
"""

from privacy.actions import ACTIONS, RedactionAction, decrypt_token, redaction_expr
from privacy.classify import Finding, classify_column
from privacy.detection import DEFAULT_ENTITIES, DetectionConfig, Span, replace_spans
from privacy.engine import DetectionMemo, PiiEngine
from privacy.freetext import scan_column, scan_texts
from privacy.names import scrub_column_names, scrub_text
from privacy.policy import ColumnPolicy, PolicyError, RedactionKey
from privacy.redactor import (
    ColumnOutcome,
    classify_undeclared,
    merge_outcomes,
    plan_redaction,
    redact_frame,
)

__all__ = [
    "ACTIONS",
    "DEFAULT_ENTITIES",
    "ColumnOutcome",
    "ColumnPolicy",
    "DetectionConfig",
    "DetectionMemo",
    "Finding",
    "PiiEngine",
    "PolicyError",
    "RedactionAction",
    "RedactionKey",
    "Span",
    "classify_column",
    "classify_undeclared",
    "decrypt_token",
    "merge_outcomes",
    "plan_redaction",
    "redact_frame",
    "redaction_expr",
    "replace_spans",
    "scan_column",
    "scan_texts",
    "scrub_column_names",
    "scrub_text",
]
