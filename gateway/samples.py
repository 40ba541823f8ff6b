"""Seeded sample data shaped like the example contracts, built with polars (``datagate sample``,
the tests and the benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import polars as pl

FIRST = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "Amélie",
    "Jürgen",
    "Sofia",
    "Lucas",
    "Emma",
    "Noah",
    "Olivia",
    "Liam",
    "Zoë",
    "Mateo",
]
LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Müller",
    "Schmidt",
    "Dubois",
    "Martin",
    "Rossi",
    "de Vries",
    "López",
    "O'Brien",
    "Nguyen",
    "Kim",
]
DOMAINS = ["example.com", "mail.example.org", "corp.example.net", "example.co.uk", "example.de"]
COUNTRIES = ["US", "GB", "DE", "FR", "NL", "ES", "IT", "CA"]
CITIES = ["Boston", "London", "Berlin", "Paris", "Amsterdam", "Madrid", "Rome", "Toronto", None]
SEGMENTS = ["consumer", "small_business", "enterprise"]


def _pick(values: Sequence[object], n: int, seed: int, name: str) -> pl.Series:
    return pl.Series(name, values).sample(n, with_replacement=True, seed=seed)


def _ints(n: int, low: int, high: int, seed: int, name: str) -> pl.Series:
    return pl.Series(name, range(low, high)).sample(n, with_replacement=True, seed=seed)


def customers(n: int, seed: int = 7, *, notes: bool = False) -> pl.DataFrame:
    """``n`` valid rows for the ``customers`` contract, the same for the same ``seed``.

    ``notes`` is null unless asked for; then four rows in ten carry a support agent's note, and
    three of those name the customer, their e-mail address or phone number in free text (what
    the contract's ``pii: scan`` column exists to catch)."""
    ids = pl.int_range(1, n + 1, eager=True).alias("customer_id")
    first = _pick(FIRST, n, seed + 1, "first")
    last = _pick(LAST, n, seed + 2, "last")
    frame = pl.DataFrame([ids, first, last, _pick(DOMAINS, n, seed + 3, "domain")])
    signup_days = _ints(n, 0, 9000, seed + 4, "signup_days")
    gap_days = _ints(n, 0, 800, seed + 5, "gap")
    cents = _ints(n, 0, 5_000_000, seed + 6, "cents")
    phone_a = _ints(n, 200, 999, seed + 7, "pa")
    phone_b = _ints(n, 0, 10_000, seed + 8, "pb")
    frame = frame.with_columns(
        signup_days,
        gap_days,
        cents,
        phone_a,
        phone_b,
        _pick(COUNTRIES, n, seed + 9, "country"),
        _pick(CITIES, n, seed + 10, "city"),
        _pick(SEGMENTS, n, seed + 11, "segment"),
        _pick([True, False], n, seed + 12, "is_active"),
        _ints(n, 0, 300, seed + 13, "orders_count"),
    ).select(
        "customer_id",
        pl.format(
            "{}.{}{}@{}",
            pl.col("first").str.to_lowercase(),
            pl.col("last").str.to_lowercase().str.replace_all(r"[^a-z]", ""),
            pl.col("customer_id"),
            pl.col("domain"),
        ).alias("email"),
        pl.format("{} {}", "first", "last").alias("full_name"),
        pl.when(pl.col("pb") % 10 == 0)
        .then(None)
        .otherwise(pl.format("+1 {}-555-{}", "pa", pl.col("pb").cast(pl.String).str.zfill(4)))
        .alias("phone"),
        "country",
        "city",
        (pl.lit(date(2001, 1, 1)) + pl.duration(days="signup_days")).alias("signup_date"),
        pl.when(pl.col("gap") % 7 == 0)
        .then(None)
        .otherwise(
            pl.lit(date(2001, 1, 1)) + pl.duration(days=pl.col("signup_days") + pl.col("gap"))
        )
        .alias("last_order_date"),
        (pl.col("cents") / 100).alias("lifetime_value"),
        "orders_count",
        "segment",
        "is_active",
        pl.lit(None, dtype=pl.String).alias("notes"),
    )
    if not notes:
        return frame
    kind = (pl.col("customer_id") * 7 + seed) % 10
    return frame.with_columns(
        pl.when((kind == 0) & pl.col("phone").is_not_null())
        .then(pl.format("Called {} on {} about a late delivery.", "full_name", "phone"))
        .when(kind == 1)
        .then(pl.format("Asked us to send invoices to {} from now on.", "email"))
        .when(kind == 2)
        .then(pl.lit("Prefers contact by e-mail; no calls before 10am."))
        .when((kind == 3) & pl.col("city").is_not_null())
        .then(pl.format("{} moved to {}: update the shipping address.", "full_name", "city"))
        .otherwise(None)
        .alias("notes")
    )
