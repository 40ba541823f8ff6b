"""A contract owner's inner loop, with no server, no database and no network: validate a local
file against a contract with the gateway's own stages (parse, validate, PII detection and
redaction planning, in-process), and lint contract files.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.contracts import Contract, ContractCatalog
from gateway.errors import DatagateError
from gateway.ingest_lineage import pii_report
from gateway.problems import problem_for
from gateway.runs import new_run_id
from gateway.settings import Settings
from gateway.stages import (
    Batch,
    finish_redaction,
    finish_validation,
    open_upload,
    parse,
    redact,
    validate,
)
from gateway.uploads import ReceivedUpload, UploadSpool
from lineage import DatasetRef, IngestJob
from privacy import PiiEngine, RedactionKey

# Column names that usually hold personal data, for ``lint``.
PII_NAMES = re.compile(
    r"(^|_)(e_?mail|phone|mobile|ssn|social_security|name|first_?name|last_?name|surname|"
    r"address|street|zip|postcode|dob|birth_?date|date_of_birth|passport|iban|card|ip)(_|$)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Offline:
    """What the stages need of a gateway, without its database, store or lineage."""

    settings: Settings
    pii_engine: PiiEngine
    redaction_key: RedactionKey


def check_file(
    path: Path, contract: Contract, engine: PiiEngine, requested_format: str | None = None
) -> dict[str, Any]:
    """Validate ``path`` as an upload to ``contract``'s dataset would be: the same report (the
    422 body's ``report``), what redaction would do to each column, and the problem an upload
    would get (None when it would be stored)."""
    with tempfile.TemporaryDirectory(prefix="datagate-test-") as folder:
        settings = Settings(home=Path(folder), contracts_dir=Path(folder))
        # Pseudonyms are never shown here: a throwaway key, so no key file is created.
        context = _Offline(settings, engine, RedactionKey(os.urandom(32)))
        spool = UploadSpool(Path(folder) / "spool")
        run_id = new_run_id()
        batch = Batch(
            job=IngestJob(
                run_id=run_id,
                namespace=settings.namespace,
                dataset=contract.dataset,
                source=DatasetRef(namespace="file", name=path.name),
            ),
            contract=contract,
            upload=ReceivedUpload(path, path.stat().st_size, path.name, None),
            spool=spool,
            requested_format=requested_format,
            uploader="datagate contracts test",
        )
        problem: dict[str, Any] | None = None
        try:
            batch, reader = open_upload(batch, context)  # type: ignore[arg-type]
            for frame in reader:
                for step in (parse, validate, redact):
                    frame = step(batch, frame, context)  # type: ignore[arg-type]
            for stage in (finish_validation, finish_redaction):
                batch = stage(batch, context)  # type: ignore[arg-type]
                if batch.refusal is not None:
                    raise batch.refusal
        except DatagateError as error:
            found = problem_for(error)
            problem = {"type": found.type, "title": found.title, "detail": error.detail}
            if "quarantine" in error.extensions:
                problem["quarantine"] = {**error.extensions["quarantine"], "id": None}
        finally:
            parts = batch.parts
            if parts is not None and parts.holding is not None:
                parts.holding.discard()
            spool.close()
    held = batch.held_summary()
    return {
        "dataset": contract.dataset,
        "contract": {"version": contract.version, "fingerprint": contract.fingerprint},
        "stored": problem is None,
        "problem": problem,
        "report": batch.report.as_dict() if batch.report is not None else None,
        "pii": pii_report(batch.pii) if batch.pii else None,
        "quarantine": None if held is None else {**held, "id": None},
    }


@dataclass(frozen=True)
class Finding:
    """One lint finding: an error (the contract would not load) or a warning."""

    level: str
    file: str
    message: str


def lint(catalog: ContractCatalog) -> list[Finding]:
    """What would keep the contracts from loading, and what looks wrong in those that load:
    columns named like personal data without a PII policy."""
    findings = [Finding("error", e.file, e.reason) for e in catalog.errors]
    for contract in sorted(catalog.contracts.values(), key=lambda c: c.dataset):
        for column in contract.columns:
            if column.policy is None and not column.regex and PII_NAMES.search(column.name):
                findings.append(
                    Finding(
                        "warning",
                        contract.source_file,
                        f"{contract.dataset}.{column.name} looks like personal data but declares "
                        "no PII policy (metadata={'pii': ...}); its values would be scanned as "
                        "undeclared text",
                    )
                )
    return findings
