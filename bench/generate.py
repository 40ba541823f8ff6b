"""Seeded synthetic data shaped like the example contracts (no free text), built with polars."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date
from pathlib import Path

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


def customers(n: int, seed: int = 7) -> pl.DataFrame:
    """``n`` valid rows for the ``customers`` contract; ``notes`` is left empty (null)."""
    ids = pl.int_range(1, n + 1, eager=True).alias("customer_id")
    first = _pick(FIRST, n, seed + 1, "first")
    last = _pick(LAST, n, seed + 2, "last")
    frame = pl.DataFrame([ids, first, last, _pick(DOMAINS, n, seed + 3, "domain")])
    signup_days = _ints(n, 0, 9000, seed + 4, "signup_days")
    gap_days = _ints(n, 0, 800, seed + 5, "gap")
    cents = _ints(n, 0, 5_000_000, seed + 6, "cents")
    phone_a = _ints(n, 200, 999, seed + 7, "pa")
    phone_b = _ints(n, 0, 10_000, seed + 8, "pb")
    return frame.with_columns(
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


def main() -> None:
    """Write a customers CSV: ``python -m bench.generate --rows N OUT.csv``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    customers(args.rows, args.seed).write_csv(args.out)


if __name__ == "__main__":
    main()
