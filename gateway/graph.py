"""Lineage graph and audit answers, from the stored edges (Datagate's and external events)."""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from gateway.errors import NotFound
from gateway.models import (
    Dataset,
    DatasetVersion,
    IngestRun,
    LineageEdge,
    ModelFlag,
    QuarantineBatch,
    as_utc,
)
from gateway.outbox import node_id
from lineage import MODEL_NAMESPACE

MAX_DEPTH = 50


def _split(node: str) -> tuple[str, str, str]:
    kind, _, rest = node.partition(":")
    # Namespaces may hold ':' (s3://bucket); names rarely do: split on the last one.
    namespace, _, name = rest.rpartition(":")
    return kind, namespace, name


def lineage_edges(session: Session, start: str, depth: int) -> dict[tuple[str, str], set[str]]:
    """The edges (origin, destination) within ``depth`` job hops of ``start``, each with the
    dataset versions it carried.

    Raises:
        NotFound: no event mentions the node.
    """
    edges: dict[tuple[str, str], set[str]] = {}
    seen = {start}
    frontier = {start}
    # Like Marquez, depth counts jobs: each job hop is two node hops (dataset → job → dataset).
    for _ in range(2 * min(depth, MAX_DEPTH) + 1):
        datasets = [n for n in frontier if n.startswith("dataset:")]
        jobs = [n for n in frontier if n.startswith("job:")]
        if not datasets and not jobs:
            break
        rows = session.exec(
            select(
                LineageEdge.job,
                LineageEdge.dataset,
                LineageEdge.direction,
                LineageEdge.dataset_version,
            )
            .where(or_(col(LineageEdge.dataset).in_(datasets), col(LineageEdge.job).in_(jobs)))
            .distinct()
        ).all()
        found: set[str] = set()
        for job, dataset, direction, version in rows:
            edge = (dataset, job) if direction == "in" else (job, dataset)
            carried = edges.setdefault(edge, set())
            if version is not None:
                carried.add(version)
            found.update((job, dataset))
        frontier = found - seen
        seen |= found
    if (
        not edges
        and not session.exec(
            select(LineageEdge.id).where(
                or_(col(LineageEdge.dataset) == start, col(LineageEdge.job) == start)
            )
        ).first()
    ):
        raise NotFound(f"no lineage mentions {start!r}")
    return edges


def lineage_graph(session: Session, start: str, depth: int) -> dict[str, Any]:
    """Marquez's graph shape around ``start``: nodes within ``depth`` job hops, with their edges.

    Raises:
        NotFound: no event mentions the node.
    """
    carried = lineage_edges(session, start, depth)
    edges = set(carried)
    versions: dict[str, set[str]] = {}
    for (origin, destination), seen_versions in carried.items():
        dataset = origin if origin.startswith("dataset:") else destination
        versions.setdefault(dataset, set()).update(seen_versions)
    nodes = sorted({n for edge in edges for n in edge} | {start})
    graph = []
    for node in nodes:
        kind, namespace, name = _split(node)
        data: dict[str, Any] = {"namespace": namespace, "name": name}
        if kind == "dataset":
            data["versions"] = sorted(versions.get(node, ()))
            if namespace == MODEL_NAMESPACE:
                data["type"] = "MODEL"
        graph.append(
            {
                "id": node,
                "type": "DATASET" if kind == "dataset" else "JOB",
                "data": data,
                "inEdges": [{"origin": a, "destination": b} for a, b in sorted(edges) if b == node],
                "outEdges": [
                    {"origin": a, "destination": b} for a, b in sorted(edges) if a == node
                ],
            }
        )
    return {"graph": graph}


