"""Training runs: a pipeline reports which dataset versions a model version was trained on."""

from __future__ import annotations

from dataclasses import dataclass

from openlineage.client.event_v2 import RunState
from openlineage.client.uuid import generate_new_uuid
from sqlmodel import select

from gateway.db import unit_of_work
from gateway.errors import InvalidRequest
from gateway.keys import Principal
from gateway.lineage_policy import check_training_run
from gateway.models import LineageEvent, utcnow
from gateway.outbox import store_event
from gateway.services import Services
from lineage import DatasetVersionRef, TrainingJob, training_event

STATES = {"START": RunState.START, "COMPLETE": RunState.COMPLETE, "FAIL": RunState.FAIL}


@dataclass(frozen=True)
class TrainingReport:
    """What a training pipeline reported, already parsed."""

    model: str
    model_version: str
    inputs: tuple[tuple[str, int], ...]
    job_namespace: str | None = None
    job_name: str | None = None
    status: str | None = None
    run_id: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    metrics: tuple[tuple[str, float], ...] = ()
    error: str | None = None


def _started(services: Services, run_id: str) -> bool:
    with unit_of_work(services.engine) as session:
        return (
            session.exec(
                select(LineageEvent.id).where(
                    LineageEvent.run_id == run_id, LineageEvent.event_type == "START"
                )
            ).first()
            is not None
        )


def report_training(
    services: Services,
    report: TrainingReport,
    principal: Principal,
    request_id: str | None = None,
) -> tuple[str, list[str]]:
    """Store (and queue for delivery) the training run's events; returns run id and states.

    With no status the run is reported whole (START then COMPLETE). ``START`` opens a run;
    ``COMPLETE`` or ``FAIL`` with its ``run_id`` closes it.

    Raises:
        UnknownDatasetVersion: an input names a dataset version Datagate does not hold.
        Forbidden: an input the key may not use, or an ``ingest.*`` job of the gateway's.
        Conflict: the run id belongs to another job.
        InvalidRequest: an unknown status, or a run id that was never started.
    """
    if not report.inputs:
        raise InvalidRequest("a training run needs at least one input dataset version")
    namespace = report.job_namespace or services.settings.namespace
    job_name = report.job_name or f"train.{report.model}"
    with unit_of_work(services.engine) as session:
        check_training_run(
            session,
            principal,
            report.inputs,
            report.run_id,
            namespace,
            job_name,
            services.settings.namespace,
        )
    if report.status is not None and report.status not in STATES:
        raise InvalidRequest(f"status must be one of {', '.join(STATES)}")
    if (
        report.status in ("COMPLETE", "FAIL")
        and report.run_id
        and not _started(services, report.run_id)
    ):
        raise InvalidRequest(f"training run {report.run_id!r} was never started")
    run_id = report.run_id or str(generate_new_uuid())
    states = ["START", "COMPLETE"] if report.status is None else [report.status]
    if report.status in ("COMPLETE", "FAIL") and not report.run_id:
        states = ["START", report.status]
    job = TrainingJob(
        run_id=run_id,
        namespace=namespace,
        job_name=job_name,
        model=report.model,
        model_version=report.model_version,
        inputs=tuple(
            DatasetVersionRef(services.settings.namespace, d, v) for d, v in report.inputs
        ),
        parameters=report.parameters,
        metrics=report.metrics,
        request_id=request_id,
    )
    with unit_of_work(services.engine) as session:
        for state in states:
            store_event(session, training_event(job, STATES[state], utcnow(), report.error))
    services.lineage.notify()
    return run_id, states
