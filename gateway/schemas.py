"""Typed response models: what a success answer holds, field by field, in the OpenAPI document.

Times are ISO 8601 with their UTC offset (``2026-11-29T21:19:19.441544+00:00``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

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
    contract: str | None = Field(
        None, description="The exact contract version it passed: its schema and code."
    )
    drift: str | None = Field(None, description="Its drift report.")


class VersionMark(_Out):
    """Who placed a hold (or released the models' claim) on a version, when and why."""

    by: str
    at: str = Field(description="ISO 8601, UTC offset included.")
    reason: str | None


class VersionTombstone(_Out):
    """Why a version's data is gone: its row stays, its data endpoints answer 410."""

    at: str = Field(description="ISO 8601, UTC offset included.")
    reason: str = Field(description="retention or erasure.")
    by: str
    replaced_by: int | None = Field(description="The version written without the erased rows.")
    hold_overridden: VersionMark | None = Field(
        None, description="The hold an erasure overrode (explicitly asked for)."
    )


class DriftSummary(_Out):
    """A version's drift status: ok, warn (a column drifted), reject, none (nothing to compare
    with)."""

    status: Literal["ok", "warn", "reject", "none"]
    drifted: list[str] = Field(description="Columns that drifted against a baseline.")
    against: dict[str, int] = Field(description="previous / reference: the version compared.")


class DriftColumn(_Out):
    """One column against one baseline: its statistics (None: not defined for its kind)."""

    column: str
    kind: Literal["numeric", "categorical"]
    psi: float | None
    ks: float | None = None
    wasserstein: float | None = Field(None, description="Divided by the baseline's std.")
    jensen_shannon: float | None = None
    null_rate: float = Field(description="Absolute change of the share of nulls.")
    distinct: float = Field(description="Relative change of the distinct count.")
    thresholds: dict[str, float]
    drifted: bool
    exceeded: list[str]
    action: Literal["warn", "reject"] | None


class DriftComparison(_Out):
    """A version against one baseline."""

    baseline: Literal["previous", "reference"]
    version: int
    columns: list[DriftColumn]
    drifted: list[str]


class DriftReferenceOut(_Out):
    """A dataset's pinned drift reference (None: the previous version only)."""

    dataset: str
    reference: int | None


class DriftOut(_Out):
    """A version's drift report."""

    dataset: str
    version: int
    status: Literal["ok", "warn", "reject", "none"]
    comparisons: list[DriftComparison]


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
    state: Literal["live", "deleted"] = Field(description="deleted: only the metadata remains.")
    deleted: VersionTombstone | None
    hold: VersionMark | None = Field(description="An admin's hold: retention never removes it.")
    released: VersionMark | None = Field(
        description="The claim of the models trained on it, released: retention may remove it."
    )
    drift: DriftSummary | None = Field(
        description="Drift against the previous (and reference) version; None for versions "
        "stored before drift was measured."
    )
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
    quarantine: str | None = Field(None, description="The quarantine batch of the run's rows.")


class RunContract(_Out):
    """The contract a run was validated against (none before it was chosen)."""

    name: str | None
    version: str | None
    fingerprint: str | None


class RunProgress(_Out):
    """How far an asynchronous ingest has come."""

    stages_done: int = Field(description="Stages finished of stages_total.")
    stages_total: int
    rows_done: int | None = Field(
        description="Rows read, checked, redacted and written so far (an upload is worked on "
        "in parts of DATAGATE_INGEST_CHUNK_ROWS rows)."
    )
    rows_total: int | None = Field(description="Rows in the upload, once all of it is read.")
    parts_done: int | None = Field(description="Parts of the upload done so far.")


class RunPart(_Out):
    """One part of an upload spread over workers (DATAGATE_INGEST_SPREAD)."""

    index: int = Field(description="The part's place in the upload, from 0.")
    status: str = Field(description="queued, running, done, failed or cancelled.")
    rows: int
    worker: str | None = Field(
        description="The gateway process (instance id) working on it or that did it."
    )
    taken: int = Field(description="How many times a worker took it (more: one died with it).")


class RunOut(_Out):
    """One ingest run: its status, stage timings, reports and the version it produced."""

    id: str
    dataset: str
    status: str = Field(
        description="queued, running, accepted, quarantined (version created, rows held), "
        "rejected, failed or interrupted."
    )
    kind: str = Field(
        "ingest", description="ingest (an upload), or replay / correction of a quarantine batch."
    )
    quarantine_id: str | None = Field(
        None, description="The quarantine batch this run held rows in, or released rows from."
    )
    stage: str | None = Field(
        description="Asynchronous runs: the stage running now, or the last one reached."
    )
    progress: RunProgress | None = Field(
        description="Asynchronous runs: how far the ingest has come."
    )
    parts: list[RunPart] = Field(
        description="Asynchronous runs spread over workers: each part and who took it."
    )
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


class CheckOut(_Out):
    """A contract check: its Pandera name, the id failures report it by, and its parameters."""

    name: str
    id: str
    statistics: dict[str, Any]


class ColumnPii(_Out):
    """A column's PII policy."""

    entity: str
    action: str
    justification: str | None


class ColumnOut(_Out):
    """A contract column."""

    name: str = Field(description="The column's name, or a regular expression (regex).")
    regex: bool
    dtype: str
    nullable: bool
    unique: bool
    required: bool
    coerce: bool
    checks: list[CheckOut]
    pii: ColumnPii | None
    description: str | None


class QuarantinePolicyOut(_Out):
    """How a quarantining contract holds failing rows."""

    max_invalid_fraction: float = Field(
        description="Above this share of failing rows the whole upload is refused."
    )
    min_valid_rows: int = Field(description="Fewer passing rows refuse the whole upload.")
    quarantine_days: int | None = Field(
        description="Days held rows are kept (None: DATAGATE_QUARANTINE_DAYS)."
    )
    keys: list[str] = Field(description="Columns that match corrections to held rows.")


class ContractPolicies(_Out):
    """What Datagate does beyond Pandera's checks."""

    on_invalid: str = Field(description="reject, or quarantine (failing rows held for review).")
    undeclared_pii: str
    pii_entities: list[str]
    pii_phone_regions: list[str]
    quarantine: QuarantinePolicyOut | None = None
    primary_key: list[str] = Field(
        default_factory=list, description="The columns that identify a row (diff, corrections)."
    )
    retention: dict[str, float | None] | None = Field(
        None, description="keep_last and max_age_days; None: versions are kept."
    )
    drift: dict[str, Any] | None = Field(
        None, description="action, default thresholds, per-column thresholds."
    )


class ContractOut(_Out):
    """A loaded contract."""

    name: str
    model: str
    version: str
    fingerprint: str
    owner: str | None
    description: str | None
    source_file: str
    policies: ContractPolicies
    strict: bool | str = Field(description='true, false or "filter".')
    columns: list[ColumnOut]
    dataframe_checks: list[CheckOut]


class ContractError(_Out):
    """A contract file that could not be used, and why."""

    file: str
    reason: str


class ContractList(_Out):
    """Every loaded contract, and every contract file that failed to load."""

    contracts: list[ContractOut]
    errors: list[ContractError]


class KeyOut(_Out):
    """An API key's metadata: never its secret or hash."""

    id: str
    name: str
    role: str
    datasets: list[str] | None
    created_at: UtcTime
    expires_at: UtcTime | None
    revoked_at: UtcTime | None


class KeyCreated(KeyOut):
    """A new key, with its secret: shown this once, stored only as a hash."""

    key: str


class KeyList(_Out):
    """Every key's metadata."""

    keys: list[KeyOut]


class AuditEntryOut(_Out):
    """One entry of the audit trail."""

    seq: int
    at: UtcTime
    actor: str
    role: str | None
    action: str
    target: str | None
    dataset: str | None
    outcome: int = Field(description="The HTTP status answered.")
    request_id: str
    client: str | None
    count: int = Field(description="Refused anonymous requests counted into this one entry.")
    hash: str


class AuditLog(_Out):
    """Audit entries, newest first, and how many match in all."""

    total: int
    entries: list[AuditEntryOut]


class Liveness(_Out):
    """The process is alive."""

    status: str


class RunAcceptedLinks(_Out):
    """Where to follow a queued run."""

    run: str


class RunAccepted(_Out):
    """An upload taken for asynchronous ingest (202): follow the run to its outcome."""

    run_id: str
    status: str = Field(description='"queued".')
    links: RunAcceptedLinks


class UploadOut(_Out):
    """An upload's outcome: its run, and the version stored (created) or matched (not)."""

    run_id: str
    created: bool = Field(description="True: a new version (201); false: identical data (200).")
    version: VersionOut
    quarantine: HeldRows | None = Field(
        None, description="Rows a quarantining contract held back for review, if any."
    )


class FailingRows(_Out):
    """How many held rows fail one check of one column. Never a value."""

    column: str | None
    check: str
    rows: int


class HeldRows(_Out):
    """Rows an upload held back for review: the quarantine batch and why."""

    id: str = Field(description="The quarantine batch: GET /api/v1/quarantine/{id}.")
    rows: int
    failures: list[FailingRows]


class TrainingModel(_Out):
    """The model version a training run produces."""

    name: str
    version: str


class TrainingRunOut(_Out):
    """A recorded training-run report and the lineage events it produced."""

    run_id: str
    events: list[str] = Field(description="START, COMPLETE or FAIL, in order.")
    model: TrainingModel


class ReadinessCheck(_Out):
    """One dependency's state: ``ok``, ``degraded`` (working, reduced) or ``fail``."""

    model_config = ConfigDict(extra="allow")

    status: str
    detail: str | None = None


class Readiness(_Out):
    """Whether the gateway can take uploads, and each dependency's state."""

    status: str = Field(description='"ready" or "not ready" (answered with 503).')
    checks: dict[str, ReadinessCheck] = Field(
        description="database, storage, contracts, pii, lineage, queue and quarantine."
    )


class LineageAccepted(_Out):
    """A lineage event was validated and stored."""

    event_type: str = Field(description="RunEvent, DatasetEvent or JobEvent.")
    run_id: str | None = Field(description="The run it reports on (RunEvent only).")


class LineageEdgeOut(_Out):
    """A directed edge between two nodes."""

    origin: str
    destination: str


class LineageNodeData(_Out):
    """What a node is: its namespace and name, and for a dataset the versions seen."""

    namespace: str
    name: str
    versions: list[str] | None = Field(default=None, description="Datasets only.")
    type: str | None = Field(default=None, description='"MODEL" for a trained model.')


class LineageNode(_Out):
    """A dataset or job node, in Marquez's graph shape."""

    id: str = Field(description="dataset:NAMESPACE:NAME or job:NAMESPACE:NAME.")
    type: str = Field(description="DATASET or JOB.")
    data: LineageNodeData
    in_edges: list[LineageEdgeOut] = Field(alias="inEdges")
    out_edges: list[LineageEdgeOut] = Field(alias="outEdges")


class LineageGraph(_Out):
    """The nodes within the requested number of job hops, with their edges."""

    graph: list[LineageNode]


class UploadRecord(_Out):
    """How a stored dataset version came in."""

    uploader: str
    uploaded_at: UtcTime
    source: str | None
    run_id: str
    filename: str | None
    content_hash: str
    row_count: int
    contract: ContractRef
    validation: dict[str, Any] | None
    pii: dict[str, Any] | None
    quarantine: QuarantineStory | None = Field(
        default=None, description="Rows the upload held back, and who released which."
    )
    state: Literal["live", "deleted"] = Field(
        "live", description="deleted: the version's data is gone (retention, erasure)."
    )
    deleted: VersionTombstone | None = None


class QuarantineRelease(_Out):
    """A replay or correction that released held rows into a version."""

    version: int
    run_id: str
    kind: str = Field(description="replay or correction")
    released_by: str
    released_at: UtcTime | None
    rows: list[int] = Field(description="The released rows' numbers in the upload (from 1).")
    had_failed: list[FailingRows] = Field(description="The checks those rows had failed.")


class QuarantineStory(_Out):
    """The quarantine behind a version: which rows were held and why, and each release."""

    batch: str
    status: str
    upload_run_id: str
    rows_held_at_upload: int
    held_because: list[FailingRows]
    rows_held_now: int
    releases: list[QuarantineRelease] = Field(description="Oldest first.")


class ProvenanceInput(_Out):
    """A dataset version a training run read."""

    dataset: str = Field(description="The dataset's node id.")
    name: str
    version: str | None
    upload: UploadRecord | None = Field(
        default=None, description="For Datagate's own datasets: the upload behind the version."
    )


class TrainingRunInputs(_Out):
    """A training run and what it read."""

    run_id: str | None
    job: str
    inputs: list[ProvenanceInput]


class RetrainingFlag(_Out):
    """Why a model version needs retraining."""

    reason: str = Field(description="erasure: data it was trained on was erased.")
    at: UtcTime
    erasure: str | None = Field(description="The erasure request's id.")
    inputs: list[dict[str, Any]] = Field(description="The erased versions it was trained on.")


class Provenance(_Out):
    """Everything behind a model version."""

    model: TrainingModel
    training_runs: list[TrainingRunInputs]
    needs_retraining: list[RetrainingFlag] = Field(
        default_factory=list, description="Empty unless data it was trained on was erased."
    )


class ImpactStart(_Out):
    """The dataset version the impact starts from."""

    name: str
    version: int
    node: str


class ImpactModel(_Out):
    """A model version trained, directly or downstream, on the data."""

    model: str
    version: str | None
    path: list[str] = Field(description="The nodes from the start to the model.")
    needs_retraining: bool = Field(
        False, description="Data it was trained on was erased (see its provenance)."
    )


class ImpactJob(_Out):
    """A job that read the data, directly or downstream."""

    job: str
    path: list[str]


class ImpactDataset(_Out):
    """A dataset written from the data, directly or downstream."""

    dataset: str
    version: str | None
    path: list[str]


class Impact(_Out):
    """Every model, job and dataset that a dataset version reached."""

    dataset: ImpactStart
    models: list[ImpactModel]
    jobs: list[ImpactJob]
    datasets: list[ImpactDataset]


class AuditVerification(_Out):
    """The audit trail's chain, recomputed."""

    ok: bool
    checked: int = Field(description="Entries verified before the first break (or in all).")
    broken_at: int | None
    reason: str | None
    head: str | None = Field(description="SEQ:HASH of the newest entry, to pass as expect later.")
    checkpoint: str | None = Field(description="The newest signed checkpoint reached.")


class SubjectMatchLinks(_Out):
    """Where to go from a match."""

    version: str


class SubjectVersionMatch(_Out):
    """A dataset version whose column (hashed, encrypted or kept) holds a searched identifier."""

    dataset: str
    version: int
    column: str
    rows: int
    links: SubjectMatchLinks


class SubjectSearchResult(_Out):
    """Where the identifiers occur and which models were trained on those versions.

    The identifiers themselves are never echoed back."""

    identifiers_searched: int
    versions_searched: int
    matches: list[SubjectVersionMatch]
    models: list[ImpactModel]


class QuarantineLinks(_Out):
    """Where to go from a quarantine batch."""

    run: str = Field(description="The ingest run that held the rows.")
    version: str | None = Field(description="The version holding the upload's valid rows.")


class QuarantineOut(_Out):
    """A quarantine batch: rows of one upload held back for review, and what became of them.
    Counts and check names only, never a value. A closed batch (replayed, discarded, expired)
    is a tombstone: its held rows and their key are destroyed."""

    id: str
    dataset: str
    status: str = Field(description="open, replayed, discarded or expired.")
    run_id: str
    rows_total: int = Field(description="Rows the upload held back.")
    rows_held: int = Field(description="Rows held now.")
    rows_released: int = Field(description="Rows published by replays and corrections.")
    rows_discarded: int = Field(description="Rows destroyed by a discard or expiry.")
    failures: list[FailingRows] = Field(description="Failing rows per check, as first held.")
    held_failures: list[FailingRows] = Field(description="Failing rows per check, held now.")
    base_version: int | None = Field(
        description="The version holding the upload's valid rows and those released so far."
    )
    contract_version: str
    uploader: str
    revision: int = Field(description="Changes with every replay, correction or discard.")
    created_at: UtcTime
    expires_at: UtcTime
    closed_at: UtcTime | None
    closed_by: str | None
    close_reason: str | None
    links: QuarantineLinks


class QuarantineList(_Out):
    """Quarantine batches, newest first."""

    batches: list[QuarantineOut]
    total: int
    limit: int
    offset: int


class HeldFailure(_Out):
    """One failure of a held row: the column (None, or several, for a whole-row check), the
    check, and the value at fault as shown (a placeholder for PII)."""

    column: str | None
    check: str
    value: Any = None


class HeldRow(_Out):
    """A held row: its number in the upload (from 1), its values (PII as placeholders such as
    <EMAIL_ADDRESS>, other values with any PII found in them replaced) and its failures."""

    row: int
    values: dict[str, Any]
    failures: list[HeldFailure]


class QuarantineDetail(_Out):
    """A batch and a page of the rows it holds."""

    batch: QuarantineOut
    rows: list[HeldRow]
    limit: int
    offset: int


class DiscardIn(BaseModel):
    """Why a batch is discarded (kept on its tombstone, with any PII in it replaced)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


class ReleaseOut(_Out):
    """What a replay or a correction did: the run, the rows published and still held, the
    new version (None when no row passed), and the batch after it."""

    run_id: str
    released: int
    still_held: int
    created: bool
    version: VersionOut | None
    report: dict[str, Any] = Field(description="The validation report of the rows checked.")
    batch: QuarantineOut


class ContractVersionOut(_Out):
    """One version of a contract as it was loaded at some start-up."""

    name: str
    version: str
    fingerprint: str
    owner: str | None
    source_file: str
    first_seen_at: UtcTime
    last_active_at: UtcTime | None
    active: bool = Field(description="The version loaded now.")
    links: dict[str, str]


class ContractVersionList(_Out):
    """Every version of a contract ever loaded, oldest first."""

    name: str
    versions: list[ContractVersionOut]


class ContractVersionDetail(ContractVersionOut):
    """A contract version with its canonical schema and its code."""

    definition: dict[str, Any] = Field(description="The canonical schema the fingerprint covers.")
    source: str | None = Field(description="The contract file's code, as loaded.")


class ContractChange(_Out):
    """One change between two contract versions."""

    kind: str = Field(
        description="column_added, column_removed, column_renamed, dtype_widened, "
        "dtype_narrowed, dtype_changed, nullability_tightened, nullability_loosened, "
        "required_added, required_removed, unique_added, unique_removed, check_added, "
        "check_removed, check_tightened, check_loosened, check_changed, pii_weakened, "
        "pii_strengthened, pii_changed, strict_tightened, strict_loosened, unique_changed, "
        "metadata_changed"
    )
    column: str | None
    detail: str
    backward: bool | None = Field(description="Data valid before stays valid (None: unknown).")
    forward: bool | None = Field(description="Readers of the old shape can read the new.")
    privacy: bool = Field(description="Personal data is handled more weakly.")
    breaking: bool = Field(description="Incompatible under the new version's mode.")


class ContractDiffOut(_Out):
    """The changes between two versions, judged under the newer one's compatibility mode."""

    mode: str = Field(description="backward, forward, full or none.")
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    major_bump: bool
    compatible: bool
    refused: bool = Field(description="Incompatible without a major version bump.")
    changes: list[ContractChange]


class RevalidateIn(BaseModel):
    """What to revalidate: stored versions of the dataset, under which contract."""

    model_config = ConfigDict(extra="forbid")

    versions: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] | None = Field(
        None, max_length=100, description="Version numbers (default: the latest)."
    )
    contract: str | None = Field(
        None,
        max_length=100,
        description="A recorded contract version (version string or fingerprint); default: "
        "the one loaded now.",
    )