def _upload_of(session: Session, dataset: str, version: int) -> dict[str, Any] | None:
    row = session.exec(
        select(DatasetVersion, IngestRun)
        .where(DatasetVersion.dataset_id == Dataset.id, Dataset.name == dataset)
        .where(DatasetVersion.number == version, IngestRun.id == DatasetVersion.run_id)
    ).first()
    if row is None:
        return None
    stored, run = row
    story = _quarantine_story(session, stored, run)
    return {
        "uploader": stored.uploader,
        "uploaded_at": stored.created_at.isoformat(),
        "source": stored.source,
        "run_id": stored.run_id,
        "filename": run.filename,
        **({"quarantine": story} if story is not None else {}),
        "content_hash": stored.content_hash,
        "row_count": stored.row_count,
        "contract": {
            "name": stored.contract_name,
            "version": stored.contract_version,
            "fingerprint": stored.contract_fingerprint,
        },
        "validation": stored.validation_summary,
        "pii": stored.pii_summary,
        "state": "live" if stored.deleted_at is None else "deleted",
        "deleted": deletion_of(stored),
    }


def deletion_of(version: DatasetVersion) -> dict[str, Any] | None:
    """Why a version's data is gone (None: it is not): when, retention or erasure, by whom,
    the version that replaced it."""
    if version.deleted_at is None:
        return None
    stone = version.tombstone or {}
    return {
        "at": as_utc(version.deleted_at).isoformat(),
        "reason": stone.get("reason", "deleted"),
        "by": stone.get("by", "unknown"),
        "replaced_by": stone.get("replaced_by"),
        "hold_overridden": stone.get("hold_overridden"),
    }


def _quarantine_story(
    session: Session, stored: DatasetVersion, run: IngestRun
) -> dict[str, Any] | None:
    """For a version whose upload held rows back: which rows were held and why, and each
    replay or correction that released rows into it (which rows, the checks they had failed,
    who released them and when), oldest first. Row numbers and check names, never a value."""
    if run.quarantine_id is None:
        return None
    batch = session.get(QuarantineBatch, run.quarantine_id)
    if batch is None:
        return None
    releases: list[dict[str, Any]] = []
    version, current = stored, run
    while current.kind != "ingest":
        report = current.validation_report or {}
        releases.append(
            {
                "version": version.number,
                "run_id": current.id,
                "kind": current.kind,
                "released_by": current.uploader,
                "released_at": current.finished_at.isoformat() if current.finished_at else None,
                "rows": report.get("released_rows", []),
                "had_failed": report.get("released_failures", []),
            }
        )
        base = (version.validation_summary or {}).get("released_from_version")
        if base is None:
            break
        earlier = session.exec(
            select(DatasetVersion, IngestRun).where(
                DatasetVersion.dataset_id == version.dataset_id,
                DatasetVersion.number == base,
                IngestRun.id == DatasetVersion.run_id,
            )
        ).first()
        if earlier is None:
            break
        version, current = earlier
    return {
        "batch": batch.id,
        "status": batch.status,
        "upload_run_id": batch.run_id,
        "rows_held_at_upload": batch.rows_total,
        "held_because": batch.failures,
        "rows_held_now": batch.rows_held,
        "releases": list(reversed(releases)),
    }


def model_provenance(session: Session, namespace: str, model: str, version: str) -> dict[str, Any]:
    """Every dataset version a model version was trained on, and each one's upload.

    Raises:
        NotFound: no training run produced that model version.
    """
    model_node = node_id("dataset", MODEL_NAMESPACE, model)
    runs = session.exec(
        select(LineageEdge.run_id, LineageEdge.job)
        .where(LineageEdge.dataset == model_node, LineageEdge.direction == "out")
        .where(LineageEdge.dataset_version == version)
        .distinct()
    ).all()
    if not runs:
        raise NotFound(f"no training run produced model {model!r} version {version!r}")
    training = []
    for run_id, job in sorted(runs, key=lambda r: (r[1], r[0] or "")):
        inputs = session.exec(
            select(LineageEdge.dataset, LineageEdge.dataset_version)
            .where(LineageEdge.run_id == run_id, LineageEdge.direction == "in")
            .distinct()
        ).all()
        described = []
        for dataset, dataset_version in sorted(inputs, key=lambda i: (i[0], i[1] or "")):
            _, ds_namespace, ds_name = _split(dataset)
            entry: dict[str, Any] = {
                "dataset": dataset,
                "name": ds_name,
                "version": dataset_version,
            }
            if ds_namespace == namespace and dataset_version and dataset_version.isdigit():
                entry["upload"] = _upload_of(session, ds_name, int(dataset_version))
            described.append(entry)
        training.append({"run_id": run_id, "job": job, "inputs": described})
    return {
        "model": {"name": model, "version": version},
        "training_runs": training,
        "needs_retraining": retraining_flags(session, model, version),
    }


