"""JSON representations of metadata rows, as the API returns them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.contracts import Contract
from gateway.graph import deletion_of
from gateway.models import Dataset, DatasetVersion, IngestPart, IngestRun
from gateway.stages import STAGE_NAMES

API = "/api/v1"


def version_url(dataset: str, number: int) -> str:
    """The URL path of one version."""
    return f"{API}/datasets/{dataset}/versions/{number}"


def version_view(dataset: str, version: DatasetVersion) -> dict[str, Any]:
    """A version's metadata: never data, never a raw PII value."""
    return {
        "dataset": dataset,
        "version": version.number,
        "content_hash": version.content_hash,
        "row_count": version.row_count,
        "byte_size": version.byte_size,
        "schema": version.schema_fields,
        "contract": {
            "name": version.contract_name,
            "version": version.contract_version,
            "fingerprint": version.contract_fingerprint,
        },
        "source": version.source,
        "uploader": version.uploader,
        "run_id": version.run_id,
        "validation": version.validation_summary,
        "pii": version.pii_summary,
        "created_at": version.created_at.isoformat(),
        "state": "live" if version.deleted_at is None else "deleted",
        "deleted": deletion_of(version),
        "hold": version.hold,
        "released": version.released,
        "drift": drift_summary(version),
        "links": {
            "self": version_url(dataset, version.number),
            "data": f"{version_url(dataset, version.number)}/data",
            "run": f"{API}/runs/{version.run_id}",
            "contract": f"{API}/contracts/{version.contract_name}/versions/"
            f"{version.contract_fingerprint}",
            "drift": f"{version_url(dataset, version.number)}/drift",
        },
    }


def drift_summary(version: DatasetVersion) -> dict[str, Any] | None:
    """A version's drift status, the columns that drifted, against which versions."""
    found = (version.drift or {}).get("report")
    if found is None:
        return None
    return {
        "status": found["status"],
        "drifted": sorted({c for comp in found["comparisons"] for c in comp["drifted"]}),
        "against": {comp["baseline"]: comp["version"] for comp in found["comparisons"]},
    }


def dataset_view(
    dataset: Dataset, contract: Contract | None, latest: DatasetVersion | None, count: int
) -> dict[str, Any]:
    """A dataset with its contract and latest version."""
    return {
        "name": dataset.name,
        "contract": None
        if contract is None
        else {
            "name": contract.dataset,
            "version": contract.version,
            "fingerprint": contract.fingerprint,
            "owner": contract.owner,
            "description": contract.description,
        },
        "latest_version": None if latest is None else version_view(dataset.name, latest),
        "version_count": count,
        "created_at": dataset.created_at.isoformat(),
        "links": {"versions": f"{API}/datasets/{dataset.name}/versions"},
    }


STAGE_ORDER = STAGE_NAMES


def _progress(run: IngestRun) -> dict[str, Any] | None:
    if run.stage is None and run.status != "queued":
        return None  # a synchronous run: answered whole, never followed
    done = STAGE_ORDER.index(run.stage) if run.stage in STAGE_ORDER else 0
    if run.status not in ("queued", "running") and run.error is None:
        done = len(STAGE_ORDER)
    return {
        "stages_done": done,
        "stages_total": len(STAGE_ORDER),
        "rows_done": run.rows_done,
        "rows_total": run.rows_total,
        "parts_done": run.parts_done,
    }


def run_view(run: IngestRun, parts: Sequence[IngestPart] = ()) -> dict[str, Any]:
    """An ingest run: status, timings per stage, reports and the resulting version; and the
    ``parts`` of one spread over workers, with the process that took each."""
    return {
        "id": run.id,
        "dataset": run.dataset,
        "status": run.status,
        "stage": run.stage,
        "progress": _progress(run),
        "parts": [
            {
                "index": part.index,
                "status": part.status,
                "rows": part.rows,
                "worker": part.instance,
                "taken": part.taken,
            }
            for part in parts
        ],
        "uploader": run.uploader,
        "source": run.source,
        "filename": run.filename,
        "format": run.format,
        "bytes_received": run.bytes_received,
        "contract": {
            "name": run.contract_name,
            "version": run.contract_version,
            "fingerprint": run.contract_fingerprint,
        },
        "version": run.version,
        "created_version": run.created_version,
        "timings": run.stage_timings or {},
        "validation_report": run.validation_report,
        "pii_report": run.pii_report,
        "error": run.error,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "kind": run.kind,
        "quarantine_id": run.quarantine_id,
        "links": {
            "version": version_url(run.dataset, run.version) if run.version else None,
            "quarantine": quarantine_url(run.quarantine_id) if run.quarantine_id else None,
        },
    }


def quarantine_url(batch_id: str) -> str:
    """The API path of a quarantine batch."""
    return f"/api/v1/quarantine/{batch_id}"
