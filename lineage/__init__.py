"""OpenLineage events for Datagate. A library: no settings, no database, never imports gateway."""

from lineage.events import (
    PRODUCER,
    AssertionResult,
    DatasetRef,
    IngestJob,
    SchemaField,
    StoredOutput,
    event_to_dict,
    ingest_complete,
    ingest_fail,
    ingest_start,
)
from lineage.transport import configured_client, describe_transport

__all__ = [
    "PRODUCER",
    "AssertionResult",
    "DatasetRef",
    "IngestJob",
    "SchemaField",
    "StoredOutput",
    "configured_client",
    "describe_transport",
    "event_to_dict",
    "ingest_complete",
    "ingest_fail",
    "ingest_start",
]
