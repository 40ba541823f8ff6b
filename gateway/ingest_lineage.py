"""What an ingest tells OpenLineage: the stored output's schema, size and location, the
validation's assertions, the input's profile, column lineage and how personal data was handled.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gateway.context import IngestContext
from gateway.models import DatasetVersion
from gateway.profiling import profile_frame
from gateway.validation import ROW_PLACE
from lineage import (
    AssertionResult,
    ColumnMapping,
    ColumnMetrics,
    InputMetrics,
    SchemaField,
    StoredOutput,
)
from privacy import ColumnOutcome

if TYPE_CHECKING:
    from gateway.stages import Batch

log = logging.getLogger(__name__)
UNDECLARED_KEPT = "not declared by the contract; kept (extra_columns: keep)"


def pii_report(outcomes: tuple[ColumnOutcome, ...]) -> dict[str, Any]:
    """Per column: entity, action, method, counts and detection evidence. Never a value."""
    columns = []
    for o in outcomes:
        column: dict[str, Any] = {
            "column": o.column,
            "entity": o.entity or None,
            "action": o.action,
            "method": o.method,
            "values_redacted": o.values_redacted,
        }
        optional = {
            "justification": o.justification,
            "spans": o.spans or None,
            "sample_size": o.sample_size,
            "share": o.share,
            "score": o.score,
            "model": o.model,
        }
        column.update({k: v for k, v in optional.items() if v is not None})
        columns.append(column)
    return {"columns": columns}


def assertions(batch: Batch) -> list[AssertionResult]:
    if batch.report is None:
        return []
    return [
        AssertionResult(assertion=a["assertion"], success=a["success"], column=a["column"])
        for a in batch.report.assertions
    ]


def stored_output(
    batch: Batch, services: IngestContext, profile: InputMetrics | None
) -> StoredOutput:
    stored = batch.version
    assert stored is not None
    kept = set(batch.extra_columns()) if batch.contract.extra_columns == "keep" else set()
    return StoredOutput(
        version=stored.number,
        fields=[
            SchemaField(
                name=f["name"],
                type=f["type"],
                description=UNDECLARED_KEPT if f["name"] in kept else None,
            )
            for f in stored.schema_fields
        ],
        row_count=stored.row_count,
        size_bytes=stored.byte_size,
        storage_uri=services.snapshots.uri(stored.storage_key),
        assertions=assertions(batch),
        metrics=profile,
        columns=column_mappings(stored, batch.pii),
        pii=pii_report(batch.pii)["columns"],
        profile=(stored.drift or {}).get("profile"),
        drift=(stored.drift or {}).get("report"),
    )


def input_metrics(batch: Batch) -> InputMetrics | None:
    return batch.profile if batch.profile is not None else upload_profile(batch)


def upload_profile(batch: Batch, *, staged: bool = False) -> InputMetrics | None:
    """Row count, bytes received, and each column's null and distinct counts of the rows
    read. Distinct counts are exact when the upload was one part, else estimated from the
    sketch of every part (``DistinctSketch``); until the version is ``staged`` only rows and
    bytes are given."""
    parts = batch.parts
    if parts is None or parts.count == 0:
        return None
    if parts.only is not None:
        return profile_frame(parts.only.drop(ROW_PLACE, strict=False), batch.upload.size)
    metrics = InputMetrics(row_count=parts.rows_read, size_bytes=batch.upload.size)
    if not staged:
        return metrics
    counted = parts.distinct.estimates()
    return replace(
        metrics,
        columns=[
            ColumnMetrics(column=c, nulls=parts.nulls[c], distinct=d)
            for c, d in counted.items()
            if c in parts.nulls
        ],
    )


def column_mappings(
    stored: DatasetVersion, outcomes: tuple[ColumnOutcome, ...]
) -> list[ColumnMapping]:
    # Every stored column comes from the upload column of the same name; redacted ones say how.
    actions = {o.column: o.action for o in outcomes if o.action not in ("none", "warn")}
    return [
        ColumnMapping(column=f["name"], source_column=f["name"], action=actions.get(f["name"]))
        for f in stored.schema_fields
    ]
