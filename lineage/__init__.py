"""OpenLineage events for Datagate. A library: no settings, no database, never imports gateway."""

from lineage.events import (
    MODEL_NAMESPACE,
    PRODUCER,
    AssertionResult,
    ColumnMapping,
    ColumnMetrics,
    DatasetRef,
    DatasetVersionRef,
    IngestJob,
    InputMetrics,
    SchemaField,
    StoredOutput,
    TrainingJob,
    event_to_dict,
    ingest_complete,
    ingest_fail,
    ingest_start,
    training_event,
)
from lineage.transport import configured_client, describe_transport

__all__ = [
    "MODEL_NAMESPACE",
    "PRODUCER",
    "AssertionResult",
    "ColumnMapping",
    "ColumnMetrics",
    "DatasetRef",
    "DatasetVersionRef",
    "IngestJob",
    "InputMetrics",
    "SchemaField",
    "StoredOutput",
    "TrainingJob",
    "configured_client",
    "describe_transport",
    "event_to_dict",
    "ingest_complete",
    "ingest_fail",
    "ingest_start",
    "training_event",
]
