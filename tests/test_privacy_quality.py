"""Detection quality on seeded Faker data with ground truth; the figures are printed."""

from __future__ import annotations

import pytest

from bench.pii_data import DECLARED, measure, mixed_table
from privacy import PiiEngine, RedactionKey, redact_frame

STRUCTURED = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS")


def test_recall_and_precision_on_seeded_faker_data(
    pii_engine: PiiEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    table = mixed_table(2_000, seed=2026)
    redacted, _ = redact_frame(
        table.frame, DECLARED, RedactionKey(b"quality-" + b"q" * 40), engine=pii_engine
    )
    quality = measure(table, redacted)
    with capsys.disabled():
        print("\nPII detection quality, 2,000 seeded rows:")
        for line in quality.lines():
            print("  " + line)
    for kind in ("declared", "undeclared", "free text"):
        for entity in STRUCTURED:
            if (kind, entity) in quality.recall:
                assert quality.recall[(kind, entity)] == 1.0, (kind, entity)
    assert {e for k, e in quality.recall if k == "undeclared"} == set(STRUCTURED)
    assert {e for k, e in quality.recall if k == "free text"} >= set(STRUCTURED)
    assert quality.recall[("free text", "PERSON")] >= 0.85
    assert quality.non_pii_cells_changed < 0.01
    assert quality.pii_free_notes_altered < 0.05
