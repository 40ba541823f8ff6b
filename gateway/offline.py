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

import pandera.polars as pa
import polars as pl

from gateway.contracts import ColumnSpec, Contract, ContractCatalog
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
    checks that name columns the contract does not declare (or cannot run on its columns),
    checks no value can pass, columns named like personal data without a PII policy."""
    findings = [Finding("error", e.file, e.reason) for e in catalog.errors]
    for contract in sorted(catalog.contracts.values(), key=lambda c: c.dataset):
        warn = [f"{contract.dataset}: {m}" for m in _checks_that_cannot_run(contract)]
        for column in contract.columns:
            unreachable = None if column.regex else _unreachable(column)
            if unreachable is not None:
                warn.append(f"{contract.dataset}.{column.name}: {unreachable}")
            if column.policy is None and not column.regex and PII_NAMES.search(column.name):
                warn.append(
                    f"{contract.dataset}.{column.name} looks like personal data but declares "
                    "no PII policy (metadata={'pii': ...}); its values would be scanned as "
                    "undeclared text"
                )
        findings += [Finding("warning", contract.source_file, message) for message in warn]
    return findings


_MISSING_COLUMN = re.compile(r'unable to find column "([^"]*)"')


def _checks_that_cannot_run(contract: Contract) -> list[str]:
    """Each check that fails to run on an empty frame of the declared columns: above all one
    naming a column the contract does not declare, which would fail every upload."""
    columns = {c.name: c.dtype for c in contract.columns if not c.regex}
    try:
        empty = pl.DataFrame(schema=columns)
        contract.checked_schema.validate(empty, lazy=True)
    except pa.errors.SchemaErrors as errors:
        found = []
        for failure in errors.message.get("DATA", {}).get("CHECK_ERROR", []):
            check, column = failure.get("check"), failure.get("column")
            owner = "dataframe check" if column == errors.schema.name else f"check on {column}"
            missing = _MISSING_COLUMN.search(str(failure.get("error", "")))
            if missing:
                found.append(
                    f"{owner} {check!r} names column {missing.group(1)!r}, which the contract "
                    "does not declare: every upload would fail it"
                )
            else:
                error = str(failure.get("error", "")).split("(", 1)[0].split(":")[-1].strip()
                found.append(f"{owner} {check!r} fails to run on the declared columns ({error})")
        return found
    except Exception as exc:  # the frame or the schema itself: not a finding about checks
        return [f"its checks could not be tried on an empty frame ({type(exc).__name__})"]
    return []


_LOWER = {"greater_than_or_equal_to": False, "greater_than": True}
_UPPER = {"less_than_or_equal_to": False, "less_than": True}


def _unreachable(column: ColumnSpec) -> str | None:
    """Why no value can pass the column's checks together (None: some value can, or it is not
    decidable)."""
    lower: tuple[Any, bool, str] | None = None  # bound, strict, the check that set it
    upper: tuple[Any, bool, str] | None = None
    allowed: tuple[list[Any], str] | None = None
    forbidden: list[Any] = []
    integral = column.dtype.is_integer()
    try:
        for check in column.checks:
            name, stats, label = check["name"], check.get("statistics") or {}, check["id"]
            bounds: list[tuple[str, Any, bool]] = []
            if name in _LOWER:
                bounds.append(("lower", stats.get("min_value"), _LOWER[name]))
            elif name in _UPPER:
                bounds.append(("upper", stats.get("max_value"), _UPPER[name]))
            elif name == "in_range":
                bounds.append(("lower", stats.get("min_value"), not stats.get("include_min", True)))
                bounds.append(("upper", stats.get("max_value"), not stats.get("include_max", True)))
            elif name == "equal_to":
                bounds += [
                    ("lower", stats.get("value"), False),
                    ("upper", stats.get("value"), False),
                ]
            elif name == "isin":
                allowed = (list(stats.get("allowed_values") or []), label)
            elif name == "notin":
                forbidden += list(stats.get("forbidden_values") or [])
            elif name == "not_equal_to":
                forbidden.append(stats.get("value"))
            for side, value, strict in bounds:
                if value is None or isinstance(value, bool):
                    continue
                if integral and isinstance(value, int) and strict:  # > 3 is >= 4 for integers
                    value, strict = (value + 1, False) if side == "lower" else (value - 1, False)
                if side == "lower" and (
                    lower is None or value > lower[0] or (value == lower[0] and strict)
                ):
                    lower = (value, strict, label)
                if side == "upper" and (
                    upper is None or value < upper[0] or (value == upper[0] and strict)
                ):
                    upper = (value, strict, label)

        def passes(value: Any) -> bool:
            above = lower is None or value > lower[0] or (value == lower[0] and not lower[1])
            below = upper is None or value < upper[0] or (value == upper[0] and not upper[1])
            return above and below and value not in forbidden

        if lower is not None and upper is not None:
            low, high = lower[0], upper[0]
            single = low == high and not (lower[1] or upper[1]) and low not in forbidden
            if low > high or (low == high and not single):
                return (
                    f"no value can pass {lower[2]} and {upper[2]} together: the check is "
                    "unreachable, every non-null value fails"
                )
        if allowed is not None and not any(passes(v) for v in allowed[0]):
            others = sorted({c["id"] for c in column.checks} - {allowed[1]})
            also = f" with {', '.join(others)}" if others else ""
            return (
                f"no value of {allowed[1]} can pass{also}: the check is unreachable, every "
                "non-null value fails"
            )
    except TypeError:  # bounds of different types: not decidable here
        return None
    return None
