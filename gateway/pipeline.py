"""The ingest pipeline: a Batch through every stage (``gateway.stages``), and the outcome
recorded on its run (``gateway.runs``): the version, or the rejection or failure, together with
the COMPLETE or FAIL event in one transaction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from gateway.contracts import Contract
from gateway.errors import DatagateError, StageFailed, redacted_traceback
from gateway.models import DatasetVersion
from gateway.runs import fail_run, observe, record_stage, shown_filename
from gateway.services import Services
from gateway.stages import STAGES, Batch, checkpoint
from gateway.uploads import ReceivedUpload, UploadSpool
from lineage import IngestJob

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestOutcome:
    """What an accepted upload produced: the version, and whether this upload created it."""

    run_id: str
    version: DatasetVersion
    created: bool


def run_pipeline(
    services: Services,
    job: IngestJob,
    contract: Contract,
    upload: ReceivedUpload,
    spool: UploadSpool,
    requested_format: str | None,
    uploader: str,
    *,
    followed: bool = False,
) -> IngestOutcome:
    """Pass the upload through every stage and record the outcome (and, when the run is
    ``followed`` — asynchronous — each stage as it starts).

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
    try:
        for name, stage in STAGES:
            checkpoint(services, name)
            if followed:
                rows = None if batch.frame is None else batch.frame.height
                record_stage(services, job.run_id, name, rows)
            started = time.perf_counter()
            try:
                batch = stage(batch, services)
            except DatagateError:
                raise
            except Exception as exc:
                raise StageFailed(name, exc) from exc
            finally:
                batch.timings[name] = time.perf_counter() - started
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
        if batch.snapshot is not None and not batch.created:
            services.snapshots.discard(batch.snapshot)
    assert batch.version is not None
    observe(job.dataset, "accepted" if batch.created else "matched", batch)
    return IngestOutcome(run_id=job.run_id, version=batch.version, created=batch.created)