def retraining_flags(session: Session, model: str, version: str | None) -> list[dict[str, Any]]:
    """Why a model version needs retraining (data it was trained on was erased), oldest first."""
    flags = session.exec(
        select(ModelFlag)
        .where(ModelFlag.model == model, ModelFlag.model_version == version)
        .order_by(col(ModelFlag.id))
    ).all()
    return [
        {
            "reason": f.reason,
            "at": as_utc(f.created_at).isoformat(),
            "erasure": f.erasure_id,
            "inputs": (f.detail or {}).get("inputs", []),
        }
        for f in flags
    ]


def version_impact(session: Session, namespace: str, dataset: str, version: int) -> dict[str, Any]:
    """Every run, model and downstream dataset that consumed a dataset version, transitively.

    Version-exact at the start (only runs that read that version); downstream datasets are
    followed at the versions the consuming runs wrote, or by name when no version is known.
    """
    start = node_id("dataset", namespace, dataset)
    queue: deque[tuple[str, str | None, list[str]]] = deque([(start, str(version), [start])])
    visited: set[tuple[str, str | None]] = set()
    models: list[dict[str, Any]] = []
    downstream: list[dict[str, Any]] = []
    jobs: dict[str, list[str]] = {}
    while queue:
        node, node_version, path = queue.popleft()
        if (node, node_version) in visited:
            continue
        visited.add((node, node_version))
        query = select(LineageEdge.run_id, LineageEdge.job).where(
            LineageEdge.dataset == node, LineageEdge.direction == "in"
        )
        if node_version is not None:
            query = query.where(
                or_(
                    col(LineageEdge.dataset_version) == node_version,
                    col(LineageEdge.dataset_version).is_(None),
                )
            )
        for run_id, job in session.exec(query.distinct()).all():
            jobs.setdefault(job, [*path, job])
            outputs = session.exec(
                select(LineageEdge.dataset, LineageEdge.dataset_version)
                .where(LineageEdge.direction == "out")
                .where(LineageEdge.run_id == run_id if run_id else LineageEdge.job == job)
                .distinct()
            ).all()
            for output, output_version in outputs:
                route = [*path, job, output]
                _, out_namespace, out_name = _split(output)
                if out_namespace == MODEL_NAMESPACE:
                    models.append({"model": out_name, "version": output_version, "path": route})
                    continue
                if (output, output_version) not in visited:
                    downstream.append({"dataset": output, "version": output_version, "path": route})
                    queue.append((output, output_version, route))
    unique_models = {(m["model"], m["version"]): m for m in models}
    for (name, model_version), entry in unique_models.items():
        entry["needs_retraining"] = bool(retraining_flags(session, name, model_version))
    unique_downstream = {(d["dataset"], d["version"]): d for d in downstream}
    return {
        "dataset": {"name": dataset, "version": version, "node": start},
        "models": sorted(unique_models.values(), key=lambda m: (m["model"], str(m["version"]))),
        "jobs": [{"job": job, "path": path} for job, path in sorted(jobs.items())],
        "datasets": sorted(
            unique_downstream.values(), key=lambda d: (d["dataset"], str(d["version"]))
        ),
    }


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>|!#~])")


def _md(value: Any) -> str:
    """Text anyone could have written (names, sources, uploaders), as Markdown shows it: each
    character that could start a link, image, HTML, emphasis or a table cell escaped, on one
    line."""
    return _MARKDOWN.sub(r"\\\1", " ".join(str(value).split()))


