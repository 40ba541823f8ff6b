"""Typed response models: what a success answer holds, field by field, in the OpenAPI document.

Times are ISO 8601 with their UTC offset (``2026-11-29T21:19:19.441544+00:00``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

UtcTime = Annotated[
    AwareDatetime,
    PlainSerializer(lambda moment: moment.isoformat(), return_type=str, when_used="json"),
]


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class ContractRef(_Out):
    """The contract a version passed."""

    name: str
    version: str
    fingerprint: str


class SchemaField(_Out):
    """One column of a stored version."""

    name: str
    type: str = Field(description="The polars dtype.")


class VersionLinks(_Out):
    """Where to go from a version."""

    self_: str = Field(alias="self")
    data: str
    run: str


class VersionOut(_Out):
    """A stored, immutable dataset version: metadata only, never data, never a raw PII value."""

    dataset: str
    version: int
    content_hash: str = Field(description="SHA-256 of the stored data.")
    row_count: int
    byte_size: int
    schema_: list[SchemaField] = Field(alias="schema")
    contract: ContractRef
    source: str | None
    uploader: str = Field(description="The name of the key that uploaded it.")
    run_id: str
    validation: dict[str, Any] | None = Field(description="valid, checks_run, checks_failed…")
    pii: dict[str, Any] | None = Field(description="Per column: entity, action, counts.")
    created_at: UtcTime
    links: VersionLinks


class VersionList(_Out):
    """Every version of a dataset, oldest first."""

    dataset: str
    versions: list[VersionOut]


class DatasetContract(_Out):
    """The contract a dataset is governed by now."""

    name: str
    version: str
    fingerprint: str
    owner: str | None
    description: str | None


class DatasetLinks(_Out):
    """Where to go from a dataset."""

    versions: str


class DatasetOut(_Out):
    """A dataset with its contract (none when no contract is loaded for it) and latest version."""

    name: str
    contract: DatasetContract | None
    latest_version: VersionOut | None
    version_count: int
    created_at: UtcTime
    links: DatasetLinks


class DatasetList(_Out):
    """The datasets the key may see."""

    datasets: list[DatasetOut]


class RunLinks(_Out):
    """Where to go from a run."""

    version: str | None


class RunContract(_Out):
    """The contract a run was validated against (none before it was chosen)."""

    name: str | None
    version: str | None
    fingerprint: str | None


class RunOut(_Out):
    """One ingest run: its status, stage timings, reports and the version it produced."""

    id: str
    dataset: str
    status: str
    uploader: str
    source: str | None
    filename: str | None
    format: str | None
    bytes_received: int | None
    contract: RunContract
    version: int | None
    created_version: bool
    timings: dict[str, Any]
    validation_report: dict[str, Any] | None
    pii_report: dict[str, Any] | None
    error: dict[str, Any] | None
    started_at: UtcTime
    finished_at: UtcTime | None
    links: RunLinks
