"""``datagate`` commands that talk to a running gateway over HTTP (``gateway.client``).

Connection: ``--url``/``--key``, a ``--profile`` of the user's config file, the environment
(``DATAGATE_URL``/``DATAGATE_API_KEY``), the file's default profile, else
``http://127.0.0.1:8000`` and the admin key a local ``datagate serve`` left in
``$DATAGATE_HOME/admin.key`` (``ClientSettings.connection``). Exit codes: 0 stored, matched
or shown; 1 rejected or refused; 2 usage; 3 connection or authentication. A failure is one
line on standard error, never a traceback; results go to standard output, as a table on a
terminal and plain tab-separated lines otherwise, or as JSON with ``--json``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from gateway.client import DatagateClient, DatagateError
from gateway.settings import ClientSettings, ConfigError

OK, REJECTED, USAGE, UNREACHABLE = 0, 1, 2, 3
EXPORT_FORMATS = {".parquet": "parquet", ".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson"}

Url = Annotated[
    str | None,
    typer.Option(
        "--url", help="The gateway's address (DATAGATE_URL; default http://127.0.0.1:8000)."
    ),
]
Key = Annotated[
    str | None,
    typer.Option("--key", help="API key (DATAGATE_API_KEY; default the local admin key file)."),
]
ProfileName = Annotated[
    str | None,
    typer.Option(
        "--profile", help="A profile of the config file (~/.config/datagate/config.toml)."
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the answer as JSON, for scripts.")]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@contextmanager
def _client(url: str | None, key: str | None, profile: str | None) -> Iterator[DatagateClient]:
    """A client for the gateway; any failure ends the command with one line and its exit code."""
    try:
        address, secret = ClientSettings().connection(url, key, profile)
    except (ConfigError, ValidationError) as exc:
        _fail(str(exc).splitlines()[0], USAGE)
    client = DatagateClient(address, secret)
    try:
        yield client
    except httpx.TransportError as exc:
        _fail(f"cannot reach Datagate at {address} ({type(exc).__name__})", UNREACHABLE)
    except DatagateError as exc:
        problem = exc.problem
        status = problem.get("status")
        code = UNREACHABLE if status in (401, 403) else REJECTED
        detail = problem.get("detail") or ""
        _fail(f"{status} {problem.get('title')}" + (f": {detail}" if detail else ""), code)
    except OSError as exc:
        _fail(f"{exc.strerror or type(exc).__name__}: {exc.filename}", USAGE)
    finally:
        client.close()


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(code)


def _plain(model: BaseModel) -> dict[str, Any]:
    """A model as the API's JSON object (times as ISO 8601 text with their offset)."""
    return model.model_dump(mode="json", by_alias=True)


def _json(value: Any) -> None:
    """The API's own JSON for an answer (a model, a list of models, or a problem)."""
    if isinstance(value, BaseModel):
        value = _plain(value)
    elif isinstance(value, list):
        value = [_plain(v) for v in value]
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _table(columns: list[str], rows: list[list[Any]]) -> None:
    """A table on a terminal; tab-separated lines, header first, otherwise."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    if out.is_terminal:
        table = Table(*columns)
        for row in cells:
            table.add_row(*row)
        out.print(table)
        return
    for row in [columns, *cells]:
        sys.stdout.write(
            "\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row) + "\n"
        )


@dataclass(frozen=True)
class _Bar:
    """What the client reports to a progress bar: bytes moved, and a queued run's stages."""

    moved: Callable[[int, int | None], None] | None = None
    stage: Callable[[str], None] | None = None


@contextmanager
def _transfer(description: str, afterwards: str | None = None) -> Iterator[_Bar]:
    """A progress bar on a terminal while bytes move (``afterwards`` once all have gone, then
    the stage of an asynchronous ingest); nothing otherwise."""
    if not err.is_terminal:
        yield _Bar()
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=True,
    )
    task = bar.add_task(description, total=None)

    def moved(done: int, total: int | None) -> None:
        bar.update(task, completed=done, total=total)
        if afterwards is not None and total is not None and done >= total:
            bar.update(task, description=afterwards)

    def stage(name: str) -> None:
        bar.update(task, description=f"ingesting: {name}")

    with bar:
        yield _Bar(moved, stage)


