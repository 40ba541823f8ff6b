"""What a contract declares about a column's personal data, and the key that pseudonymises it."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

SCAN = "scan"
ENTITY_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]*$")


class PolicyError(ValueError):
    """A column's PII policy is not one Datagate can apply."""


@dataclass(frozen=True)
class RedactionKey:
    """The secret behind keyed pseudonyms; sub-keys are derived per purpose."""

    secret: bytes

    def derive(self, purpose: str) -> bytes:
        """A 64-character ASCII sub-key for ``purpose`` (HMAC block size, so used as-is)."""
        return hmac.new(self.secret, purpose.encode(), hashlib.sha256).hexdigest().encode()

    def derive_raw(self, purpose: str) -> bytes:
        """A 64-byte binary sub-key for ``purpose`` (e.g. AES-256-SIV)."""
        return hmac.new(self.secret, purpose.encode(), hashlib.sha512).digest()

    def __repr__(self) -> str:
        return "RedactionKey(<secret>)"


@dataclass(frozen=True)
class ColumnPolicy:
    """A column's declared entity (or ``scan`` for free text) and the action applied to it."""

    column: str
    entity: str
    action: str
    justification: str | None = None

    @property
    def is_free_text(self) -> bool:
        """True for ``pii: "scan"`` columns, whose PII spans are found inside the text."""
        return self.entity == SCAN

    def check(self, known_actions: frozenset[str]) -> None:
        """Raise PolicyError unless entity and action make sense together.

        Raises:
            PolicyError: unknown entity name or action, or ``keep`` without a justification.
        """
        if self.entity != SCAN and not ENTITY_PATTERN.match(self.entity):
            raise PolicyError(
                f"column {self.column!r}: pii must be an entity name such as 'EMAIL_ADDRESS' "
                f"or 'scan', got {self.entity!r}"
            )
        if self.action not in known_actions:
            raise PolicyError(
                f"column {self.column!r}: unknown redact action {self.action!r} "
                f"(known: {', '.join(sorted(known_actions))})"
            )
        if self.action == "keep" and not self.justification:
            raise PolicyError(
                f"column {self.column!r}: redact 'keep' needs a 'justification' in its metadata"
            )
