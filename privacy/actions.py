"""Redaction actions, one polars expression builder each, in a registry keyed by name."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import polars as pl
import polars_hash  # noqa: F401  (registers the ``chash`` expression namespace)
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

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


ENCRYPTED_PREFIX = "dgenc1:"


def _siv(key: RedactionKey) -> AESSIV:
    return AESSIV(key.derive_raw("encrypt"))


def encrypt_values(values: pl.Series, key: RedactionKey) -> pl.Series:
    """Deterministic AES-SIV tokens (equal values give equal tokens), once per distinct value."""
    text = values.cast(pl.String)
    distinct = text.drop_nulls().unique()
    cipher = _siv(key)
    tokens = [
        ENCRYPTED_PREFIX + base64.urlsafe_b64encode(cipher.encrypt(v.encode(), None)).decode()
        for v in distinct.to_list()
    ]
    return text.replace(distinct, pl.Series(tokens, dtype=pl.String))


def decrypt_token(token: str, key: RedactionKey) -> str:
    """The original text of an ``encrypt`` token.

    Raises:
        ValueError: not a token, or not made with this key.
    """
    if not token.startswith(ENCRYPTED_PREFIX):
        raise ValueError("not a Datagate encrypted value")
    try:
        raw = base64.urlsafe_b64decode(token[len(ENCRYPTED_PREFIX) :].encode())
        return _siv(key).decrypt(raw, None).decode()
    except (InvalidTag, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("the value was not encrypted with this key, or is damaged") from exc


def _encrypt(values: pl.Expr, policy: ColumnPolicy, key: RedactionKey) -> pl.Expr:
    return values.map_batches(
        lambda batch: encrypt_values(batch, key), return_dtype=pl.String, is_elementwise=True
    )


_MASKED = r"[\p{L}\p{N}]"


def mask_values(values: pl.Series) -> pl.Series:
    """Every letter and digit replaced by ``*``, length and punctuation kept (the shape).

    Where values repeat (names, cities), each distinct value is masked once and the rest
    looked up: a regular-expression pass per cell costs ten times a lookup.
    """
    text = values.cast(pl.String)
    distinct_estimate = text.to_frame().select(pl.first().approx_n_unique()).item()
    if 2 * int(distinct_estimate) > text.len():  # mostly distinct: one pass over every cell
        return text.str.replace_all(_MASKED, "*")
    distinct = text.drop_nulls().unique()
    return text.replace(distinct, distinct.str.replace_all(_MASKED, "*"))


def _mask(values: pl.Expr, policy: ColumnPolicy, key: RedactionKey) -> pl.Expr:
    return values.map_batches(mask_values, return_dtype=pl.String, is_elementwise=True)


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
    "encrypt": _encrypt,
    "drop": _drop,
    "keep": _keep,
}


def redaction_expr(policy: ColumnPolicy, key: RedactionKey) -> pl.Expr | None:
    """The expression that redacts ``policy.column``, or None when the column is dropped."""
    return ACTIONS[policy.action](pl.col(policy.column), policy, key)
