"""Event validation for tests, and the official OpenLineage examples the repository carries."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lineage.validation import validate_event as _validate_event

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = REPO / "tests" / "data" / "openlineage"
# The spec's own example events and facets (its ``tests`` folder), and the SHA-256 of each
# schema file as published, against which the copies in lineage/spec are checked.
EXAMPLES = OFFICIAL / "examples"
SCHEMA_DIGESTS = OFFICIAL / "schemas.sha256"
# A copy of the specification beside the checkout, compared when present, never required.
SHARED_SPEC = Path(
    os.environ.get("DATAGATE_OPENLINEAGE_SPEC", REPO.parent / "shared" / "openlineage-spec")
)


def shared_spec_dir() -> Path | None:
    """The spec folder beside the checkout, if there is one."""
    return SHARED_SPEC if (SHARED_SPEC / "OpenLineage.json").is_file() else None


def validate_event(event: dict[str, Any]) -> None:
    """Raise if ``event`` breaks the core schema or a standard facet's schema or placement."""
    _validate_event(event)
