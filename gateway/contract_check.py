"""``datagate contracts check``: a candidate contracts folder judged against a running gateway,
for CI on a contract pull request — lint, the diff against the version the gateway serves, and
the candidate run on the latest stored versions.

The candidate's code runs here, never on the gateway: a gateway that ran code sent to it would
let any key holder run code on it. The stored versions are downloaded (they are stored redacted,
so the key needs read access to the data, as a consumer's has) and revalidated with the same
code the gateway uses (``gateway.revalidation.revalidate_files``); checks of redacted columns
are reported as not checkable, never as passed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.client import DatagateError
from gateway.evolution import Verdict, judge, markdown
from gateway.offline import Finding, lint
from gateway.revalidation import revalidate_files

if TYPE_CHECKING:
    from gateway.client import DatagateClient
    from gateway.contracts import Contract, ContractCatalog
    from privacy import PiiEngine


@dataclass
class CandidateCheck:
    """One candidate contract against what the gateway serves."""

    name: str
    version: str
    serving: str | None = None  # the version the gateway serves; None: a new contract
    verdict: Verdict | None = None
    revalidated: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Compatible (or allowed by a major bump), and every revalidated version valid."""
        refused = self.verdict is not None and self.verdict.refused
        return not refused and all(v["valid"] for v in self.revalidated)

    def as_dict(self) -> dict[str, Any]:
        """The outcome as JSON."""
        return {
            "name": self.name,
            "version": self.version,
            "serving": self.serving,
            "passed": self.passed,
            "diff": None if self.verdict is None else self.verdict.as_dict(),
            "revalidation": self.revalidated,
        }


@dataclass
class CheckOutcome:
    """Lint findings and each candidate's checks."""

    findings: list[Finding]
    candidates: list[CandidateCheck]

    @property
    def passed(self) -> bool:
        """Nothing that would keep a contract from loading, and every candidate passed."""
        errors = any(f.level == "error" for f in self.findings)
        return not errors and all(c.passed for c in self.candidates)

    def as_dict(self) -> dict[str, Any]:
        """The outcome as JSON."""
        return {
            "passed": self.passed,
            "lint": [
                {"level": f.level, "file": f.file, "message": f.message} for f in self.findings
            ],
            "contracts": [c.as_dict() for c in self.candidates],
        }


def _missing(error: DatagateError) -> bool:
    return error.problem.get("status") == 404


def _serving_definition(client: DatagateClient, name: str) -> tuple[str, dict[str, Any]] | None:
    """The version of contract ``name`` the gateway serves (or served last) and its canonical
    schema; None when it never loaded one."""
    try:
        listing = client.contract_versions(name)
    except DatagateError as error:
        if _missing(error):
            return None
        raise
    if not listing.versions:
        return None
    active = [v for v in listing.versions if v.active] or listing.versions[-1:]
    detail = client.contract_version(name, active[0].fingerprint)
    return detail.version, detail.definition


def _revalidate_latest(
    client: DatagateClient,
    contract: Contract,
    count: int,
    engine: PiiEngine,
    chunk_rows: int,
) -> list[dict[str, Any]]:
    """The candidate run on the dataset's ``count`` latest versions whose data is stored."""
    try:
        stored = client.versions(contract.dataset)
    except DatagateError as error:
        if _missing(error):
            return []
        raise
    live = sorted((v for v in stored if v.state == "live"), key=lambda v: v.version)
    latest = live[-count:] if count > 0 else []  # a deleted version's data is gone
    results = []
    with tempfile.TemporaryDirectory(prefix="datagate-check-") as folder:
        for version in latest:
            path = client.download(
                contract.dataset, version.version, Path(folder) / f"v{version.version}.parquet"
            )
            try:
                outcome = revalidate_files(contract, [path], version.pii, engine, chunk_rows)
            finally:
                path.unlink(missing_ok=True)
            results.append(
                {
                    "version": version.version,
                    "rows": version.row_count,
                    "contract_at_upload": {
                        "version": version.contract.version,
                        "fingerprint": version.contract.fingerprint,
                    },
                    **outcome,
                }
            )
    return results


def check_candidates(
    client: DatagateClient,
    catalog: ContractCatalog,
    engine: PiiEngine,
    *,
    versions: int = 1,
    datasets: list[str] | None = None,
    chunk_rows: int = 250_000,
) -> CheckOutcome:
    """Lint ``catalog`` (the candidate folder), then judge each candidate against the version
    the gateway serves and run it on the ``versions`` latest stored versions."""
    findings = lint(catalog)
    names = sorted(catalog.contracts) if datasets is None else datasets
    candidates = []
    for name in names:
        contract = catalog.contracts[name]
        check = CandidateCheck(name=name, version=contract.version)
        serving = _serving_definition(client, name)
        if serving is not None:
            check.serving = serving[0]
            check.verdict = judge(serving[1], contract.definition)
        check.revalidated = _revalidate_latest(client, contract, versions, engine, chunk_rows)
        candidates.append(check)
    return CheckOutcome(findings, candidates)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def check_markdown(outcome: CheckOutcome) -> str:
    """The outcome as Markdown, for a pull-request comment."""
    verdict = "passed" if outcome.passed else "**failed**"
    lines = [f"## Contract check: {verdict}", ""]
    if outcome.findings:
        lines += ["### Lint", ""]
        lines += [f"- {f.level}: `{_cell(f.file)}`: {_cell(f.message)}" for f in outcome.findings]
        lines.append("")
    for candidate in outcome.candidates:
        if candidate.verdict is None:
            lines += [
                f"### Contract {_cell(candidate.name)}: new ({candidate.version})",
                "",
                "The gateway has never loaded this contract: nothing to compare.",
                "",
            ]
        else:
            lines.append(markdown(candidate.verdict, candidate.name))
        if not candidate.revalidated:
            lines += ["No stored version to revalidate.", ""]
            continue
        lines += [
            f"#### Stored versions under {_cell(candidate.name)} {candidate.version}",
            "",
            "| version | rows | result | failed checks | not checkable (redacted) |",
            "|---|---|---|---|---|",
        ]
        for result in candidate.revalidated:
            report = result["report"]
            failed = ", ".join(
                f"{_cell(f['column'] or '(row)')} {_cell(f['check'])} ({f['failing_rows']} rows)"
                for f in report.get("failures", [])
            )
            lines.append(
                f"| {result['version']} | {result['rows']} "
                f"| {'valid' if result['valid'] else '**invalid**'} | {failed or '—'} "
                f"| {report.get('checks_not_checkable', 0)} |"
            )
        lines.append("")
    return "\n".join(lines)
