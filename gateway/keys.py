"""API keys and roles: creation (shown once), hashing, lookup, revocation, permissions."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from gateway.contracts import DATASET_NAME
from gateway.db import unit_of_work
from gateway.errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from gateway.models import ApiKey, as_utc, utcnow

ROLES = ("admin", "producer", "consumer", "auditor")
# Roles whose keys are limited to datasets: they must name them, or "*" for every dataset.
SCOPED_ROLES = ("producer", "consumer")
ALL_DATASETS = "*"
KEY_PREFIX = "dg_"
ADMIN_PRINCIPAL = "admin-key"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and id, its role, and the datasets it may touch."""

    name: str
    role: str
    key_id: str | None
    datasets: frozenset[str] | None = None  # None: every dataset

    def may_use_dataset(self, dataset: str) -> bool:
        """True for admins and for keys that name ``dataset`` (or name none)."""
        return self.role == "admin" or self.datasets is None or dataset in self.datasets


def hash_key(key: str) -> str:
    """The stored form of a key (keys are 256-bit random, so a plain SHA-256 suffices)."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_scope(role: str, datasets: Sequence[str] | None) -> list[str] | None:
    """The datasets a new key may use as stored (None: every dataset, chosen explicitly).

    Raises:
        InvalidRequest: unknown role; a producer or consumer key naming no datasets (an empty
            list is never read as "all": that takes ``*``); datasets on another role; a name
            that is not a dataset name.
    """
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}")
    if role not in SCOPED_ROLES:
        if datasets is not None:
            raise InvalidRequest("only producer and consumer keys are limited to datasets")
        return None
    if datasets is None:
        raise InvalidRequest(
            f"a {role} key names the datasets it may use, or {ALL_DATASETS!r} for all of them"
        )
    if not datasets:
        raise InvalidRequest(
            f"the dataset list is empty; name datasets, or {ALL_DATASETS!r} for all of them"
        )
    if ALL_DATASETS in datasets:
        if len(set(datasets)) > 1:
            raise InvalidRequest(f"{ALL_DATASETS!r} means every dataset: name no others with it")
        return None
    bad = [d for d in datasets if not DATASET_NAME.match(d)]
    if bad:
        raise InvalidRequest(
            f"{len(bad)} dataset name(s) do not match {DATASET_NAME.pattern}, e.g. {bad[0][:100]!r}"
        )
    return sorted(set(datasets))


def create_key(
    engine: Engine,
    role: str,
    name: str,
    datasets: Sequence[str] | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key and return it with its secret, which is never stored or shown again.

    Raises:
        InvalidRequest: see ``key_scope``.
    """
    scope = key_scope(role, datasets)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=secrets.token_hex(8),
        key_hash=hash_key(secret),
        name=name,
        role=role,
        datasets=scope,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    with unit_of_work(engine) as session:
        session.add(row)
    return row, secret


def list_keys(engine: Engine) -> list[ApiKey]:
    """Every key, newest first (hashes are never shown)."""
    with Session(engine) as session:
        return list(session.exec(select(ApiKey).order_by(col(ApiKey.created_at).desc())).all())


def revoke_key(engine: Engine, key_id: str) -> ApiKey:
    """Revoke a key; it stops working at once.

    Raises:
        NotFound: no key has this id.
    """
    with unit_of_work(engine) as session:
        row = session.get(ApiKey, key_id)
        if row is None:
            raise NotFound(f"no API key {key_id!r}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            session.add(row)
        return row


def authenticate(engine: Engine, header: str | None, admin_key: str | None) -> Principal:
    """The principal behind an ``Authorization: Bearer`` header.

    Raises:
        Unauthorized: no header, not a bearer token, or an unknown, revoked or expired key.
    """
    if not header or not header.lower().startswith("bearer "):
        raise Unauthorized("send 'Authorization: Bearer <api key>'")
    token = header[7:].strip()
    if admin_key and hmac.compare_digest(token.encode(), admin_key.encode()):
        return Principal(name=ADMIN_PRINCIPAL, role="admin", key_id=None)
    with Session(engine) as session:
        row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(token))).first()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("unknown or revoked API key")
    if row.expires_at is not None and as_utc(row.expires_at) <= utcnow():
        raise Unauthorized("expired API key")
    return _principal(row)


ADMIN_KEY_ID = "admin:"


def admin_key_id(admin_key: str) -> str:
    """An id for ``DATAGATE_ADMIN_KEY`` as it is now (a digest: another key, another id)."""
    return ADMIN_KEY_ID + hash_key(admin_key)[:26]


def principal_of_key(engine: Engine, key_id: str | None, admin_key: str | None) -> Principal:
    """The principal of a key by its id (``admin_key_id``: ``DATAGATE_ADMIN_KEY``, while it is
    set to the same key).

    Raises:
        Unauthorized: the key is gone, revoked or expired (or the admin key unset or changed).
    """
    if key_id is None or key_id.startswith(ADMIN_KEY_ID):
        if not admin_key or key_id != admin_key_id(admin_key):
            raise Unauthorized("the admin key is no longer set, or was changed")
        return Principal(name=ADMIN_PRINCIPAL, role="admin", key_id=None)
    with Session(engine) as session:
        row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        raise Unauthorized("unknown or revoked API key")
    if row.expires_at is not None and as_utc(row.expires_at) <= utcnow():
        raise Unauthorized("expired API key")
    return _principal(row)


def _principal(row: ApiKey) -> Principal:
    return Principal(
        name=row.name,
        role=row.role,
        key_id=row.id,
        # None is "every dataset"; an empty list (never written now) is no dataset at all.
        datasets=None if row.datasets is None else frozenset(row.datasets),
    )


def require(principal: Principal, roles: Sequence[str], dataset: str | None = None) -> None:
    """Refuse unless the principal has one of ``roles`` (and, if given, may use ``dataset``).

    Raises:
        Forbidden: wrong role, or a dataset the key does not name.
    """
    if principal.role != "admin" and principal.role not in roles:
        raise Forbidden(f"the {principal.role} role may not do this")
    if dataset is not None and not principal.may_use_dataset(dataset):
        raise Forbidden(f"this key is not allowed to use dataset {dataset!r}")