def _dataset_at(text: str, *, version_required: bool) -> tuple[str, int | None]:
    dataset, _, version = text.partition("@")
    if not dataset or (version_required and not version) or (version and not version.isdigit()):
        form = "DATASET@VERSION" if version_required else "DATASET[@VERSION]"
        raise typer.BadParameter(f"{text!r} is not {form} (e.g. customers@3)")
    return dataset, int(version) if version else None


def _model_at(text: str) -> tuple[str, str]:
    model, _, version = text.rpartition("@")
    if not model or not version:
        raise typer.BadParameter(f"{text!r} is not MODEL@VERSION (e.g. churn@3)")
    return model, version


def _pairs(texts: list[str] | None, option: str) -> list[tuple[str, str]]:
    pairs = []
    for text in texts or []:
        name, sep, value = text.partition("=")
        if not name or not sep:
            raise typer.BadParameter(f"{text!r} is not NAME=VALUE", param_hint=option)
        pairs.append((name, value))
    return pairs


def _number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise typer.BadParameter(
            f"{name}: {value!r} is not a number", param_hint="--metric"
        ) from None


# Pandera's checks on the frame's shape, which fail for a column rather than for rows.
SHAPE_CHECKS = {
    "column_in_dataframe": "column_in_dataframe (missing)",
    "column_in_schema": "column_in_schema (not in the contract)",
}


def _report(problem: dict[str, Any]) -> None:
    failures = (problem.get("report") or {}).get("failures") or []
    rows = [
        [
            f.get("column") or "(dataset)",
            SHAPE_CHECKS.get(f.get("check"), f.get("check")),
            "-" if f.get("check") in SHAPE_CHECKS else f.get("failing_rows"),
            ", ".join(f"row {e['row']}: {e['value']}" for e in f.get("examples", [])[:3]),
        ]
        for f in failures
    ]
    if rows:
        _table(["column", "check", "failing rows", "examples"], rows)


def _pii_rows(pii: dict[str, Any]) -> list[list[Any]]:
    """What was done to personal data, per column (columns scanned where none was found are
    left out)."""
    rows = []
    for column in pii.get("columns") or []:
        count = column.get("values_redacted") or 0
        if column.get("method") == "declared":
            done = f"{column['entity']} -> {column['action']}, {count:,} values"
        elif count:
            found = ", ".join(
                f"{entity} {n:,}" for entity, n in (column.get("spans") or {}).items()
            )
            done = f"scanned: {count:,} values redacted" + (f" ({found})" if found else "")
        else:
            continue
        rows.append([f"pii {column['column']}", done])
    return rows


