"""The ingest pipeline: a Batch through every stage (``gateway.stages``), and the outcome
recorded on its run (``gateway.runs``): the version, or the rejection or failure, together with
the COMPLETE or FAIL event in one transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.context import IngestContext
from gateway.contracts import Contract
from gateway.errors import DatagateError, StageFailed, redacted_traceback
from gateway.models import DatasetVersion
from gateway.runs import fail_run, observe, record_progress, record_stage, shown_filename
from gateway.snapshots import drop_staged
from gateway.stages import (
    PART_STAGES,
    SPREAD_PART_STAGES,
    STAGES,
    Batch,
    checkpoint,
    open_upload,
)
from gateway.uploads import ReceivedUpload, UploadSpool
from lineage import IngestJob

if TYPE_CHECKING:
    from gateway.spread import Spread

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class IngestOutcome:
    """What an accepted upload produced: the version, and whether this upload created it."""

    run_id: str
    version: DatasetVersion
    created: bool
    # The rows a quarantining contract held back: batch id, rows, failing rows by check.
    quarantine: dict[str, Any] | None = None


def run_pipeline(
    services: IngestContext,
    job: IngestJob,
    contract: Contract,
    upload: ReceivedUpload,
    spool: UploadSpool,
    requested_format: str | None,
    uploader: str,
    *,
    followed: bool = False,
    spread: Spread | None = None,
) -> IngestOutcome:
    """Pass the upload, part by part, through the part stages, then through the finishing
    stages, and record the outcome (and, when the run is ``followed`` — asynchronous — each
    stage as it starts and the rows done after each part). A run ``spread`` over workers hands
    each validated part to them for redaction (``gateway.spread``).

    Raises:
        DatagateError: the upload was rejected or failed (already recorded on the run);
            an unexpected error is wrapped in StageFailed naming the stage.
    """
    batch = Batch(
        job=job,
        contract=contract,
        upload=upload,
        spool=spool,
        requested_format=requested_format,
        uploader=uploader,
        filename=shown_filename(services, contract, upload.filename),
    )
    entered: set[str] = set()

    def enter(name: str) -> None:
        # The first time a stage runs: the crash tests' checkpoint, and the run's stage.
        if name in entered:
            return
        entered.add(name)
        checkpoint(services, name)
        if followed:
            record_stage(services, job.run_id, name)

    def timed(name: str, step: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return step()
        except DatagateError:
            raise
        except Exception as exc:
            raise StageFailed(name, exc) from exc
        finally:
            batch.timings[name] = batch.timings.get(name, 0.0) + time.perf_counter() - started

    try:
        enter("parse")
        batch, reader = timed("parse", lambda: open_upload(batch, services))
        parts = batch.require_parts()
        part_stages = PART_STAGES
        while (frame := timed("parse", lambda: next(reader, None))) is not None:
            if spread is not None and parts.count == 0:  # spread it, if it is worth it
                if spread.worth(frame):
                    spread.memo, spread.spool = parts.memo, spool
                    spread.start()
                    parts.spread, part_stages = spread, SPREAD_PART_STAGES
                else:
                    spread = None
            for name, step in part_stages:
                if parts.halted and name != "parse" and name != "validate":
                    break  # bound to be refused: the rest is read for the report only
                enter(name)
                frame = timed(name, partial(step, batch, frame, services))
            if followed:
                record_progress(services, job.run_id, parts.rows_read, parts.count)
        if followed:
            record_progress(services, job.run_id, parts.rows_read, parts.count, read=True)
        for name, stage in STAGES:
            enter(name)
            batch = timed(name, partial(stage, batch, services))
            if batch.refusal is not None:
                raise batch.refusal
    except DatagateError as error:
        if isinstance(error, StageFailed):
            cause = error.__cause__ or error
            log.error(
                "run %s failed in stage %s: %s", job.run_id, error.stage, redacted_traceback(cause)
            )
        fail_run(services, job, error, batch)
        raise
    finally:
        if not batch.created and batch.parts is not None:
            for part in batch.parts.staged:  # published ones were moved away: a no-op
                drop_staged(services.snapshots, part)
        if batch.parts is not None and batch.parts.holding is not None:
            batch.parts.holding.discard()  # stored ones were moved away: closes the file only
        if spread is not None:
            spread.close(recorded=batch.created)
    assert batch.version is not None
    held = batch.held_summary()
    outcome = "quarantined" if held is not None else "accepted" if batch.created else "matched"
    observe(job.dataset, outcome, batch)
    return IngestOutcome(
        run_id=job.run_id, version=batch.version, created=batch.created, quarantine=held
    )
