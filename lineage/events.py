"""Build the OpenLineage run events of an ingest (job ``ingest.<dataset>``) from plain data."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openlineage.client.event_v2 import (
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
)
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    data_quality_assertions_dataset,
    data_quality_metrics_dataset,
    data_quality_metrics_input_dataset,
    dataset_type_dataset,
    dataset_version_dataset,
    datasource_dataset,
    error_message_run,
    execution_parameters_run,
    job_type_job,
    lifecycle_state_change_dataset,
    output_statistics_output_dataset,
    ownership_dataset,
    schema_dataset,
)
from openlineage.client.serde import Serde

PRODUCER = "https://github.com/datagate/datagate/tree/0.1.0"


@dataclass(frozen=True)
class DatasetRef:
    """An OpenLineage dataset identity."""

    namespace: str
    name: str


@dataclass(frozen=True)
class SchemaField:
    """One column of a dataset schema."""

    name: str
    type: str
    description: str | None = None


@dataclass(frozen=True)
class AssertionResult:
    """One contract check and whether the upload passed it."""

    assertion: str
    success: bool
    column: str | None = None


@dataclass(frozen=True)
class IngestJob:
    """What is known about an ingest when it starts."""

    run_id: str
    namespace: str
    dataset: str
    source: DatasetRef
    owner: str | None = None
    # The HTTP request that carried the upload (X-Request-ID), to join events with logs.
    request_id: str | None = None
    # "ingest", or "replay" / "correction" of a quarantine batch.
    kind: str = "ingest"

    @property
    def job_name(self) -> str:
        """The OpenLineage job name of this dataset's ingests (replays, corrections)."""
        return f"{self.kind}.{self.dataset}"


@dataclass(frozen=True)
class ColumnMetrics:
    """Null and distinct counts of one column of the evaluated upload."""

    column: str
    nulls: int
    distinct: int


@dataclass(frozen=True)
class InputMetrics:
    """What was measured on the upload: rows, bytes, per-column counts."""

    row_count: int
    size_bytes: int
    columns: Sequence[ColumnMetrics] = ()


@dataclass(frozen=True)
class ColumnMapping:
    """A stored column and the upload column it came from; ``action`` set when redacted."""

    column: str
    source_column: str
    action: str | None = None


PII_FACET = "datagate_pii"
PII_FACET_SCHEMA = f"{PRODUCER}/spec/facets/PiiDatasetFacet.json"
REQUEST_FACET = "datagate_request"
REQUEST_FACET_SCHEMA = f"{PRODUCER}/spec/facets/RequestRunFacet.json"


@dataclass(frozen=True)
class StoredOutput:
    """The dataset version an accepted ingest produced."""

    version: int
    fields: Sequence[SchemaField]
    row_count: int
    size_bytes: int
    storage_uri: str
    assertions: Sequence[AssertionResult] = field(default_factory=tuple)
    metrics: InputMetrics | None = None
    columns: Sequence[ColumnMapping] = field(default_factory=tuple)
    pii: Sequence[dict[str, Any]] = field(default_factory=tuple)
    # The stored data's profile (``gateway.drift``) and its drift report, if measured.
    profile: dict[str, Any] | None = None
    drift: dict[str, Any] | None = None


DRIFT_FACET = "datagate_drift"
DRIFT_FACET_SCHEMA = f"{PRODUCER}/spec/facets/DriftDatasetFacet.json"
_DRIFT_FIGURES = ("psi", "ks", "wasserstein", "jensen_shannon", "null_rate", "distinct")


def _quality_facet(output: StoredOutput) -> Any:
    """The stored data's metrics (OpenLineage data-quality metrics): nulls, distinct values,
    count, and for numeric columns min, max and quartiles, from its drift profile."""
    metrics = data_quality_metrics_dataset
    assert output.profile is not None
    columns = {}
    for name, entry in output.profile.get("columns", {}).items():
        quantiles = entry.get("quantiles")
        numeric: dict[str, Any] = {}
        if quantiles:
            numeric = {
                "min": quantiles[0],
                "max": quantiles[-1],
                "quantiles": {str(q): quantiles[round(q * 100)] for q in (0.25, 0.5, 0.75)},
            }
        columns[name] = metrics.ColumnMetrics(
            nullCount=entry.get("nulls"),
            distinctCount=entry.get("distinct"),
            count=float(output.row_count - (entry.get("nulls") or 0)),
            **numeric,
        )
    return metrics.DataQualityMetricsDatasetFacet(
        columnMetrics=columns, rowCount=output.row_count, bytes=output.size_bytes, producer=PRODUCER
    )


