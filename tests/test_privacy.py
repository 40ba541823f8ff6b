"""Declared-column redaction actions, as polars work."""

from __future__ import annotations

import hashlib
import hmac

import polars as pl
import pytest

from privacy import ColumnPolicy, PolicyError, RedactionKey, redact_frame
from privacy.actions import ACTIONS, mask_values
from privacy.engine import PiiEngine

KEY = RedactionKey(b"unit-test-secret-" + b"s" * 32)
FRAME = pl.DataFrame(
    {
        "email": ["ann@example.com", None, "zoë@example.de"],
        "name": ["Ann Lee", "Bo", None],
        "card": ["4111 1111 1111 1111", "5500-0000-0000-0004", None],
        "customer_id": [101, 102, 103],
    }
)


def test_hash_is_hmac_sha256_under_the_derived_key_and_keeps_nulls() -> None:
    out, outcomes = redact_frame(FRAME, [ColumnPolicy("email", "EMAIL_ADDRESS", "hash")], KEY)
    subkey = KEY.derive("pseudonym")
    assert out["email"].to_list() == [
        hmac.new(subkey, b"ann@example.com", hashlib.sha256).hexdigest(),
        None,
        hmac.new(subkey, "zoë@example.de".encode(), hashlib.sha256).hexdigest(),
    ]
    assert outcomes[0].values_redacted == 2


def test_hash_depends_on_the_key_only() -> None:
    policy = [ColumnPolicy("email", "EMAIL_ADDRESS", "hash")]
    again, _ = redact_frame(FRAME, policy, RedactionKey(KEY.secret))
    other, _ = redact_frame(FRAME, policy, RedactionKey(b"another-secret-" + b"x" * 32))
    first, _ = redact_frame(FRAME, policy, KEY)
    assert again["email"].to_list() == first["email"].to_list()
    assert other["email"][0] != first["email"][0]


def test_hash_of_a_non_string_column_hashes_its_text() -> None:
    out, _ = redact_frame(FRAME, [ColumnPolicy("customer_id", "ID", "hash")], KEY)
    assert (
        out["customer_id"][0]
        == hmac.new(KEY.derive("pseudonym"), b"101", hashlib.sha256).hexdigest()
    )


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (ColumnPolicy("name", "PERSON", "mask"), ["*** ***", "**", None]),
        (
            ColumnPolicy("card", "CREDIT_CARD", "mask"),
            ["**** **** **** ****", "****-****-****-****", None],
        ),
        (ColumnPolicy("name", "PERSON", "replace"), ["<PERSON>", "<PERSON>", None]),
        (
            ColumnPolicy("name", "PERSON", "keep", justification="display name is public"),
            ["Ann Lee", "Bo", None],
        ),
    ],
    ids=["mask-name", "mask-card", "replace", "keep"],
)
def test_whole_column_actions(policy: ColumnPolicy, expected: list[str | None]) -> None:
    out, outcomes = redact_frame(FRAME, [policy], KEY)
    assert out[policy.column].to_list() == expected
    assert outcomes[0].values_redacted == (0 if policy.action == "keep" else 2)


@pytest.mark.parametrize("repeats", [1, 50], ids=["mostly-distinct", "repeating"])
def test_mask_is_the_same_whether_values_repeat_or_not(repeats: int) -> None:
    # Repeating values are masked once per distinct value and looked up; distinct ones cell by
    # cell. Both give every cell its own shape, letters and digits of any script hidden.
    values = ["Zoë Ødegård", "李小龙", "O'Neil-42", "", None, "Ann Lee"] + [
        f"Name {i} Ünal" for i in range(40)
    ]
    series = pl.Series("name", values * repeats)
    masked = mask_values(series)
    assert masked.to_list() == [
        None if v is None else "".join("*" if c.isalnum() else c for c in v)
        for v in series.to_list()
    ]


def test_drop_removes_the_column_and_other_columns_are_untouched() -> None:
    out, outcomes = redact_frame(FRAME, [ColumnPolicy("card", "CREDIT_CARD", "drop")], KEY)
    assert out.columns == ["email", "name", "customer_id"]
    assert out.drop("card", strict=False).equals(FRAME.drop("card"))
    assert outcomes[0].action == "drop"


def test_free_text_is_withheld_until_spans_can_be_detected() -> None:
    frame = pl.DataFrame({"notes": ["call Ann on 555-0100", None]})
    out, outcomes = redact_frame(frame, [ColumnPolicy("notes", "scan", "scan")], KEY)
    assert out["notes"].to_list() == ["<FREE_TEXT>", None]
    assert outcomes[0].method.startswith("withheld")


def test_policy_check_refuses_unknown_actions_and_unjustified_keep() -> None:
    known = frozenset(ACTIONS)
    with pytest.raises(PolicyError, match="unknown redact action"):
        ColumnPolicy("a", "PERSON", "shred").check(known)
    with pytest.raises(PolicyError, match="justification"):
        ColumnPolicy("a", "PERSON", "keep").check(known)
    assert KEY.secret.decode() not in repr(KEY)


def test_free_text_loses_what_its_own_row_declares_even_where_ner_finds_nothing(
    pii_engine: PiiEngine,
) -> None:
    # Names the small spaCy model misses (measured on the sample data: "Lucas López" in
    # "Called Lucas López on ..."), an address inside a word, a declared value too short to
    # look for, and a second declared PERSON column.
    frame = pl.DataFrame(
        {
            "name": ["Lucas López", "Noah de Vries", "Al", None],
            "email": ["lucas@example.com", "noah@example.org", "al@example.net", "x@example.com"],
            "manager": ["Grace Hopper", None, None, None],
            "notes": [
                "Called Lucas López on behalf of Grace Hopper.",
                "Noah de Vries moved to Madrid; wrote from noah@example.org.",
                "Also sold in Alaska.",
                None,
            ],
        }
    )
    policies = [
        ColumnPolicy("name", "PERSON", "mask"),
        ColumnPolicy("email", "EMAIL_ADDRESS", "hash"),
        ColumnPolicy("manager", "PERSON", "mask"),
        ColumnPolicy("notes", "scan", "scan"),
    ]
    redacted, outcomes = redact_frame(frame, policies, KEY, engine=pii_engine)
    notes = redacted["notes"].to_list()
    assert notes[0] == "Called <PERSON> on behalf of <PERSON>."
    assert notes[1] == "<PERSON> moved to Madrid; wrote from <EMAIL_ADDRESS>."
    assert notes[2] == "Also sold in Alaska."  # "Al" is shorter than any value looked for
    assert notes[3] is None
    (scan,) = [o for o in outcomes if o.column == "notes"]
    assert scan.values_redacted == 2
    assert scan.spans["PERSON"] >= 3
    assert scan.spans["EMAIL_ADDRESS"] == 1
