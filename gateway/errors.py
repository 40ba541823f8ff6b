"""Datagate's domain errors, as one tree.

DatagateError
├── Unauthorized                  (401, no or unknown API key)
├── Forbidden                     (403, the key's role or datasets do not allow it)
├── NotFound                      (404)
│   ├── DatasetNotFound
│   ├── VersionNotFound
│   ├── RunNotFound
│   └── ContractNotFound
├── UploadError                   (the upload cannot be read)
│   ├── EmptyUpload               (400)
│   ├── UnreadableUpload          (400)
│   ├── UnsupportedFormat         (415)
│   └── UploadTooLarge            (413)
├── ContractViolation             (422, carries the validation report)
│   └── DriftRejected             (422, drift beyond a limit whose action is reject)
├── UndeclaredPii                 (422, PII found in columns the contract does not declare)
├── UnknownDatasetVersion         (422, a training input that is not a stored version)
├── BodyTooLarge                  (413, a JSON request body over its limit)
├── InvalidLineageEvent           (400, the reason names the offending field)
├── Conflict                      (409, e.g. a lineage run id that belongs to another job)
├── VersionGone                   (410, the version's data was deleted: retention, erasure)
├── TooBusy                       (429, too much of this work already waits)
├── ContractUnavailable           (503, the dataset's contract is broken or ambiguous)
├── InvalidRequest                (400)
└── StageFailed                   (500, an unexpected error inside one pipeline stage)

ContractLoadError is not raised to callers: it is collected per file at start-up and shown
in logs and ``/readyz``. The mapping from these types to HTTP lives in ``gateway.problems``.
"""

from __future__ import annotations

import traceback
from typing import Any


class DatagateError(Exception):
    """Base of every error Datagate reports to a caller."""

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class Unauthorized(DatagateError):
    """No API key, or one that is unknown, revoked or expired."""


class Forbidden(DatagateError):
    """The key's role or datasets do not allow this request."""


class NotFound(DatagateError):
    """The named resource does not exist."""


class TooBusy(DatagateError):
    """Too much of this work already waits for a worker; ask again later."""


class VersionGone(DatagateError):
    """The version's data was deleted (retention, erasure); its metadata remains."""


class DatasetNotFound(NotFound):
    """No contract defines this dataset."""


class VersionNotFound(NotFound):
    """The dataset has no such version."""


class RunNotFound(NotFound):
    """No ingest run has this id."""


class ContractNotFound(NotFound):
    """No contract has this name."""


class UploadError(DatagateError):
    """The uploaded body cannot be turned into a table."""


class EmptyUpload(UploadError):
    """The body, or the table in it, is empty."""


class UnreadableUpload(UploadError):
    """The body is corrupt or does not match its declared format."""


class UnsupportedFormat(UploadError):
    """The declared or detected format is not one Datagate reads."""


class UploadTooLarge(UploadError):
    """The body, or its decompressed content, exceeds ``DATAGATE_MAX_UPLOAD_BYTES``."""


class ContractViolation(DatagateError):
    """The data does not satisfy its contract; ``extensions['report']`` says where."""


class DriftRejected(ContractViolation):
    """A column drifted beyond a threshold whose action is ``reject``; carries the report."""


class UndeclaredPii(DatagateError):
    """PII was found in undeclared columns of a contract whose ``undeclared_pii`` is reject."""


class UnknownDatasetVersion(DatagateError):
    """A training run names a dataset version Datagate does not hold."""


class BodyTooLarge(DatagateError):
    """A request body (other than an upload) exceeds its limit."""


class Conflict(DatagateError):
    """The request contradicts what is already recorded."""


class ContractUnavailable(DatagateError):
    """The dataset's contract cannot be used until its files are fixed."""


class InvalidLineageEvent(DatagateError):
    """A posted OpenLineage event does not conform to the spec."""


class InvalidRequest(DatagateError):
    """A query parameter or header is malformed."""


class StageFailed(DatagateError):
    """An unexpected error inside one pipeline stage (a bug or an infrastructure fault)."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"ingest failed in stage '{stage}' ({type(cause).__name__})", stage=stage)
        self.stage = stage


class Interrupted(DatagateError):
    """The gateway process running an ingest stopped before the ingest finished."""


class ContractLoadError(Exception):
    """A contract file could not be loaded; names the file and the reason."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


def redacted_traceback(exc: BaseException) -> str:
    """Where ``exc`` was raised, for logs, without its message (which may quote data values)."""
    frames = "".join(
        f"\n  {frame.filename}:{frame.lineno} in {frame.name}"
        for frame in traceback.extract_tb(exc.__traceback__)
    )
    return f"{type(exc).__name__} (message withheld){frames}"