def provenance_markdown(report: dict[str, Any]) -> str:
    """The provenance report as Markdown for a ticket (what others wrote escaped)."""
    model = report["model"]
    lines = [f"# Provenance of model {_md(model['name'])} version {_md(model['version'])}", ""]
    for flag in report.get("needs_retraining", []):
        inputs = ", ".join(f"{_md(i['dataset'])} v{_md(i['version'])}" for i in flag["inputs"])
        lines += [f"**Needs retraining**: {_md(flag['reason'])} at {flag['at']} ({inputs}).", ""]
    for run in report["training_runs"]:
        lines += [f"## Training run {_md(run['run_id'])} ({_md(run['job'])})", ""]
        lines += [
            "| input | version | uploader | uploaded at | source | contract | fingerprint "
            "| valid |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for item in run["inputs"]:
            upload = item.get("upload") or {}
            contract = upload.get("contract") or {}
            validation = upload.get("validation") or {}
            gone = " (deleted)" if upload.get("state") == "deleted" else ""
            lines.append(
                f"| {_md(item['dataset'])} | {_md(item['version'])}{gone} "
                f"| {_md(upload.get('uploader', ''))} | {upload.get('uploaded_at', '')} "
                f"| {_md(upload.get('source') or '')} "
                f"| {_md(contract.get('name', ''))} {_md(contract.get('version', ''))} "
                f"| {str(contract.get('fingerprint', ''))[:12]} | {validation.get('valid', '')} |"
            )
        lines.append("")
        for item in run["inputs"]:
            columns = ((item.get("upload") or {}).get("pii") or {}).get("columns") or []
            redacted = [c for c in columns if c.get("action") not in (None, "none")]
            if redacted:
                lines.append(f"PII handling of {_md(item['dataset'])} v{_md(item['version'])}:")
                lines += [
                    f"- {_md(c['column'])}: {_md(c.get('entity') or '-')} → {_md(c['action'])} "
                    f"({_md(c['method'])}, {c['values_redacted']} values)"
                    for c in redacted
                ]
                lines.append("")
        for item in run["inputs"]:
            story = (item.get("upload") or {}).get("quarantine")
            if not story:
                continue
            why = ", ".join(
                f"{_md(f['column'] or '(row)')} {_md(f['check'])}: {f['rows']}"
                for f in story["held_because"]
            )
            lines.append(
                f"Quarantine of {_md(item['dataset'])} v{_md(item['version'])}: batch "
                f"{story['batch']} held {story['rows_held_at_upload']} row(s) ({why}); "
                f"{story['rows_held_now']} still held ({story['status']})."
            )
            for release in story["releases"]:
                rows = release["rows"]
                shown = ", ".join(str(r) for r in rows[:20]) + (" …" if len(rows) > 20 else "")
                lines.append(
                    f"- v{release['version']}: {release['kind']} by {_md(release['released_by'])} "
                    f"at {release['released_at']} released {len(rows)} row(s): {shown}"
                )
            lines.append("")
    return "\n".join(lines)


def impact_markdown(report: dict[str, Any]) -> str:
    """The impact report as Markdown for a ticket (what others wrote escaped)."""
    origin = report["dataset"]
    lines = [
        f"# Impact of {_md(origin['name'])} version {_md(origin['version'])}",
        "",
        "## Models",
        "",
    ]
    lines += [
        f"- {_md(m['model'])} v{_md(m['version'])}"
        + (" (**needs retraining**)" if m.get("needs_retraining") else "")
        + f": {' → '.join(_md(step) for step in m['path'])}"
        for m in report["models"]
    ] or ["- none"]
    lines += ["", "## Downstream datasets", ""]
    lines += [
        f"- {_md(d['dataset'])} v{_md(d['version'])}: {' → '.join(_md(s) for s in d['path'])}"
        for d in report["datasets"]
    ] or ["- none"]
    lines += ["", "## Jobs", ""]
    lines += [f"- {_md(j['job'])}" for j in report["jobs"]] or ["- none"]
    return "\n".join(lines) + "\n"