class RevalidatedVersion(_Out):
    """One stored version under the contract: the report an upload of its data would get.
    Checks of redacted columns are listed with success null and status 'not checkable on
    redacted data', never counted as passed."""

    version: int
    rows: int
    contract_at_upload: dict[str, str]
    valid: bool = Field(description="Every check that can run on the stored data passes.")
    report: dict[str, Any]


class RevalidationOut(_Out):
    """Stored versions revalidated under one contract version."""

    contract: dict[str, str]
    versions: list[RevalidatedVersion]


class RevalidationJobLinks(_Out):
    """Where to follow a revalidation run by a worker."""

    self_: str = Field(alias="self", serialization_alias="self")


class RevalidationJobOut(_Out):
    """A revalidation too large to answer at once (202), run by a worker: its state, and
    the versions revalidated so far (all of them once done)."""

    id: str
    dataset: str
    contract: dict[str, str]
    versions: list[int] = Field(description="The version numbers asked for.")
    rows: int = Field(description="Stored rows to read, over those versions.")
    status: str = Field(description="queued, running, done or failed.")
    versions_done: int
    result: RevalidationOut | None = Field(
        description="Per version, as a synchronous answer; partial while running."
    )
    error: str | None
    requested_by: str
    created_at: UtcTime
    started_at: UtcTime | None
    finished_at: UtcTime | None
    links: RevalidationJobLinks


