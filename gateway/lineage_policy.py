"""What a caller may write into the lineage graph.

The gateway's own namespace (its datasets and its ``ingest.*`` and ``train.*`` jobs) and the
``model`` datasets that training runs reported to Datagate produce are written by Datagate
alone: an event posted from outside may read Datagate's datasets — only those its key may use,
and only versions that exist — but may not run a job in that namespace, write a dataset there,
or write a model that Datagate's training runs produce. (A model only ever produced by an
external job stays the producers' own, so provenance still follows external pipelines.) A run
id belongs to one job: an event or training report that reuses another job's run id is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import Session, select

from gateway.errors import Conflict, Forbidden, UnknownDatasetVersion
from gateway.keys import Principal
from gateway.models import Dataset, DatasetVersion, LineageEdge, LineageEvent
from gateway.outbox import DATAGATE, node_id
from lineage import MODEL_NAMESPACE


def _check_run_owner(session: Session, run_id: str | None, namespace: str, name: str) -> None:
    if not run_id:
        return
    owners = session.exec(
        select(LineageEvent.job_namespace, LineageEvent.job_name)
        .where(LineageEvent.run_id == run_id)
        .distinct()
    ).all()
    if any((ns, job) != (namespace, name) for ns, job in owners):
        raise Conflict(f"run id {run_id} already belongs to another job; use a new run id")


def _trained_by_datagate(session: Session, model: str) -> bool:
    return (
        session.exec(
            select(LineageEdge.id)
            .join(LineageEvent, LineageEvent.id == LineageEdge.event_id)  # type: ignore[arg-type]
            .where(
                LineageEdge.dataset == node_id("dataset", MODEL_NAMESPACE, model),
                LineageEdge.direction == "out",
                LineageEvent.origin == DATAGATE,
            )
            .limit(1)
        ).first()
        is not None
    )


def check_inputs(
    session: Session, principal: Principal, inputs: Iterable[tuple[str, int | None]]
) -> None:
    """Every Datagate dataset read must be one the key may use, at a version that exists.

    Raises:
        Forbidden: a dataset outside the key's scope.
        UnknownDatasetVersion: a version Datagate does not hold.
    """
    wanted = list(inputs)
    outside = sorted({d for d, _ in wanted if not principal.may_use_dataset(d)})
    if outside:
        raise Forbidden(f"this key may not use dataset(s) {', '.join(outside)}")
    versions = [(d, v) for d, v in wanted if v is not None]
    if not versions:
        return
    known = set(
        session.exec(
            select(Dataset.name, DatasetVersion.number).where(
                DatasetVersion.dataset_id == Dataset.id,
                Dataset.name.in_({d for d, _ in versions}),  # type: ignore[attr-defined]
            )
        ).all()
    )
    unknown = [f"{d} v{v}" for d, v in versions if (d, v) not in known]
    if unknown:
        raise UnknownDatasetVersion(
            f"unknown dataset version(s): {', '.join(unknown[:20])}", unknown=unknown[:100]
        )


def _version(dataset: dict[str, Any]) -> int | None:
    version = ((dataset.get("facets") or {}).get("version") or {}).get("datasetVersion")
    if version is None:
        return None
    text = str(version)
    # A version Datagate never writes (not a number) is no version of its datasets: unknown.
    return int(text) if text.isdigit() and len(text) < 10 else -1


def check_external_event(
    session: Session, event: dict[str, Any], kind: str, principal: Principal, namespace: str
) -> None:
    """Refuse an external event that writes what only Datagate writes, reads beyond its key's
    datasets, or reuses another job's run id.

    Raises:
        Forbidden: a job in the gateway's namespace, an output (or DatasetEvent) in it, a
            model Datagate's training runs produce, or an input dataset outside the key's scope.
        UnknownDatasetVersion: an input version of a Datagate dataset that does not exist.
        Conflict: the run id belongs to another job.
    """
    job = event.get("job") or {}
    if job.get("namespace") == namespace:
        raise Forbidden(
            f"jobs in namespace {namespace!r} are Datagate's own (ingests and training runs); "
            "report training through /api/v1/training-runs"
        )
    written = list(event.get("outputs") or [])
    if kind == "DatasetEvent":
        written.append(event.get("dataset") or {})
    for dataset in written:
        if dataset.get("namespace") == namespace:
            raise Forbidden(
                f"datasets in namespace {namespace!r} are written by Datagate's ingests only"
            )
        if dataset.get("namespace") == MODEL_NAMESPACE and _trained_by_datagate(
            session, str(dataset.get("name"))
        ):
            raise Forbidden(
                f"model {str(dataset.get('name'))[:200]!r} is produced by training runs reported "
                "to Datagate; report it through /api/v1/training-runs"
            )
    check_inputs(
        session,
        principal,
        [
            (str(d.get("name")), _version(d))
            for d in event.get("inputs") or []
            if d.get("namespace") == namespace
        ],
    )
    if kind == "RunEvent":
        _check_run_owner(
            session,
            (event.get("run") or {}).get("runId"),
            str(job.get("namespace")),
            str(job.get("name")),
        )


def check_training_run(
    session: Session,
    principal: Principal,
    inputs: Iterable[tuple[str, int]],
    run_id: str | None,
    job_namespace: str,
    job_name: str,
    namespace: str,
) -> None:
    """A training report reads only datasets its key may use, runs no ``ingest.*`` job of the
    gateway's, and reuses no other job's run id.

    Raises:
        Forbidden: an input outside the key's scope, or an ingest job name.
        UnknownDatasetVersion: an input version Datagate does not hold.
        Conflict: the run id belongs to another job.
    """
    if job_namespace == namespace and job_name.startswith("ingest."):
        raise Forbidden("ingest.* jobs are Datagate's own; name the training job otherwise")
    check_inputs(session, principal, inputs)
    _check_run_owner(session, run_id, job_namespace, job_name)
