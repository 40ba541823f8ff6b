"""Seeded Faker data full of known PII, with ground truth, for the privacy quality test and bench.

Columns:
- declared: ``email`` (pii EMAIL_ADDRESS, hash), ``phone`` (pii PHONE_NUMBER, replace);
- undeclared, holding PII the contract does not mention: ``contact_email``, ``alt_phone``,
  ``card``, ``ssn``, ``iban``, ``ip``;
- free text: ``notes`` (pii scan); about 30 % of cells embed a name, email or phone, a few a
  card, SSN, IBAN or IP; the rest mention order codes, products, amounts and dates;
- non-PII: ``ticket_id``, ``opened_on``, ``amount``, ``product_code``, ``country``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import polars as pl
from faker import Faker

from privacy import ColumnPolicy

DECLARED = (
    ColumnPolicy("email", "EMAIL_ADDRESS", "hash"),
    ColumnPolicy("phone", "PHONE_NUMBER", "replace"),
    ColumnPolicy("notes", "scan", "scan"),
)
UNDECLARED = {
    "contact_email": "EMAIL_ADDRESS",
    "alt_phone": "PHONE_NUMBER",
    "card": "CREDIT_CARD",
    "ssn": "US_SSN",
    "iban": "IBAN_CODE",
    "ip": "IP_ADDRESS",
}
NON_PII = ("ticket_id", "opened_on", "amount", "product_code", "country")
STRUCTURED_PII = ("email", "phone", *UNDECLARED)


@dataclass(frozen=True)
class MixedTable:
    """The table, and its ground truth: (row, column, entity, value) per planted PII value."""

    frame: pl.DataFrame
    truth: pl.DataFrame
    pii_free_notes: pl.Series  # row numbers of notes cells that hold no PII


def _codes(rng: random.Random) -> dict[str, str]:
    return {
        "order": f"ORD-{rng.randint(2019, 2026)}-{rng.randint(0, 999_999):06d}",
        "sku": f"SKU-{rng.randint(1000, 9999)}-{rng.choice('ABCDEFGHJK')}",
        "amount": f"${rng.randint(1, 9_999)}.{rng.randint(0, 99):02d}",
        "qty": str(rng.randint(1, 500)),
        "wh": f"WH-{rng.randint(1, 40):02d}",
    }


_CLEAN_NOTES = (
    "Order {order} shipped on {date}, total {amount}.",
    "Customer asked whether {sku} is back in stock.",
    "Refund of {amount} approved for order {order}.",
    "Ticket escalated to tier 2; {qty} units of {sku} affected.",
    "Delivered to warehouse {wh} on {date}.",
    "{sentence}",
    "Price of {sku} corrected to {amount} from {date}.",
)
_PII_NOTES = (
    ("Customer {name} called about order {order}.", ("PERSON",)),
    ("Please email {email} with the invoice for {order}.", ("EMAIL_ADDRESS",)),
    ("Call back on {phone} about the refund of {amount}.", ("PHONE_NUMBER",)),
    ("{name} asked us to reach them at {phone}.", ("PERSON", "PHONE_NUMBER")),
    ("Spoke with {name}; confirmation sent to {email}.", ("PERSON", "EMAIL_ADDRESS")),
    ("Escalated by {name} after a delayed delivery of {sku}.", ("PERSON",)),
)
_RARE_PII_NOTES = (
    ("Card {card} was declined for order {order}.", ("CREDIT_CARD",)),
    ("SSN {ssn} verified before the payout.", ("US_SSN",)),
    ("Refund to IBAN {iban} requested.", ("IBAN_CODE",)),
    ("Login from {ip} flagged as suspicious.", ("IP_ADDRESS",)),
)
_FIELD_OF = {
    "PERSON": "name",
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "card",
    "US_SSN": "ssn",
    "IBAN_CODE": "iban",
    "IP_ADDRESS": "ip",
}


def mixed_table(rows: int, seed: int = 42, with_free_text: bool = True) -> MixedTable:
    """``rows`` rows of seeded data, the same for the same arguments."""
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    columns: dict[str, list[object]] = {name: [] for name in (*NON_PII, *STRUCTURED_PII)}
    notes: list[str] = []
    truth: list[tuple[int, str, str, str]] = []
    clean_rows: list[int] = []
    for row in range(rows):
        values = {
            "email": fake.email(),
            "phone": fake.phone_number(),
            "contact_email": fake.company_email(),
            "alt_phone": fake.phone_number(),
            "card": fake.credit_card_number(),
            "ssn": fake.ssn(),
            "iban": fake.iban(),
            "ip": fake.ipv4() if rng.random() < 0.8 else fake.ipv6(),
        }
        for column in STRUCTURED_PII:
            columns[column].append(values[column])
            entity = (
                "EMAIL_ADDRESS"
                if column == "email"
                else ("PHONE_NUMBER" if column == "phone" else UNDECLARED[column])
            )
            truth.append((row, column, entity, values[column]))
        columns["ticket_id"].append(f"T-{seed:02d}{row:07d}")
        columns["opened_on"].append(fake.date_between("-3y").isoformat())
        columns["amount"].append(round(rng.uniform(1, 5000), 2))
        columns["product_code"].append(_codes(rng)["sku"])
        columns["country"].append(rng.choice(["US", "GB", "DE", "FR", "NL", "CA"]))
        if not with_free_text:
            continue
        fields = {
            **_codes(rng),
            "date": fake.date_between("-2y").isoformat(),
            "sentence": fake.sentence(nb_words=10),
            "name": f"{fake.first_name()} {fake.last_name()}",
            "email": fake.email(),
            "phone": fake.phone_number(),
            "card": fake.credit_card_number(),
            "ssn": fake.ssn(),
            "iban": fake.iban(),
            "ip": fake.ipv4(),
        }
        draw = rng.random()
        entities: tuple[str, ...]
        if draw < 0.30:
            template, entities = rng.choice(_PII_NOTES)
        elif draw < 0.34:
            template, entities = rng.choice(_RARE_PII_NOTES)
        else:
            template, entities = rng.choice(_CLEAN_NOTES), ()
            clean_rows.append(row)
        notes.append(template.format(**fields))
        truth.extend((row, "notes", entity, fields[_FIELD_OF[entity]]) for entity in entities)
    frame = pl.DataFrame(columns).with_columns(pl.col("opened_on").str.to_date())
    if with_free_text:
        frame = frame.with_columns(pl.Series("notes", notes))
    return MixedTable(
        frame=frame,
        truth=pl.DataFrame(truth, schema=["row", "column", "entity", "value"], orient="row"),
        pii_free_notes=pl.Series("row", clean_rows, dtype=pl.Int64),
    )


@dataclass(frozen=True)
class Quality:
    """Recall per (column kind, entity), and how much non-PII data was changed."""

    recall: dict[tuple[str, str], float]
    non_pii_cells_changed: float
    pii_free_notes_altered: float

    def lines(self) -> list[str]:
        """The figures, one per line."""
        out = [
            f"recall {kind:10s} {entity:14s} {value:.3f}"
            for (kind, entity), value in sorted(self.recall.items())
        ]
        out.append(f"non-PII cells changed         {self.non_pii_cells_changed:.4f}")
        out.append(f"PII-free notes altered        {self.pii_free_notes_altered:.4f}")
        return out


def measure(table: MixedTable, redacted: pl.DataFrame) -> Quality:
    """Compare a redacted copy of ``table.frame`` with the ground truth."""
    kinds = {"email": "declared", "phone": "declared", "notes": "free text"}
    truth = table.truth.with_columns(
        pl.col("column").replace_strict(kinds, default="undeclared").alias("kind")
    )
    found = []
    for column, group in truth.group_by("column"):
        name = str(column[0])
        if name not in redacted.columns:  # dropped: nothing left to leak
            found.append(group.with_columns(pl.lit(True).alias("removed")))
            continue
        cells = redacted[name].cast(pl.String).gather(group["row"])
        removed = [
            cell is None or value not in cell
            for cell, value in zip(cells.to_list(), group["value"].to_list(), strict=True)
        ]
        found.append(group.with_columns(pl.Series("removed", removed)))
    scored = pl.concat(found)
    recall = {
        (str(kind), str(entity)): float(share)
        for kind, entity, share in scored.group_by("kind", "entity")
        .agg(pl.col("removed").mean())
        .iter_rows()
    }
    original = table.frame
    changed = sum(
        int((original[c].cast(pl.String) != redacted[c].cast(pl.String)).fill_null(True).sum())
        for c in NON_PII
    )
    non_pii = changed / (len(NON_PII) * original.height)
    altered = 0.0
    if "notes" in original.columns and table.pii_free_notes.len():
        before = original["notes"].gather(table.pii_free_notes)
        after = redacted["notes"].gather(table.pii_free_notes)
        altered = int((before != after).sum()) / before.len()
    return Quality(recall=recall, non_pii_cells_changed=non_pii, pii_free_notes_altered=altered)