def _drift_facet(drift: dict[str, Any]) -> dict[str, Any]:
    return {
        "_producer": PRODUCER,
        "_schemaURL": DRIFT_FACET_SCHEMA,
        "status": drift["status"],
        "comparisons": [
            {
                "baseline": c["baseline"],
                "version": str(c["version"]),
                "drifted": c["drifted"],
                "columns": [
                    {
                        "column": col["column"],
                        **{k: col[k] for k in _DRIFT_FIGURES if col.get(k) is not None},
                        "drifted": col["drifted"],
                    }
                    for col in c["columns"]
                ],
            }
            for c in drift["comparisons"]
        ],
    }


QUARANTINE_FACET = "datagate_quarantine"
QUARANTINE_FACET_SCHEMA = f"{PRODUCER}/spec/facets/QuarantineDatasetFacet.json"


@dataclass(frozen=True)
class HeldOutput:
    """Rows an ingest held back for review (a quarantine batch): counts, never a value."""

    batch_id: str
    rows: int
    # Failing rows per check: {"column", "check", "rows"}.
    failures: Sequence[dict[str, Any]] = ()


def quarantine_dataset(dataset: str) -> str:
    """The OpenLineage dataset name of a dataset's held rows."""
    return f"{dataset}.quarantine"


def _held_facets(held: HeldOutput) -> dict[str, Any]:
    return {
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=held.batch_id, producer=PRODUCER
        ),
        "dataQualityAssertions": data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
            assertions=[
                data_quality_assertions_dataset.Assertion(
                    assertion=str(f["check"]), success=False, column=f.get("column")
                )
                for f in held.failures
            ],
            producer=PRODUCER,
        ),
        QUARANTINE_FACET: {
            "_producer": PRODUCER,
            "_schemaURL": QUARANTINE_FACET_SCHEMA,
            "batchId": held.batch_id,
            "rows": held.rows,
            "failures": [dict(f) for f in held.failures],
        },
    }


def _held_output(job: IngestJob, held: HeldOutput) -> OutputDataset:
    return OutputDataset(
        namespace=job.namespace,
        name=quarantine_dataset(job.dataset),
        facets=_held_facets(held),
        outputFacets={
            "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=held.rows, producer=PRODUCER
            )
        },
    )


def _job(job: IngestJob | LifecycleJob) -> Job:
    return Job(
        namespace=job.namespace,
        name=job.job_name,
        facets={
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH",
                integration="DATAGATE",
                jobType=job.kind.upper(),
                producer=PRODUCER,
            )
        },
    )


def _metrics_facet(metrics: InputMetrics) -> Any:
    facet = data_quality_metrics_input_dataset
    return facet.DataQualityMetricsInputDatasetFacet(
        rowCount=metrics.row_count,
        bytes=metrics.size_bytes,
        columnMetrics={
            c.column: facet.ColumnMetrics(nullCount=c.nulls, distinctCount=c.distinct)
            for c in metrics.columns
        },
        producer=PRODUCER,
    )


def _column_lineage(job: IngestJob, columns: Sequence[ColumnMapping]) -> Any:
    lineage = column_lineage_dataset
    fields = {}
    for mapping in columns:
        masked = mapping.action is not None and mapping.action != "keep"
        transformation = lineage.Transformation(
            type="DIRECT",
            subtype="TRANSFORMATION" if mapping.action else "IDENTITY",
            description=f"redact: {mapping.action}" if mapping.action else "",
            masking=masked,
        )
        fields[mapping.column] = lineage.Fields(
            inputFields=[
                lineage.InputField(
                    namespace=job.source.namespace,
                    name=job.source.name,
                    field=mapping.source_column,
                    transformations=[transformation],
                )
            ],
            # The older form, which Marquez reads.
            transformationType="MASKED" if masked else "IDENTITY",
            transformationDescription=transformation.description,
        )
    return lineage.ColumnLineageDatasetFacet(fields=fields, producer=PRODUCER)


def _input(
    job: IngestJob, assertions: Sequence[AssertionResult], metrics: InputMetrics | None = None
) -> InputDataset:
    input_facets: dict[str, Any] = {}
    if metrics is not None:
        input_facets["dataQualityMetrics"] = _metrics_facet(metrics)
    if assertions:
        input_facets["dataQualityAssertions"] = (
            data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
                assertions=[
                    data_quality_assertions_dataset.Assertion(
                        assertion=a.assertion, success=a.success, column=a.column
                    )
                    for a in assertions
                ],
                producer=PRODUCER,
            )
        )
    return InputDataset(
        namespace=job.source.namespace, name=job.source.name, inputFacets=input_facets or None
    )


def _request_facet(request_id: str | None) -> dict[str, Any]:
    """The ``datagate_request`` run facet: the HTTP request (X-Request-ID) behind the event."""
    if not request_id:
        return {}
    return {
        REQUEST_FACET: {
            "_producer": PRODUCER,
            "_schemaURL": REQUEST_FACET_SCHEMA,
            "requestId": request_id,
        }
    }


