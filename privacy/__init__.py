"""PII redaction for polars frames. A library: no settings, no database, never imports gateway."""

from privacy.actions import ACTIONS, RedactionAction, redaction_expr
from privacy.policy import ColumnPolicy, PolicyError, RedactionKey
from privacy.redactor import ColumnOutcome, plan_redaction, redact_frame

__all__ = [
    "ACTIONS",
    "ColumnOutcome",
    "ColumnPolicy",
    "PolicyError",
    "RedactionAction",
    "RedactionKey",
    "plan_redaction",
    "redact_frame",
    "redaction_expr",
]