class ErasedRows(_Out):
    """Rows of one version that hold the subject."""

    version: int
    rows: int


class DatasetErasureOut(_Out):
    """What an erasure does (or would do) to one dataset."""

    dataset: str
    versions: list[int] = Field(description="The versions holding the subject: their data goes.")
    rows: list[ErasedRows]
    held: list[int] = Field(description="Those under a hold.")
    replaced_by: int | None = Field(description="The live version without the subject's rows.")
    new_version: int | None = Field(description="Written by this erasure (None: not needed).")
    rows_kept: int | None


class FlaggedModel(_Out):
    """A model version trained (directly or downstream) on an affected version."""

    model: str
    version: str | None
    inputs: list[dict[str, Any]] = Field(description="The affected versions it was trained on.")


class ErasureOut(_Out):
    """An erasure: what it found and (unless a dry run) did. Counts and numbers, never a value."""

    id: str
    subject: str = Field(description="The keyed digest standing for the subject's identifiers.")
    dry_run: bool
    datasets: list[DatasetErasureOut]
    models: list[FlaggedModel] = Field(description="Flagged as needing retraining.")
    quarantine: list[dict[str, Any]] = Field(
        description="Open quarantine batches holding the subject's rows (batch, dataset, rows): "
        "those rows are removed, the others stay held."
    )
    previous_requests: list[dict[str, Any]] = Field(
        description="Earlier erasures of the same subject (id, at, by)."
    )


class SchemaDiff(_Out):
    """Columns added, removed, or stored with another dtype."""

    added: list[str]
    removed: list[str]
    type_changed: list[dict[str, str]] = Field(description="column, from, to")


class RowDiff(_Out):
    """Rows added, removed, changed (matched by key) and unchanged."""

    added: int
    removed: int
    changed: int | None = Field(description="None when rows are matched by whole-row hashes.")
    unchanged: int


class SampleKeys(_Out):
    """Up to 10 keys of each kind of row, as keyed pseudonyms (never values)."""

    added: list[str]
    removed: list[str]
    changed: list[str]


class VersionDiffOut(_Out):
    """What changed from one stored version to another."""

    dataset: str
    from_: int = Field(alias="from", serialization_alias="from")
    to: int
    schema_: SchemaDiff = Field(alias="schema", serialization_alias="schema")
    matched_by: Literal["primary_key", "row_hash"]
    key: list[str] = Field(description="The key columns rows were matched by.")
    note: str | None
    rows: RowDiff
    changed_cells: dict[str, int] | None = Field(
        description="Per column, matched rows holding another value (by key only)."
    )
    sample_keys: SampleKeys | None