def _event(
    state: RunState,
    job: IngestJob,
    at: datetime,
    inputs: list[InputDataset],
    outputs: list[OutputDataset],
    run_facets: dict[str, Any] | None = None,
) -> RunEvent:
    facets = {**(run_facets or {}), **_request_facet(job.request_id)}
    return RunEvent(
        eventType=state,
        eventTime=at.isoformat(),
        run=Run(runId=job.run_id, facets=facets),
        job=_job(job),
        producer=PRODUCER,
        inputs=inputs,
        outputs=outputs,
    )


def ingest_start(job: IngestJob, at: datetime) -> RunEvent:
    """The START event: the job, its run and where the data comes from."""
    return _event(RunState.START, job, at, [_input(job, ())], [])


def ingest_complete(
    job: IngestJob,
    at: datetime,
    output: StoredOutput,
    held: HeldOutput | None = None,
    inputs: Sequence[InputDataset] = (),
) -> RunEvent:
    """The COMPLETE event: the stored version with schema, version, source and statistics;
    the rows ``held`` for review as a second output; ``inputs`` instead of the upload (a
    replay reads a quarantine batch and the version it adds to)."""
    facets: dict[str, Any] = {
        "schema": schema_dataset.SchemaDatasetFacet(
            fields=[
                schema_dataset.SchemaDatasetFacetFields(
                    name=f.name, type=f.type, description=f.description
                )
                for f in output.fields
            ],
            producer=PRODUCER,
        ),
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=str(output.version), producer=PRODUCER
        ),
        "dataSource": datasource_dataset.DatasourceDatasetFacet(
            name=job.namespace, uri=output.storage_uri, producer=PRODUCER
        ),
    }
    if job.owner:
        facets["ownership"] = ownership_dataset.OwnershipDatasetFacet(
            owners=[ownership_dataset.Owner(name=job.owner, type="TEAM")], producer=PRODUCER
        )
    if output.columns:
        facets["columnLineage"] = _column_lineage(job, output.columns)
    if output.profile is not None:
        facets["dataQualityMetrics"] = _quality_facet(output)
    if output.drift is not None:
        facets[DRIFT_FACET] = _drift_facet(output.drift)
    if output.pii:
        facets[PII_FACET] = {
            "_producer": PRODUCER,
            "_schemaURL": PII_FACET_SCHEMA,
            "columns": list(output.pii),
        }
    stored = OutputDataset(
        namespace=job.namespace,
        name=job.dataset,
        facets=facets,
        outputFacets={
            "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=output.row_count, size=output.size_bytes, producer=PRODUCER
            )
        },
    )
    read = list(inputs) or [_input(job, output.assertions, output.metrics)]
    outputs = [stored] if held is None else [stored, _held_output(job, held)]
    return _event(RunState.COMPLETE, job, at, read, outputs)


def held_input(namespace: str, dataset: str, batch_id: str) -> InputDataset:
    """A quarantine batch read by the run that replays or corrects it."""
    return InputDataset(
        namespace=namespace,
        name=quarantine_dataset(dataset),
        facets={
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=batch_id, producer=PRODUCER
            )
        },
    )


def version_input(namespace: str, dataset: str, version: int) -> InputDataset:
    """A stored dataset version read by a run."""
    return InputDataset(
        namespace=namespace,
        name=dataset,
        facets={
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=str(version), producer=PRODUCER
            )
        },
    )


def ingest_fail(
    job: IngestJob,
    at: datetime,
    message: str,
    assertions: Sequence[AssertionResult] = (),
    metrics: InputMetrics | None = None,
    held: HeldOutput | None = None,
) -> RunEvent:
    """The FAIL event, with ``errorMessage``; ``message`` must already be free of raw values.
    Rows ``held`` for review (no row passed) are its one output."""
    error = error_message_run.ErrorMessageRunFacet(
        message=message, programmingLanguage="python", producer=PRODUCER
    )
    inputs = [_input(job, assertions, metrics)]
    outputs = [] if held is None else [_held_output(job, held)]
    return _event(RunState.FAIL, job, at, inputs, outputs, {"errorMessage": error})


def event_to_dict(event: RunEvent) -> dict[str, Any]:
    """The event as the JSON object the OpenLineage spec defines."""
    result: dict[str, Any] = json.loads(Serde.to_json(event))
    return result


# -- training runs ---------------------------------------------------------------------------

MODEL_NAMESPACE = "model"
TRAINING_METRICS_FACET = "datagate_trainingMetrics"
TRAINING_METRICS_SCHEMA = f"{PRODUCER}/spec/facets/TrainingMetricsRunFacet.json"


