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

from gateway.db import unit_of_work
from gateway.errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from gateway.models import ApiKey, as_utc, utcnow

ROLES = ("admin", "producer", "consumer", "auditor")
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


def create_key(
    engine: Engine,
    role: str,
    name: str,
    datasets: Sequence[str] | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key and return it with its secret, which is never stored or shown again.

    Raises:
        InvalidRequest: unknown role, or dataset scoping on a role that takes none.
    """
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}")
    if datasets and role not in ("producer", "consumer"):
        raise InvalidRequest("only producer and consumer keys are limited to datasets")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=secrets.token_hex(8),
        key_hash=hash_key(secret),
        name=name,
        role=role,
        datasets=sorted(set(datasets)) if datasets else None,
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
    return Principal(
        name=row.name,
        role=row.role,
        key_id=row.id,
        datasets=frozenset(row.datasets) if row.datasets else None,
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
