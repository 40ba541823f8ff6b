"""The append-only, hash-chained audit trail: who did what to which target, and the outcome.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's own fields, so a
row changed or deleted behind Datagate's back breaks the chain at that point; ``verify`` finds
the first broken link. Entries never hold request bodies, so never raw PII.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, text
from sqlmodel import Session, col, select

from gateway.db import unit_of_work
from gateway.models import AuditEntry, as_utc, utcnow

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditRecord:
    """What one request did."""

    actor: str
    role: str | None
    action: str
    target: str | None
    dataset: str | None
    outcome: int
    request_id: str
    client: str | None


def entry_hash(prev_hash: str, seq: int, at: datetime, record: dict[str, Any]) -> str:
    """The chained hash of one entry."""
    canonical = json.dumps(
        {"prev": prev_hash, "seq": seq, "at": as_utc(at).isoformat(), **record},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _fields(entry: AuditEntry | AuditRecord) -> dict[str, Any]:
    return {
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "target": entry.target,
        "dataset": entry.dataset,
        "outcome": entry.outcome,
        "request_id": entry.request_id,
        "client": entry.client,
    }


def append(engine: Engine, record: AuditRecord) -> AuditEntry:
    """Append one entry, serialised with every other writer so the chain stays linear."""
    with unit_of_work(engine) as session:
        if engine.dialect.name == "postgresql":
            session.exec(text("SELECT pg_advisory_xact_lock(4242)"))  # type: ignore[call-overload]
        last = session.exec(
            select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(1)
        ).first()
        seq = 1 if last is None else last.seq + 1
        prev = GENESIS if last is None else last.hash
        at = utcnow()
        entry = AuditEntry(
            seq=seq,
            at=at,
            prev_hash=prev,
            hash=entry_hash(prev, seq, at, _fields(record)),
            **_fields(record),
        )
        session.add(entry)
    return entry


def verify(engine: Engine) -> dict[str, Any]:
    """Recompute the chain; report the first entry that was changed, or where one is missing."""
    checked = 0
    prev = GENESIS
    expected_seq = 1
    with Session(engine) as session:
        for entry in session.exec(select(AuditEntry).order_by(col(AuditEntry.seq))):
            if entry.seq != expected_seq:
                return {
                    "ok": False,
                    "checked": checked,
                    "broken_at": expected_seq,
                    "reason": "entry missing",
                }
            if entry.prev_hash != prev:
                return {
                    "ok": False,
                    "checked": checked,
                    "broken_at": entry.seq,
                    "reason": "link to previous entry broken",
                }
            if entry_hash(prev, entry.seq, entry.at, _fields(entry)) != entry.hash:
                return {
                    "ok": False,
                    "checked": checked,
                    "broken_at": entry.seq,
                    "reason": "entry changed",
                }
            prev = entry.hash
            expected_seq += 1
            checked += 1
    return {"ok": True, "checked": checked, "broken_at": None, "reason": None}


def search(
    session: Session,
    actor: str | None = None,
    action: str | None = None,
    dataset: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> tuple[list[AuditEntry], int]:
    """Entries matching every filter given, newest first, and how many match in all."""
    query = select(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(col(AuditEntry.action).contains(action))
    if dataset:
        query = query.where(AuditEntry.dataset == dataset)
    if since:
        query = query.where(col(AuditEntry.at) >= since)
    if until:
        query = query.where(col(AuditEntry.at) <= until)
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(col(AuditEntry.seq).desc()).limit(limit)).all()
    return list(rows), int(total)
