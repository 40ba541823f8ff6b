"""The append-only audit trail: who did what to which target, and the outcome.

Each entry carries an HMAC-SHA256, under a secret key the database does not hold, over the
previous entry's MAC and the entry's own fields: a row changed, inserted or deleted behind
Datagate's back breaks the chain at that point, and nobody without the key can recompute it.
After every append the process writes a signed *checkpoint* of the chain head (sequence number
and MAC) to the snapshot store, outside the database: deleting the newest entries, or every
entry, leaves the chain shorter than its checkpoint, which ``verify`` reports. An operator can
also keep a head printed by ``datagate audit verify`` and pass it back with ``--expect``.

Entries never hold request bodies, so never raw PII. Refused anonymous requests are bounded:
at most ``anonymous_per_minute`` entries per client address and minute, the rest counted into
one entry when the minute is over.

Entries written before the chain was keyed (plain SHA-256) still verify, but only as a prefix:
once a keyed entry appears, every later entry must be keyed too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine, func, text
from sqlmodel import Session, col, select

from gateway.db import unit_of_work
from gateway.models import AuditEntry, as_utc, utcnow

log = logging.getLogger(__name__)

GENESIS = "0" * 64
CHECKPOINTS = ".audit/heads/"
SUPPRESSED_ACTION = "refused anonymous requests (counted)"
# Clients tracked at once by the anonymous throttle; beyond that they share one bucket.
MAX_TRACKED_CLIENTS = 10_000
SHARED_BUCKET = "*"
_PG_APPEND_LOCK = 4242


@dataclass(frozen=True)
class AuditRecord:
    """What one request did (``count`` > 1: that many refused requests, counted into one)."""

    actor: str
    role: str | None
    action: str
    target: str | None
    dataset: str | None
    outcome: int
    request_id: str
    client: str | None
    count: int = 1


class CheckpointStore(Protocol):
    """Where signed chain heads are kept (the snapshot store)."""

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key``, replacing it atomically."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The bytes under ``key``."""
        ...

    def keys(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix``."""
        ...


def _canonical(values: dict[str, Any]) -> bytes:
    return json.dumps(values, sort_keys=True, separators=(",", ":")).encode()


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


def entry_mac(
    key: bytes, prev: str, seq: int, at: datetime, entry: AuditEntry | AuditRecord
) -> str:
    """The keyed, chained MAC of one entry."""
    values = {"prev": prev, "seq": seq, "at": as_utc(at).isoformat(), "count": entry.count}
    values.update(_fields(entry))
    return hmac.new(key, _canonical(values), hashlib.sha256).hexdigest()


def legacy_entry_hash(prev: str, seq: int, at: datetime, entry: AuditEntry | AuditRecord) -> str:
    """The unkeyed SHA-256 of entries written before the chain was keyed."""
    values = {"prev": prev, "seq": seq, "at": as_utc(at).isoformat(), **_fields(entry)}
    return hashlib.sha256(_canonical(values)).hexdigest()


def _checkpoint_mac(key: bytes, body: dict[str, Any]) -> str:
    return hmac.new(key, b"checkpoint:" + _canonical(body), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Head:
    """An entry the chain must still hold: sequence number and MAC."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text_: str) -> Head:
        """``SEQ:HASH`` as printed by ``datagate audit verify``.

        Raises:
            ValueError: not of that shape.
        """
        seq, sep, digest = text_.partition(":")
        if not sep or not seq.isdigit() or len(digest) != 64:
            raise ValueError("expected SEQ:HASH, e.g. 1234:3f9a… (64 hex digits)")
        return cls(int(seq), digest.lower())

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


@dataclass
class _Window:
    started: float
    admitted: int = 0
    counted: int = 0
    outcome: int = 401


class AnonymousThrottle:
    """Admits ``limit`` audit entries per client and minute for refused anonymous requests;
    counts the rest, to be written as one entry per client once its minute is over."""

    def __init__(self, limit: int, window_seconds: float = 60.0) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def admit(self, client: str, outcome: int, now: float) -> bool:
        """Whether this refusal gets an entry of its own (else it is counted)."""
        with self._lock:
            if client not in self._windows and len(self._windows) >= MAX_TRACKED_CLIENTS:
                client = SHARED_BUCKET
            window = self._windows.get(client)
            if window is None:
                window = self._windows[client] = _Window(started=now)
            elif now - window.started >= self.window_seconds:
                # Over but not flushed (the database was unavailable): keep counting into it.
                window.started, window.admitted = now, 0
            if window.admitted < self.limit:
                window.admitted += 1
                return True
            window.counted += 1
            window.outcome = outcome
            return False

    def due(self, now: float, everything: bool = False) -> list[tuple[str, int, int]]:
        """(client, counted refusals, last outcome) of every minute that is over; forgotten."""
        with self._lock:
            over = [
                c
                for c, w in self._windows.items()
                if everything or now - w.started >= self.window_seconds
            ]
            due = [(c, self._windows[c].counted, self._windows[c].outcome) for c in over]
            for client in over:
                del self._windows[client]
        return [(client, counted, outcome) for client, counted, outcome in due if counted]


@dataclass
class AuditTrail:
    """Appends entries, keeps the signed checkpoint of the head, and verifies the chain."""

    engine: Engine
    key: bytes
    checkpoints: CheckpointStore | None = None
    writer: str = "shared"
    anonymous_per_minute: int = 20
    clock: Callable[[], float] = time.monotonic
    throttle: AnonymousThrottle = field(init=False)
    _checkpointed: int = field(default=0, init=False)
    _checkpoint_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.throttle = AnonymousThrottle(self.anonymous_per_minute)

    def record(self, record: AuditRecord, anonymous: bool = False) -> AuditEntry | None:
        """Append ``record`` (an anonymous refusal only while its client is under the limit),
        and any counted refusals whose minute is over."""
        self.flush(everything=False)
        if anonymous and not self.throttle.admit(
            record.client or "?", record.outcome, self.clock()
        ):
            return None
        return self.append(record)

    def flush(self, everything: bool = True) -> None:
        """Write the counted anonymous refusals (of minutes that are over, or all)."""
        for client, counted, outcome in self.throttle.due(self.clock(), everything):
            self.append(
                AuditRecord(
                    actor="anonymous",
                    role=None,
                    action=SUPPRESSED_ACTION,
                    target=None,
                    dataset=None,
                    outcome=outcome,
                    request_id=f"counted-{uuid.uuid4().hex}",
                    client=None if client == SHARED_BUCKET else client,
                    count=counted,
                )
            )

    def append(self, record: AuditRecord) -> AuditEntry:
        """Append one entry, serialised with every other writer so the chain stays linear."""
        with unit_of_work(self.engine) as session:
            if self.engine.dialect.name == "postgresql":
                session.exec(text(f"SELECT pg_advisory_xact_lock({_PG_APPEND_LOCK})"))  # type: ignore[call-overload]
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
                hash=entry_mac(self.key, prev, seq, at, record),
                count=record.count,
                **_fields(record),
            )
            session.add(entry)
        self._checkpoint(Head(entry.seq, entry.hash))
        return entry

    def _checkpoint(self, head: Head) -> None:
        if self.checkpoints is None:
            return
        with self._checkpoint_lock:
            if head.seq <= self._checkpointed:
                return  # a later head of this process is already written
            body = {"seq": head.seq, "hash": head.hash, "writer": self.writer}
            signed = {**body, "at": utcnow().isoformat(), "mac": _checkpoint_mac(self.key, body)}
            try:
                self.checkpoints.put_bytes(f"{CHECKPOINTS}{self.writer}.json", _canonical(signed))
            except Exception as exc:
                log.error("audit checkpoint %d not written: %s", head.seq, type(exc).__name__)
                return
            self._checkpointed = head.seq

    def newest_checkpoint(self) -> tuple[Head | None, list[str]]:
        """The highest signed head in the store, and the checkpoints that are not genuine."""
        if self.checkpoints is None:
            return None, []
        best: Head | None = None
        forged: list[str] = []
        for key in self.checkpoints.keys(CHECKPOINTS):
            try:
                signed = json.loads(self.checkpoints.get_bytes(key))
                body = {k: signed[k] for k in ("seq", "hash", "writer")}
                genuine = hmac.compare_digest(str(signed["mac"]), _checkpoint_mac(self.key, body))
            except (ValueError, KeyError, TypeError):
                genuine = False
            if not genuine:
                forged.append(key)
                continue
            if best is None or int(body["seq"]) > best.seq:
                best = Head(int(body["seq"]), str(body["hash"]))
        return best, forged

    def verify(self, expect: Head | None = None) -> dict[str, Any]:
        """Recompute the chain; report the first entry changed or missing, and whether it still
        reaches its newest signed checkpoint (and ``expect``, if given)."""
        checkpoint, forged = self.newest_checkpoint()
        result = self._walk(required=[h for h in (checkpoint, expect) if h is not None])
        result["checkpoint"] = None if checkpoint is None else str(checkpoint)
        if result["ok"] and forged:
            result.update(ok=False, reason=f"checkpoint not signed with the audit key: {forged[0]}")
        return result

    def _walk(self, required: list[Head]) -> dict[str, Any]:
        checked = 0
        prev = GENESIS
        keyed = False
        seen: dict[int, str] = {}
        wanted = {h.seq for h in required}

        def broken(at: int, reason: str) -> dict[str, Any]:
            return {
                "ok": False,
                "checked": checked,
                "broken_at": at,
                "reason": reason,
                "head": None,
            }

        with Session(self.engine) as session:
            for entry in session.exec(select(AuditEntry).order_by(col(AuditEntry.seq))):
                if entry.seq != checked + 1:
                    return broken(checked + 1, "entry missing")
                if entry.prev_hash != prev:
                    return broken(entry.seq, "link to previous entry broken")
                if hmac.compare_digest(
                    entry.hash, entry_mac(self.key, prev, entry.seq, entry.at, entry)
                ):
                    keyed = True
                elif keyed or entry.hash != legacy_entry_hash(prev, entry.seq, entry.at, entry):
                    return broken(entry.seq, "entry changed")
                if entry.seq in wanted:
                    seen[entry.seq] = entry.hash
                prev = entry.hash
                checked += 1
        for head in required:
            if head.seq > checked:
                return broken(
                    checked + 1,
                    f"entries missing: the trail ends at {checked}, but entry {head.seq} "
                    "was recorded (checkpoint or --expect)",
                )
            if seen.get(head.seq) != head.hash:
                return broken(head.seq, f"entry {head.seq} differs from its recorded head")
        newest = str(Head(checked, prev)) if checked else None
        return {"ok": True, "checked": checked, "broken_at": None, "reason": None, "head": newest}


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