def register(app: typer.Typer) -> None:
    """Add the client commands to the ``datagate`` command line."""
    runs = typer.Typer(help="Ingest runs.", no_args_is_help=True)
    app.add_typer(runs, name="runs")

    @app.command()
    def upload(
        file: Annotated[Path, typer.Argument(help="The file to upload.", show_default=False)],
        dataset: Annotated[str, typer.Option("--dataset", "-d", help="The dataset it is for.")],
        source: Annotated[
            str | None, typer.Option(help="Where the data came from (lineage input).")
        ] = None,
        format: Annotated[
            str | None,
            typer.Option(help="csv, parquet, ndjson, json or arrow (default: detected)."),
        ] = None,
        no_wait: Annotated[
            bool,
            typer.Option(
                "--no-wait", help="Hand the file over for asynchronous ingest; print the run id."
            ),
        ] = False,
        url: Url = None,
        key: Key = None,
        profile: ProfileName = None,
        as_json: AsJson = False,
    ) -> None:
        """Upload a file: exit 0 when stored or matched, 1 when rejected (the report is shown).
        Large files are ingested asynchronously and followed to the end."""
        with _client(url, key, profile) as client:
            if no_wait:
                with _transfer(f"uploading {file.name}") as bar:
                    queued = client.submit(
                        file, dataset, source=source, format=format, progress=bar.moved
                    )
                if as_json:
                    _json(queued)
                else:
                    sys.stdout.write(f"{queued.status}: run {queued.run_id}\n")
                    err.print(f"follow it with: datagate runs show {queued.run_id}", markup=False)
                return
            try:
                with _transfer(
                    f"uploading {file.name}", "validating, redacting and storing…"
                ) as bar:
                    answer = client.upload(
                        file,
                        dataset,
                        source=source,
                        format=format,
                        progress=bar.moved,
                        stage=bar.stage,
                    )
            except DatagateError as exc:
                if as_json:
                    _json(exc.problem)
                else:
                    _report(exc.problem)
                raise
        if as_json:
            _json(answer)
            return
        version = answer.version
        verb = "stored" if answer.created else "matched (identical data already stored)"
        sys.stdout.write(
            f"{verb}: {version.dataset}@{version.version}, {version.row_count:,} rows, "
            f"run {answer.run_id}\n"
        )

    @app.command()
    def datasets(
        url: Url = None, key: Key = None, profile: ProfileName = None, as_json: AsJson = False
    ) -> None:
        """The datasets the key may see."""
        with _client(url, key, profile) as client:
            found = client.datasets()
        if as_json:
            _json(found)
            return
        _table(
            ["dataset", "versions", "latest", "rows", "contract"],
            [
                [
                    d.name,
                    d.version_count,
                    d.latest_version and d.latest_version.version,
                    d.latest_version and d.latest_version.row_count,
                    d.contract and f"{d.contract.name} {d.contract.version}",
                ]
                for d in found
            ],
        )

    @app.command()
    def versions(
        dataset: Annotated[str, typer.Argument(help="The dataset.", show_default=False)],
        url: Url = None,
        key: Key = None,
        profile: ProfileName = None,
        as_json: AsJson = False,
    ) -> None:
        """Every version of a dataset, oldest first."""
        with _client(url, key, profile) as client:
            found = client.versions(dataset)
        if as_json:
            _json(found)
            return
        _table(
            ["version", "rows", "created", "uploader", "source", "content hash"],
            [
                [
                    v.version,
                    v.row_count,
                    v.created_at.isoformat(),
                    v.uploader,
                    v.source,
                    v.content_hash[:12],
                ]
                for v in found
            ],
        )

    @app.command()
    def diff(
        old: Annotated[str, typer.Argument(help="DATASET@VERSION before.", show_default=False)],
        new: Annotated[str, typer.Argument(help="DATASET@VERSION after.", show_default=False)],
        url: Url = None,
        key: Key = None,
        profile: ProfileName = None,
        as_json: AsJson = False,
    ) -> None:
        """What changed between two versions of a dataset: columns, rows added / removed /
        changed (by the contract's primary_key, else whole-row hashes), changed cells per
        column, sample keys as pseudonyms."""
        dataset, first = _dataset_at(old, version_required=True)
        other_dataset, second = _dataset_at(new, version_required=True)
        if other_dataset != dataset:
            _fail("both versions must be of one dataset", USAGE)
        assert first is not None
        assert second is not None
        with _client(url, key, profile) as client:
            found = client.diff(dataset, first, second)
        if as_json:
            _json(found)
            return
        shown = _plain(found)
        schema, rows = shown["schema"], shown["rows"]
        out.print(
            f"{dataset}: v{first} → v{second}, rows matched by "
            + (", ".join(shown["key"]) if shown["key"] else "whole-row hashes"),
            markup=False,
        )
        for label, columns in (("added", schema["added"]), ("removed", schema["removed"])):
            if columns:
                out.print(f"columns {label}: {', '.join(columns)}", markup=False)
        for change in schema["type_changed"]:
            out.print(f"column {change['column']}: {change['from']} → {change['to']}", markup=False)
        changed = "-" if rows["changed"] is None else rows["changed"]
        _table(
            ["added", "removed", "changed", "unchanged"],
            [[rows["added"], rows["removed"], changed, rows["unchanged"]]],
        )
        cells = {c: n for c, n in (shown["changed_cells"] or {}).items() if n}
        if cells:
            _table(["column", "changed cells"], [[c, n] for c, n in cells.items()])
        if shown["note"]:
            err.print(f"note: {shown['note']}", markup=False)

    @app.command()
    def show(
        target: Annotated[
            str, typer.Argument(help="DATASET or DATASET@VERSION.", show_default=False)
        ],
        url: Url = None,
        key: Key = None,
        profile: ProfileName = None,
        as_json: AsJson = False,
    ) -> None:
        """A dataset (with its latest version) or one version."""
        dataset, number = _dataset_at(target, version_required=False)
        with _client(url, key, profile) as client:
            found = client.dataset(dataset) if number is None else client.version(dataset, number)
        if as_json:
            _json(found)
            return
        shown = _plain(found)
        version = shown if number is not None else shown.get("latest_version") or {}
        rows = [
            [k, version.get(k)]
            for k in (
                "dataset",
                "version",
                "row_count",
                "byte_size",
                "created_at",
                "uploader",
                "source",
                "run_id",
                "content_hash",
            )
        ]
        rows.append(["contract", json.dumps(version.get("contract"))])
        rows.append(["validation", json.dumps(version.get("validation"))])
        rows += [[f"column {c['name']}", c["type"]] for c in version.get("schema") or []]
        rows += _pii_rows(version.get("pii") or {})
        _table(["field", "value"], rows)

    @app.command()
    def download(
        target: Annotated[str, typer.Argument(help="DATASET@VERSION.", show_default=False)],
        output: Annotated[
            Path,
            typer.Option(
                "--output",
                "-o",
                help="The file to write; its suffix picks the format (.parquet, .csv, .ndjson).",
            ),
        ],
        url: Url = None,
        key: Key = None,
        profile: ProfileName = None,
    ) -> None:
        """Download a version's data, streamed (the file appears only once complete)."""
        dataset, number = _dataset_at(target, version_required=True)
        assert number is not None
        fmt = EXPORT_FORMATS.get(output.suffix.lower())
        if fmt is None:
            raise typer.BadParameter(
                f"{output.name!r}: the suffix must be one of {', '.join(EXPORT_FORMATS)}",
                param_hint="--output",
            )
        with (
            _client(url, key, profile) as client,
            _transfer(f"downloading {dataset}@{number}") as bar,
        ):
            client.download(dataset, number, output, format=fmt, progress=bar.moved)
        err.print(f"wrote {output} ({output.stat().st_size:,} bytes, {fmt})", markup=False)

    @runs.command("show")
    def runs_show(
        run_id: Annotated[str, typer.Argument(help="The run's id.", show_default=False)],
        wait: Annotated[
            float,
            typer.Option(
                min=0, max=60, help="Seconds to wait for a queued or running run to finish."
            ),
        ] = 0,
        url: Url = None,
        key: Key = None,
        profile: ProfileName = None,
        as_json: AsJson = False,
    ) -> None:
        """An ingest run: status (and stage, while it runs), report and version."""
        with _client(url, key, profile) as client:
            found = client.run(run_id, wait)
        if as_json:
            _json(found)
            return
        _table(
            ["field", "value"],
            [
                [k, v if not isinstance(v, (dict, list)) else json.dumps(v)]
                for k, v in _plain(found).items()
            ],
        )

    contracts_group = next(
        (group.typer_instance for group in app.registered_groups if group.name == "contracts"),
        None,
    )
    if contracts_group is None:  # pragma: no cover - the group is defined in gateway.cli
        raise RuntimeError("the contracts command group is missing")

    @contracts_group.command("show")
    def contracts(
        name: Annotated[
            str | None, typer.Argument(help="One contract's name.", show_default=False)
        ] = None,
        url: Url = None,
        key: Key = None,
        profile: ProfileName = None,
        as_json: AsJson = False,
    ) -> None:
        """The loaded contracts, or one contract's columns."""
        with _client(url, key, profile) as client:
            if name is None:
                listed = client.contracts()
            else:
                one = client.contract(name)
        if as_json:
            _json(listed if name is None else one)
            return
        if name is None:
            for broken in listed.errors:
                err.print(f"warning: {broken.file} is not loaded: {broken.reason}", markup=False)
            _table(
                ["contract", "version", "owner", "columns"],
                [[c.name, c.version, c.owner, len(c.columns)] for c in listed.contracts],
            )
            return
        _table(
            ["column", "dtype", "nullable", "unique", "checks", "pii"],
            [
                [
                    c.name,
                    c.dtype,
                    c.nullable,
                    c.unique,
                    ", ".join(k.name for k in c.checks),
                    c.pii and f"{c.pii.entity} ({c.pii.action})",
                ]
                for c in one.columns
            ],
        )

    @contracts_group.command("check")
    def contracts_check(
        candidates: Annotated[
            Path, typer.Argument(help="The candidate contracts folder (or one file).")
        ],
        against: Annotated[
            str | None,
            typer.Option(
                "--against",
                help="The gateway to check against (DATAGATE_URL; default http://127.0.0.1:8000).",
            ),
        ] = None,
        key: Key = None,
        profile: ProfileName = None,
        versions: Annotated[
            int,
            typer.Option(min=0, max=100, help="How many of the latest stored versions to run."),
        ] = 1,
        dataset: Annotated[
            str | None, typer.Option(help="Check only this contract of the folder.")
        ] = None,
        as_json: AsJson = False,
    ) -> None:
        """For CI on a contract pull request: lint the candidate folder, compare each contract
        with the version the gateway serves, and run it on the latest stored versions (here,
        on a downloaded copy: the gateway never runs code sent to it). Markdown for a pull
        request comment. Exit 1 when a contract does not load, a change is incompatible
        without a major version bump, or a stored version fails."""
        from gateway.contract_check import check_candidates, check_markdown
        from gateway.contracts import load_contract_path
        from gateway.settings import Settings
        from privacy import PiiEngine

        try:
            catalog = load_contract_path(candidates)
        except FileNotFoundError as exc:
            _fail(str(exc), USAGE)
        if dataset is not None and dataset not in catalog.contracts:
            _fail(f"{candidates} defines no loadable contract {dataset!r}", USAGE)
        settings = Settings()
        engine = PiiEngine(settings.spacy_model or None, settings.pii_workers)
        try:
            with _client(against, key, profile) as client:
                outcome = check_candidates(
                    client,
                    catalog,
                    engine,
                    versions=versions,
                    datasets=None if dataset is None else [dataset],
                    chunk_rows=settings.ingest_chunk_rows,
                )
        finally:
            engine.close()  # its worker processes, before the interpreter tears down
        if as_json:
            _json(outcome.as_dict())
        else:
            sys.stdout.write(check_markdown(outcome))
        if not outcome.passed:
            raise typer.Exit(REJECTED)