@dataclass(frozen=True)
class DatasetVersionRef:
    """One exact version of a dataset, as a training input."""

    namespace: str
    name: str
    version: int


@dataclass(frozen=True)
class TrainingJob:
    """A training run: which model version it produces from which dataset versions."""

    run_id: str
    namespace: str
    job_name: str
    model: str
    model_version: str
    inputs: tuple[DatasetVersionRef, ...]
    parameters: tuple[tuple[str, str], ...] = ()
    metrics: tuple[tuple[str, float], ...] = ()
    request_id: str | None = None


def _training_run_facets(job: TrainingJob, state: RunState, message: str | None) -> dict[str, Any]:
    facets: dict[str, Any] = _request_facet(job.request_id)
    if job.parameters:
        facets["parameters"] = execution_parameters_run.ExecutionParametersRunFacet(
            parameters=[
                execution_parameters_run.ExecutionParameter(key=k, value=v)
                for k, v in job.parameters
            ],
            producer=PRODUCER,
        )
    if job.metrics and state != RunState.START:
        facets[TRAINING_METRICS_FACET] = {
            "_producer": PRODUCER,
            "_schemaURL": TRAINING_METRICS_SCHEMA,
            "metrics": dict(job.metrics),
        }
    if state == RunState.FAIL:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=message or "training failed", programmingLanguage="python", producer=PRODUCER
        )
    return facets


def training_event(
    job: TrainingJob, state: RunState, at: datetime, message: str | None = None
) -> RunEvent:
    """START, COMPLETE or FAIL of a training job: exact input versions in, the model out."""
    inputs = [
        InputDataset(
            namespace=ref.namespace,
            name=ref.name,
            facets={
                "version": dataset_version_dataset.DatasetVersionDatasetFacet(
                    datasetVersion=str(ref.version), producer=PRODUCER
                )
            },
        )
        for ref in job.inputs
    ]
    model = OutputDataset(
        namespace=MODEL_NAMESPACE,
        name=job.model,
        facets={
            "datasetType": dataset_type_dataset.DatasetTypeDatasetFacet(
                datasetType="MODEL", producer=PRODUCER
            ),
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=job.model_version, producer=PRODUCER
            ),
        },
    )
    return RunEvent(
        eventType=state,
        eventTime=at.isoformat(),
        run=Run(runId=job.run_id, facets=_training_run_facets(job, state, message)),
        job=Job(
            namespace=job.namespace,
            name=job.job_name,
            facets={
                "jobType": job_type_job.JobTypeJobFacet(
                    processingType="BATCH",
                    integration="DATAGATE",
                    jobType="TRAINING",
                    producer=PRODUCER,
                )
            },
        ),
        producer=PRODUCER,
        inputs=inputs,
        outputs=[model],
    )


# -- version lifecycle (retention, erasure) ----------------------------------------------------


@dataclass(frozen=True)
class LifecycleJob:
    """A run that deleted stored versions' data (``retention`` or ``erasure``) and, for an
    erasure, wrote the version that replaces them."""

    run_id: str
    namespace: str
    dataset: str
    kind: str  # "retention" or "erasure"
    dropped: tuple[int, ...]
    created: int | None = None
    read: tuple[int, ...] = ()  # the version the created one was written from

    @property
    def job_name(self) -> str:
        """The OpenLineage job name: ``retention.<dataset>`` or ``erasure.<dataset>``."""
        return f"{self.kind}.{self.dataset}"


def _version_facets(version: int, change: Any) -> dict[str, Any]:
    return {
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=str(version), producer=PRODUCER
        ),
        "lifecycleStateChange": lifecycle_state_change_dataset.LifecycleStateChangeDatasetFacet(
            lifecycleStateChange=change, producer=PRODUCER
        ),
    }


def lifecycle_event(job: LifecycleJob, at: datetime) -> RunEvent:
    """The COMPLETE event of a lifecycle run: each dropped version an output with
    ``lifecycleStateChange: DROP``; an erasure reads the version it rewrites and outputs the
    new version (``CREATE``)."""
    change = lifecycle_state_change_dataset.LifecycleStateChange
    outputs = [
        OutputDataset(
            namespace=job.namespace, name=job.dataset, facets=_version_facets(n, change.DROP)
        )
        for n in job.dropped
    ]
    inputs = [version_input(job.namespace, job.dataset, n) for n in job.read]
    if job.created is not None:
        outputs.append(
            OutputDataset(
                namespace=job.namespace,
                name=job.dataset,
                facets=_version_facets(job.created, change.CREATE),
            )
        )
    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=at.isoformat(),
        run=Run(runId=job.run_id),
        job=_job(job),
        producer=PRODUCER,
        inputs=inputs,
        outputs=outputs,
    )
