"""PII detection and redaction for polars frames, on Presidio and spaCy.

A library: no settings, no database, never imports gateway.
"""

from privacy.actions import ACTIONS, RedactionAction, decrypt_token, redaction_expr
from privacy.classify import Finding, classify_column
from privacy.engine import PiiEngine, Span
from privacy.freetext import scan_column, scan_texts
from privacy.policy import ColumnPolicy, PolicyError, RedactionKey
from privacy.recognizers import DEFAULT_ENTITIES, DetectionConfig
from privacy.redactor import ColumnOutcome, plan_redaction, redact_frame

__all__ = [
    "ACTIONS",
    "DEFAULT_ENTITIES",
    "ColumnOutcome",
    "ColumnPolicy",
    "DetectionConfig",
    "Finding",
    "PiiEngine",
    "PolicyError",
    "RedactionAction",
    "RedactionKey",
    "Span",
    "classify_column",
    "decrypt_token",
    "plan_redaction",
    "redact_frame",
    "redaction_expr",
    "scan_column",
    "scan_texts",
]