def _tree_lines(graph: dict[str, Any], start: str, direction: str) -> list[str]:
    """Indented lines following ``direction`` ("inEdges" upstream, "outEdges" downstream)."""
    nodes = {node["id"]: node for node in graph.get("graph", [])}
    lines: list[str] = []

    def walk(node_id: str, depth: int, seen: frozenset[str]) -> None:
        for edge in nodes.get(node_id, {}).get(direction, []):
            other = edge["origin"] if direction == "inEdges" else edge["destination"]
            lines.append("  " * depth + ("<- " if direction == "inEdges" else "-> ") + other)
            if other not in seen:
                walk(other, depth + 1, seen | {other})

    walk(start, 1, frozenset({start}))
    return lines


def register_audit(app: typer.Typer) -> None:
    """Add the lineage and audit commands."""
    audit = next(
        (group.typer_instance for group in app.registered_groups if group.name == "audit"), None
    )
    if audit is None:  # pragma: no cover - the audit group is defined in gateway.cli
        raise RuntimeError("the audit command group is missing")

    @app.command()
    def lineage(
        node: Annotated[
            str,
            typer.Argument(
                help="dataset:NAMESPACE:NAME or job:NAMESPACE:NAME.", show_default=False
            ),
        ],
        depth: Annotated[int, typer.Option(help="How many jobs away to follow.")] = 20,
        url: Url = None,
        key: Key = None,
        profile: ProfileName = None,
        as_json: AsJson = False,
    ) -> None:
        """The lineage around a node, as a tree: what it came from and what used it."""
        with _client(url, key, profile) as client:
            answer = client.lineage(node, depth)
        if as_json:
            _json(answer)
            return
        graph = _plain(answer)
        sys.stdout.write(node + "\n")
        upstream, downstream = (
            _tree_lines(graph, node, "inEdges"),
            _tree_lines(graph, node, "outEdges"),
        )
        sys.stdout.write("".join(f"{line}\n" for line in upstream + downstream))

    @app.command("training-run")
    def training_run(
        target: Annotated[str, typer.Argument(help="MODEL@VERSION it produced.")],
        inputs: Annotated[
            list[str],
            typer.Option(
                "--input",
                "-i",
                metavar="DATASET@VERSION",
                help="A dataset version it was trained on (repeat for each).",
            ),
        ],
        metric: Annotated[
            list[str] | None,
            typer.Option(metavar="NAME=NUMBER", help="A metric of the model (repeatable)."),
        ] = None,
        param: Annotated[
            list[str] | None,
            typer.Option(metavar="NAME=VALUE", help="A training parameter (repeatable)."),
        ] = None,
        url: Url = None,
        key: Key = None,
        profile: ProfileName = None,
        as_json: AsJson = False,
    ) -> None:
        """Record a finished training run: the exact dataset versions a model version was
        trained on (for provenance and impact)."""
        model, version = _model_at(target)
        used = [_dataset_at(text, version_required=True) for text in inputs]
        metrics = {name: _number(name, value) for name, value in _pairs(metric, "--metric")}
        parameters = dict(_pairs(param, "--param"))
        with _client(url, key, profile) as client:
            answer = client.report_training(
                model={"name": model, "version": version},
                inputs=[{"dataset": d, "version": n} for d, n in used],
                metrics=metrics or None,
                parameters=parameters or None,
            )
        if as_json:
            _json(answer)
            return
        sys.stdout.write(
            f"recorded: training run {answer.run_id} of {model}@{version}, trained on "
            + ", ".join(f"{d}@{n}" for d, n in used)
            + "\n"
        )

    @app.command()
    def provenance(
        target: Annotated[str, typer.Argument(help="MODEL@VERSION.", show_default=False)],
        url: Url = None,
        key: Key = None,
        profile: ProfileName = None,
        as_json: AsJson = False,
    ) -> None:
        """Everything behind a model version: inputs, uploads, contracts, PII handling."""
        model, version = _model_at(target)
        with _client(url, key, profile) as client:
            if as_json:
                _json(client.provenance(model, version))
            else:
                sys.stdout.write(client.provenance_markdown(model, version))

    @app.command()
    def impact(
        target: Annotated[str, typer.Argument(help="DATASET@VERSION.", show_default=False)],
        url: Url = None,
        key: Key = None,
        profile: ProfileName = None,
        as_json: AsJson = False,
    ) -> None:
        """Every model and downstream job or dataset that used a dataset version."""
        dataset, number = _dataset_at(target, version_required=True)
        with _client(url, key, profile) as client:
            if as_json:
                _json(client.impact(dataset, number or 0))
            else:
                sys.stdout.write(client.impact_markdown(dataset, number or 0))

    @audit.command("log")
    def audit_log(
        actor: Annotated[str | None, typer.Option(help="Only this key's name.")] = None,
        action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
        dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
        since: Annotated[str | None, typer.Option(help="ISO 8601 time.")] = None,
        until: Annotated[str | None, typer.Option(help="ISO 8601 time.")] = None,
        limit: Annotated[int, typer.Option(help="At most this many entries.")] = 100,
        url: Url = None,
        key: Key = None,
        profile: ProfileName = None,
        as_json: AsJson = False,
    ) -> None:
        """The audit trail, newest first (auditor keys)."""
        with _client(url, key, profile) as client:
            found = client.audit_log(
                actor=actor, action=action, dataset=dataset, since=since, until=until, limit=limit
            )
        if as_json:
            _json(found)
            return
        _table(
            ["seq", "at", "actor", "action", "target", "outcome"],
            [
                [e.seq, e.at.isoformat(), e.actor, e.action, e.target, e.outcome]
                for e in found.entries
            ],
        )
