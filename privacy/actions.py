"""Redaction actions, one polars expression builder each, in a registry keyed by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl
import polars_hash  # noqa: F401  (registers the ``chash`` expression namespace)

from privacy.policy import ColumnPolicy, RedactionKey

RedactionAction = Callable[[pl.Expr, ColumnPolicy, RedactionKey], pl.Expr | None]
"""Builds the expression that replaces a column; ``None`` means the column is dropped."""


def keyed_pseudonym(values: pl.Expr, key: RedactionKey) -> pl.Expr:
    """Hex HMAC-SHA256 of each value's UTF-8 text under the pseudonym sub-key (polars-native).

    Equal to ``hmac.new(subkey, text.encode(), sha256).hexdigest()``; nulls stay null.
    """
    subkey = key.derive("pseudonym").decode("ascii")
    text: Any = values.cast(pl.String)  # ``chash`` is registered at run time by polars-hash
    pseudonym: pl.Expr = text.chash.hmac_sha256(key=subkey)
    return pseudonym


def _hash(values: pl.Expr, policy: ColumnPolicy, key: RedactionKey) -> pl.Expr:
    return keyed_pseudonym(values, key)


def _mask(values: pl.Expr, policy: ColumnPolicy, key: RedactionKey) -> pl.Expr:
    # Keeps length and punctuation (the shape), hides every letter and digit.
    return values.cast(pl.String).str.replace_all(r"[\p{L}\p{N}]", "*")


def _replace(values: pl.Expr, policy: ColumnPolicy, key: RedactionKey) -> pl.Expr:
    placeholder = f"<{policy.entity}>"
    return pl.when(values.is_null()).then(None).otherwise(pl.lit(placeholder))


def _drop(values: pl.Expr, policy: ColumnPolicy, key: RedactionKey) -> pl.Expr | None:
    return None


def _keep(values: pl.Expr, policy: ColumnPolicy, key: RedactionKey) -> pl.Expr:
    return values


ACTIONS: dict[str, RedactionAction] = {
    "hash": _hash,
    "mask": _mask,
    "replace": _replace,
    "drop": _drop,
    "keep": _keep,
}


def redaction_expr(policy: ColumnPolicy, key: RedactionKey) -> pl.Expr | None:
    """The expression that redacts ``policy.column``, or None when the column is dropped."""
    return ACTIONS[policy.action](pl.col(policy.column), policy, key)
