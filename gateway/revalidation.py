"""Run a contract (the one loaded now, or any recorded version) against stored versions.

Stored data is redacted: a column with a PII policy holds pseudonyms, masks or placeholders, or
is gone (``drop``), so its checks cannot be re-run. Those are reported per check as "not
checkable on redacted data" and never counted as passed; every other check runs exactly as at
upload (the same chunked validation), part by part, in bounded memory.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import polars as pl

from gateway.context import IngestContext
from gateway.contracts import ColumnSpec, Contract
from gateway.models import DatasetVersion
from gateway.snapshots import version_files
from gateway.validation import ChunkedValidation
from privacy import scan_texts

NOT_CHECKABLE = "not checkable on redacted data"
_UNREDACTED = ("none", "keep", "warn")


def redacted_columns(version: DatasetVersion) -> dict[str, str]:
    """The columns a version stores redacted, with the action (``drop``: not stored)."""
    columns = (version.pii_summary or {}).get("columns") or []
    return {
        str(c["column"]): str(c["action"])
        for c in columns
        if c.get("action") not in _UNREDACTED and c.get("column")
    }


def _unchecked(
    contract: Contract, redacted: dict[str, str], stored: dict[str, pl.DataType]
) -> Contract:
    """``contract`` without the checks of redacted columns: each is any text, optional."""
    checked = copy.deepcopy(contract.checked_schema)
    reporting = copy.deepcopy(contract.reporting_schema)
    specs: list[ColumnSpec] = []
    for spec in contract.columns:
        if spec.name not in redacted or spec.regex:
            specs.append(spec)
            continue
        dtype = stored.get(spec.name, pl.String())
        specs.append(
            replace(
                spec,
                dtype=dtype,
                nullable=True,
                unique=False,
                checks=(),
                coerce=False,
                required=False,
            )
        )
        for schema in (checked, reporting):
            column = schema.columns[spec.name]
            column.checks = []
            column.unique = False
            column.nullable = True
            column.required = False
            column.dtype = None
    return replace(
        contract, checked_schema=checked, reporting_schema=reporting, columns=tuple(specs)
    )


def _not_checkable(contract: Contract, redacted: dict[str, str]) -> list[dict[str, Any]]:
    """The checks of redacted columns, each marked as not checkable (never as passed)."""
    found = []
    for spec in contract.columns:
        if spec.name not in redacted or spec.regex:
            continue
        names = [f"dtype('{spec.dtype}')"]
        if not spec.nullable:
            names.append("not_null")
        if spec.unique:
            names.append("unique")
        names += [check["name"] for check in spec.checks]
        found += [
            {
                "assertion": name,
                "column": spec.name,
                "success": None,
                "status": NOT_CHECKABLE,
                "stored_as": redacted[spec.name],
            }
            for name in names
        ]
    return found


def revalidate_version(
    services: IngestContext, contract: Contract, version: DatasetVersion
) -> dict[str, Any]:
    """One stored version under ``contract``: the report an upload of its data would get
    (for the checks that can run on it), and the checks that cannot."""
    redacted = redacted_columns(version)
    files = version_files(services.snapshots, version.storage_key)
    stored = pl.read_parquet_schema(files[0])
    checking = _unchecked(contract, redacted, stored)
    validation = ChunkedValidation(
        checking, lambda values: scan_texts(values, services.pii_engine, contract.detection)
    )
    chunk = services.settings.ingest_chunk_rows
    for path in files:
        for frame in pl.scan_parquet(path).collect_batches(chunk_size=chunk):
            validation.feed(frame)
    report, _ = validation.finish()
    result = report.as_dict()
    unreachable = set(redacted)
    result["assertions"] = [
        a for a in report.assertions if a["column"] not in unreachable
    ] + _not_checkable(contract, redacted)
    result["checks_run"] = sum(1 for a in result["assertions"] if a["success"] is not None)
    result["checks_not_checkable"] = sum(1 for a in result["assertions"] if a["success"] is None)
    result["checks_failed"] = sum(1 for a in result["assertions"] if a["success"] is False)
    return {
        "version": version.number,
        "rows": version.row_count,
        "contract_at_upload": {
            "version": version.contract_version,
            "fingerprint": version.contract_fingerprint,
        },
        # Every check that can run passes (rows a quarantining contract would hold count).
        "valid": report.valid and not result["checks_failed"] and not report.failures,
        "report": result,
    }
