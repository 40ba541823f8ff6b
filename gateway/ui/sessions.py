"""Console sessions: an API key exchanged for a random token kept in a cookie."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, delete, select

from gateway.db import unit_of_work
from gateway.errors import Unauthorized
from gateway.keys import Principal, admin_key_id, authenticate, principal_of_key
from gateway.models import UiSession, as_utc, utcnow

COOKIE = "datagate_session"
# Live sessions one key may hold: signing in again ends its oldest, so no key (however often it
# signs in) grows the table beyond this.
SESSIONS_PER_KEY = 10


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    """A live session: who, and the token its forms must carry."""

    principal: Principal
    csrf: str
    session_id: str


def sign_in(engine: Engine, key: str, admin_key: str | None, hours: float) -> tuple[str, Principal]:
    """A new session for ``key``; returns the cookie's token and who it is.

    Raises:
        Unauthorized: an unknown, revoked or expired key.
    """
    principal = authenticate(engine, f"Bearer {key.strip()}", admin_key)
    token = secrets.token_urlsafe(32)
    now = utcnow()
    # DATAGATE_ADMIN_KEY's sessions name the key they signed in with: changing it ends them.
    key_id = principal.key_id or admin_key_id(key.strip())
    same_key = col(UiSession.key_id) == key_id
    with unit_of_work(engine) as session:
        session.exec(delete(UiSession).where(col(UiSession.expires_at) <= now))
        kept = session.exec(
            select(UiSession.id)
            .where(same_key)
            .order_by(col(UiSession.created_at).desc(), col(UiSession.id))
            .limit(SESSIONS_PER_KEY - 1)
        ).all()
        session.exec(delete(UiSession).where(same_key, col(UiSession.id).not_in(kept)))
        session.add(
            UiSession(
                id=_digest(token),
                key_id=key_id,
                csrf=secrets.token_urlsafe(32),
                created_at=now,
                expires_at=now + timedelta(hours=hours),
            )
        )
    return token, principal


def current(engine: Engine, token: str | None, admin_key: str | None) -> SignedIn | None:
    """The session behind a cookie's token, if it is live and its key still valid."""
    if not token:
        return None
    with Session(engine) as session:
        row = session.get(UiSession, _digest(token))
    if row is None or as_utc(row.expires_at) <= utcnow():
        return None
    try:
        principal = principal_of_key(engine, row.key_id, admin_key)
    except Unauthorized:
        return None
    return SignedIn(principal, row.csrf, row.id)


def sign_out(engine: Engine, signed_in: SignedIn) -> None:
    """End the session."""
    with unit_of_work(engine) as session:
        session.exec(delete(UiSession).where(col(UiSession.id) == signed_in.session_id))


def same_token(sent: str | None, expected: str | None) -> bool:
    """A form's CSRF token matches (compared in constant time)."""
    return bool(sent) and bool(expected) and hmac.compare_digest(str(sent), str(expected))


def active_sessions(engine: Engine) -> int:
    """Live sessions (for tests and health)."""
    with Session(engine) as session:
        return len(
            session.exec(select(UiSession.id).where(col(UiSession.expires_at) > utcnow())).all()
        )
