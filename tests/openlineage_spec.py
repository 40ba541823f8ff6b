"""Event validation for tests, and where the official schemas beside the checkout are."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from lineage.validation import validate_event as _validate_event

REPO = Path(__file__).resolve().parents[1]
SHARED_SPEC = Path(
    os.environ.get("DATAGATE_OPENLINEAGE_SPEC", REPO.parent / "shared" / "openlineage-spec")
)


def shared_spec_dir() -> Path:
    """The spec folder beside the checkout; missing is a failure in CI and a skip elsewhere."""
    if not (SHARED_SPEC / "OpenLineage.json").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"OpenLineage spec not found at {SHARED_SPEC}")
        pytest.skip(f"OpenLineage spec not found at {SHARED_SPEC}")
    return SHARED_SPEC


def validate_event(event: dict[str, Any]) -> None:
    """Raise if ``event`` breaks the core schema or a standard facet's schema or placement."""
    _validate_event(event)
