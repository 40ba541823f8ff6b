"""A queued upload's staging area in the snapshot store: ``_uploads/<run>/`` holds the bytes
as sent, sealed under a key derived for the run (``gateway.sealed``), the order naming how to
read them, and, for a run spread over workers, its parts (``gateway.spread``). Whatever the
outcome, the run's worker removes it; recovery removes what a dead one left.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.sealed import run_key, seal

if TYPE_CHECKING:
    from gateway.context import IngestContext

log = logging.getLogger(__name__)

STAGING_PREFIX = "_uploads"  # dataset names start with a letter: never a dataset's folder
MAX_ATTEMPTS = 3


def upload_key(run_id: str) -> str:
    """Where a queued run's upload waits, as sent."""
    return f"{STAGING_PREFIX}/{run_id}/upload"


def order_key(run_id: str) -> str:
    """Where a queued run's order waits."""
    return f"{STAGING_PREFIX}/{run_id}/order.json"


@dataclass(frozen=True)
class IngestOrder:
    """How to read a staged upload: what the client said of it (the file name with its PII
    already replaced) and the format it asked for."""

    run_id: str
    size: int
    filename: str | None
    content_type: str | None
    requested_format: str | None
    uploader: str
    request_id: str | None
    attempts: int = 1  # a worker that dies mid-ingest gets its run queued again (recovery)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> IngestOrder:
        return cls(**json.loads(data))


def stage_upload(
    services: IngestContext, order: IngestOrder, upload: Path, *, sealed: bool = False
) -> None:
    """Put the upload, sealed (already, when ``sealed``: under the run's key as it was
    received), and its order where any worker can read them."""
    if sealed:
        services.snapshots.put_file(upload_key(order.run_id), upload)
    else:
        target = upload.with_name(f"{upload.name}.sealed")
        try:
            seal(upload, target, run_key(services.redaction_key, order.run_id))
            services.snapshots.put_file(upload_key(order.run_id), target)
        finally:
            target.unlink(missing_ok=True)
    services.snapshots.put_bytes(order_key(order.run_id), order.to_json())


def discard_staged(services: IngestContext, run_id: str) -> None:
    """Remove a run's staged upload, its order and what its parts left there."""
    keys = set(services.snapshots.keys(f"{STAGING_PREFIX}/{run_id}/"))
    for key in sorted(keys | {upload_key(run_id), order_key(run_id)}):
        try:
            services.snapshots.delete(key)
        except Exception as exc:  # recovery sweeps what is left of finished runs
            log.warning("could not remove %s: %s", key, type(exc).__name__)
