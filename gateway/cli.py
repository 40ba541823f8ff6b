"""The ``datagate`` command line."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from gateway import cli_client
from gateway.settings import Settings


class _UntypedArgument(typer.core.TyperArgument):
    """An argument whose help shows its name alone, without Typer's ``<path>`` type column."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _name_placeholders(command: Any) -> None:
    """Help in the classic style, for ``command`` and every command below it: a value shows
    its name (``--dataset DATASET``), a choice its values (``[admin|producer]``), a flag
    nothing. Typer 0.29 writes type names instead (``<str>``, ``<bool>``, also for ``--help``).
    """
    help_option = command.get_help_option(typer.Context(command))
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if isinstance(param, typer.core.TyperArgument):
            param.__class__ = _UntypedArgument
            param.metavar = param.metavar or (param.name or "value").upper()
        if param.metavar is not None:
            continue
        if getattr(param, "is_flag", False):
            param.metavar = ""
            continue
        described = getattr(param, "type_descriptor", None)
        choices = getattr(described, "choices", None)
        if choices:
            param.metavar = "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
        else:
            param.metavar = (param.name or "value").upper()
    for sub in getattr(command, "commands", {}).values():
        _name_placeholders(sub)


class _PlainHelp(typer.core.TyperGroup):
    """The root command group: every placeholder in the help is named (``_name_placeholders``),
    once all parameters are there (Typer adds the completion options after building it)."""

    _named = False

    def get_params(self, ctx: Any) -> list[Any]:
        if not self._named:
            self._named = True
            _name_placeholders(self)
        params: list[Any] = super().get_params(ctx)
        return params


# Tracebacks never show local variables: they may hold keys or data.
app = typer.Typer(
    help="Datagate: data governance and validation gateway.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    cls=_PlainHelp,
)
db_app = typer.Typer(help="Metadata database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
privacy_app = typer.Typer(help="Privacy administration.", no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
FIRST_ADMIN_KEY_FILE = "admin.key"
# gateway.metrics reads the same variable; not imported here, because prometheus_client picks
# its storage when first imported and must see the variable set.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _migrated_engine(settings: Settings) -> Any:
    from gateway.db import make_engine, migrate

    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    return engine


def _first_start_admin_key(settings: Settings) -> None:
    # The embedded default must be usable at once: with no key yet and no DATAGATE_ADMIN_KEY,
    # create an admin key and leave it in a 0600 file for the person who started the server.
    from gateway.keys import create_key, list_keys

    if settings.admin_key is not None:
        return
    engine = _migrated_engine(settings)
    try:
        if list_keys(engine):
            return
        _, secret = create_key(engine, "admin", "first-admin")
    finally:
        engine.dispose()
    path = settings.home / FIRST_ADMIN_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    typer.echo(f"created an admin API key; it is in {path.resolve()} (mode 0600)")


def _configure_logging(settings: Settings) -> None:
    from gateway.logs import configure_logging

    configure_logging(settings.log_level, settings.resolved_log_format)


def _fresh_metrics_dir(settings: Settings) -> None:
    # Worker processes share counters through files in this folder (prometheus-client's
    # multiprocess mode); it must exist and be empty before the first worker starts, and be
    # in the environment before any worker imports prometheus_client. Each `serve` gets its
    # own folder (two may share a home); folders of stopped ones are removed.
    if os.environ.get(MULTIPROC_ENV):
        folder = Path(os.environ[MULTIPROC_ENV])
        shutil.rmtree(folder, ignore_errors=True)
    else:
        from gateway.processes import pid_alive

        parent = (settings.home / "metrics").resolve()
        for old in parent.glob("*"):
            if not old.name.isdigit() or not pid_alive(int(old.name)):
                shutil.rmtree(old, ignore_errors=True)
        folder = parent / str(os.getpid())
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(folder)


def _startable_settings() -> Settings:
    """The settings a long-running process (``serve``, ``worker``) may start with; it exits
    with code 2 on unsafe production settings or an unusable PII key."""
    settings = Settings()
    _configure_logging(settings)
    problems = settings.production_problems()
    if problems:
        typer.echo("refusing to start in production mode: " + "; ".join(problems), err=True)
        raise typer.Exit(2)
    try:
        settings.resolved_pii_key()
    except ValueError as exc:
        typer.echo(f"refusing to start: {exc}", err=True)
        raise typer.Exit(2) from exc
    return settings


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (DATAGATE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (DATAGATE_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="Uvicorn worker processes.")] = 1,
) -> None:
    """Run the gateway with uvicorn."""
    import uvicorn

    settings = _startable_settings()
    _fresh_metrics_dir(settings)
    # Migrate once here, before any worker starts.
    _migrated_engine(settings).dispose()
    _first_start_admin_key(settings)
    config = uvicorn.Config(
        "gateway.cli:build_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=settings.log_level,
        # Datagate's own structured handler formats uvicorn's records; each request is logged
        # once, as a structured event, by the request middleware.
        log_config=None,
        access_log=False,
    )
    if workers == 1:
        server = uvicorn.Server(config)
        server.run()
        if not server.started:  # as uvicorn.run: a failed start-up is a failed command
            raise typer.Exit(3)
        return
    from uvicorn.supervisors import Multiprocess

    os.environ[SUPERVISED_ENV] = "1"  # the workers inherit it: they exit with the supervisor
    Multiprocess(config, sockets=[_tcp_listener(config)]).run()


@app.command()
def worker(
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Ingests this process runs at once.")
    ] = 2,
) -> None:
    """Run asynchronous ingests from the PostgreSQL job queue: any number of workers, on any
    machine that reaches the database and the snapshot store."""
    from gateway.jobs import QUEUE, procrastinate_app
    from gateway.services import build_services

    settings = _startable_settings()
    if not settings.resolved_database_url.startswith("postgresql"):
        typer.echo(
            "error: workers take jobs from PostgreSQL (DATAGATE_DATABASE_URL); on the embedded "
            "default `datagate serve` runs asynchronous ingests itself",
            err=True,
        )
        raise typer.Exit(2)
    services = build_services(settings)
    try:
        typer.echo(f"worker {services.instance.id}: taking ingest jobs ({concurrency} at once)")
        procrastinate_app(services).run_worker(queues=[QUEUE], concurrency=concurrency)
    finally:
        services.close()


class SampleDataset(StrEnum):
    """The example contracts ``datagate sample`` writes data for."""

    customers = "customers"


SAMPLE_WRITERS = {".csv": "write_csv", ".parquet": "write_parquet", ".ndjson": "write_ndjson"}


@app.command()
def sample(
    dataset: Annotated[
        SampleDataset, typer.Argument(help="The example contract to fit: customers.")
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The file to write: .csv, .parquet or .ndjson."),
    ],
    rows: Annotated[int, typer.Option(min=1, max=10_000_000, help="How many rows.")] = 1000,
    seed: Annotated[int, typer.Option(help="The same seed writes the same rows.")] = 7,
) -> None:
    """Write seeded sample data that passes an example contract; its free-text notes name
    people, e-mail addresses and phone numbers, for the PII scan to find."""
    from gateway.samples import customers

    writer = SAMPLE_WRITERS.get(output.suffix.lower())
    if writer is None:
        raise typer.BadParameter(
            f"{output.name!r}: the suffix must be one of {', '.join(SAMPLE_WRITERS)}",
            param_hint="--output",
        )
    frame = customers(rows, seed, notes=True)
    try:
        getattr(frame, writer)(output)
    except OSError as exc:
        reason = exc.strerror or str(exc).splitlines()[0]
        typer.echo(f"error: cannot write {output}: {reason}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {output}: {rows:,} {dataset.value} rows", err=True)


def _tcp_listener(config: Any) -> socket.socket:
    """The listening socket the worker processes share.

    uvicorn's own ``bind_socket`` leaves the protocol number at 0, so asyncio does not set
    TCP_NODELAY on accepted connections and every keep-alive request after the first waits
    ~40 ms for a delayed ACK (Kludex/uvicorn#3149). Binding with IPPROTO_TCP avoids that.
    """
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        typer.echo(f"cannot listen on {config.host}:{config.port}: {exc}", err=True)
        raise typer.Exit(1) from exc
    sock.set_inheritable(True)
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d with %d workers",
        config.host,
        sock.getsockname()[1],
        config.workers,
    )
    return sock


SUPERVISED_ENV = "DATAGATE_SUPERVISED_WORKER"


def build_app() -> object:
    """App factory for uvicorn: settings from the environment."""
    from gateway.app import create_app

    if os.environ.get(SUPERVISED_ENV):
        from gateway.processes import exit_with_parent

        exit_with_parent()
    settings = Settings()
    _configure_logging(settings)
    return create_app(settings)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations to DATAGATE_DATABASE_URL."""
    settings = Settings()
    _configure_logging(settings)
    engine = _migrated_engine(settings)
    typer.echo(f"database at head ({engine.dialect.name})")
    engine.dispose()


# polars allocates through its own jemalloc; returning freed pages at once keeps the peak
# memory of an ingest near the size of its data instead of holding every transient buffer.
# Set before polars is imported; an operator's own setting wins.
JEMALLOC_CONF = "dirty_decay_ms:0,muzzy_decay_ms:0"


def _expiry(text: str | None) -> datetime | None:
    if not text:
        return None
    if text[-1] in "dh" and text[:-1].isdigit():
        unit = "days" if text[-1] == "d" else "hours"
        return datetime.now(UTC) + timedelta(**{unit: int(text[:-1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither an ISO 8601 time (2027-01-31T00:00:00+00:00) nor a duration "
            "like 30d or 12h",
            param_hint="--expires",
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment <= datetime.now(UTC):
        raise typer.BadParameter(f"{text} is in the past", param_hint="--expires")
    return moment


class Role(StrEnum):
    """An API key's role."""

    admin = "admin"
    producer = "producer"
    consumer = "consumer"
    auditor = "auditor"


def _unknown_datasets(settings: Settings, engine: Any, names: list[str]) -> list[str]:
    """The names that are neither a loaded contract's dataset nor a dataset with versions."""
    from sqlmodel import Session, select

    from gateway.contracts import load_contracts
    from gateway.models import Dataset

    catalog = load_contracts(settings.contracts_dir)
    known = set(catalog.contracts) | set(catalog.unavailable)
    with Session(engine) as session:
        known |= set(session.exec(select(Dataset.name)).all())
    return [name for name in names if name != "*" and name not in known]


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="What the key may do.")],
    name: Annotated[
        str, typer.Option(help="Who or what uses the key (recorded as uploader).")
    ] = "api-key",
    datasets: Annotated[
        str | None,
        typer.Option(help="Producer/consumer keys: comma-separated datasets, or '*' for all."),
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="ISO time, or a duration like 30d or 12h.")
    ] = None,
    allow_unknown: Annotated[
        bool,
        typer.Option(
            "--allow-unknown", help="Accept dataset names no contract or version knows (yet)."
        ),
    ] = False,
) -> None:
    """Create a key. The secret alone goes to standard output (KEY=$(datagate keys create ...));
    what it is goes to standard error. Only its hash is stored: it is shown this once."""
    from gateway.errors import InvalidRequest
    from gateway.keys import create_key, key_scope

    names = None if datasets is None else [d.strip() for d in datasets.split(",") if d.strip()]
    try:
        key_scope(role.value, names)  # refuse before touching the database
    except InvalidRequest as exc:
        raise typer.BadParameter(exc.detail, param_hint="--datasets/--role") from exc
    expiry = _expiry(expires)
    settings = Settings()
    engine = _migrated_engine(settings)
    try:
        unknown = [] if allow_unknown or not names else _unknown_datasets(settings, engine, names)
        if unknown:
            raise typer.BadParameter(
                f"no contract or stored version knows {', '.join(map(repr, unknown))} "
                "(a typo?); --allow-unknown creates the key all the same",
                param_hint="--datasets",
            )
        row, secret = create_key(engine, role.value, name, names, expiry)
    finally:
        engine.dispose()
    scope = row.datasets or "all"
    typer.echo(
        f"created key {row.id}: role {row.role}, datasets {scope}, "
        f"expires {row.expires_at.isoformat() if row.expires_at else 'never'}; "
        "the secret is shown once, on standard output: store it now",
        err=True,
    )
    typer.echo(secret)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    from gateway.keys import list_keys

    engine = _migrated_engine(Settings())
    try:
        for row in list_keys(engine):
            state = "revoked" if row.revoked_at else "active"
            typer.echo(
                f"{row.id}  {row.role:9s} {state:8s} {row.name}  datasets={row.datasets or 'all'}"
                f"  expires={row.expires_at or 'never'}"
            )
    finally:
        engine.dispose()


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by id."""
    from gateway.errors import NotFound
    from gateway.keys import revoke_key

    engine = _migrated_engine(Settings())
    try:
        revoke_key(engine, key_id)
    except NotFound as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    typer.echo(f"revoked {key_id}")


audit_app = typer.Typer(help="Audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
retention_app = typer.Typer(help="Retention of stored versions.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


@retention_app.command("apply")
def retention_apply(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be deleted; delete nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The outcome as JSON.")] = False,
) -> None:
    """Apply every contract's retention now (a gateway also does it periodically): expired
    versions' data is deleted and their rows stay as tombstones; held versions, the latest
    one and versions models were trained on (unless released) are kept."""
    from gateway.lifecycle import apply_retention
    from gateway.services import build_services

    settings = _startable_settings()
    services = build_services(settings, pii_engine=_pattern_engine())
    try:
        outcome = apply_retention(
            services,
            services.catalog,
            dry_run=dry_run,
            record=None if dry_run else services.audit.record,
            actor="system:retention (datagate retention apply)",
        )
    finally:
        services.close()
    if as_json:
        typer.echo(json.dumps(outcome.as_dict(), indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    for expiry in outcome.expired:
        typer.echo(f"{verb}: {expiry.dataset}@{expiry.version} ({expiry.reason})")
    for kept in outcome.kept:
        typer.echo(f"kept: {kept.dataset}@{kept.version} ({kept.reason})")
    typer.echo(f"{verb} {len(outcome.expired)} version(s), kept {len(outcome.kept)}", err=True)


def _pattern_engine() -> Any:
    """A PII engine without the NER model: retention scans no text."""
    from privacy import PiiEngine

    return PiiEngine(None)


class _ShowByDefault(TyperGroup):
    """``datagate contracts [NAME]`` shows contracts (the ``show`` command); ``datagate
    contracts diff ...`` runs a subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # click's Context
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["show", *args]
        return super().parse_args(ctx, args)


contracts_app = typer.Typer(
    cls=_ShowByDefault,
    help="Contracts: those a gateway loaded (show), and offline checks of contract files "
    "(diff, test, lint).",
)
app.add_typer(contracts_app, name="contracts")


@contracts_app.command("diff")
def contracts_diff(
    old: Annotated[Path, typer.Argument(help="The contract file (or folder) before the change.")],
    new: Annotated[Path, typer.Argument(help="The contract file (or folder) after it.")],
    dataset: Annotated[
        str | None, typer.Option(help="The contract to compare, when the files hold several.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of Markdown.")] = False,
) -> None:
    """Classify every change between two versions of a contract (backward and forward
    compatibility under the new one's mode), as Markdown for a pull request. Offline: no
    server, no database. Exit 1 on an incompatible change without a major version bump."""
    from gateway.contracts import load_contract_path
    from gateway.evolution import judge, markdown

    catalogs = []
    for path in (old, new):
        try:
            catalog = load_contract_path(path)
        except FileNotFoundError as exc:
            raise _fail(str(exc), 2) from None
        for error in catalog.errors:
            raise _fail(f"{error.file} does not load: {error.reason}", 2)
        catalogs.append(catalog.contracts)
    common = sorted(set(catalogs[0]) & set(catalogs[1]))
    if dataset is not None:
        if dataset not in common:
            raise _fail(f"both sides must define contract {dataset!r}", 2)
        common = [dataset]
    if not common:
        raise _fail("the two sides define no contract for the same dataset", 2)
    verdicts = {
        name: judge(catalogs[0][name].definition, catalogs[1][name].definition) for name in common
    }
    if as_json:
        typer.echo(json.dumps({name: v.as_dict() for name, v in verdicts.items()}, indent=2))
    else:
        typer.echo("\n".join(markdown(v, name) for name, v in verdicts.items()))
    if any(v.refused for v in verdicts.values()):
        raise typer.Exit(1)


@contracts_app.command("test")
def contracts_test(
    dataset: Annotated[str, typer.Argument(help="The dataset (contract) to validate against.")],
    file: Annotated[Path, typer.Argument(help="The file, in any upload format.")],
    contracts: Annotated[
        Path | None,
        typer.Option(help="The contracts folder (default DATAGATE_CONTRACTS_DIR, ./contracts)."),
    ] = None,
    format: Annotated[
        str | None, typer.Option(help="csv, parquet, ndjson, json or arrow (default: detected).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The whole outcome as JSON.")] = False,
) -> None:
    """Validate a local file against a contract with the gateway's own engine and report (PII
    detection included), offline: no server, no database, no network. Exit 1 when an upload
    of it would be refused."""
    from gateway.contracts import load_contracts
    from gateway.offline import check_file
    from privacy import PiiEngine

    folder = contracts or Settings().contracts_dir
    catalog = load_contracts(folder)
    contract = catalog.get(dataset)
    if contract is None:
        reason = catalog.unavailable.get(dataset) or f"no contract for dataset {dataset!r}"
        raise _fail(f"{reason} in {folder}", 2)
    if not file.is_file():
        raise _fail(f"no file at {file}", 2)
    settings = Settings()
    engine = PiiEngine(settings.spacy_model or None, settings.pii_workers)
    try:
        outcome = check_file(file, contract, engine, format)
    finally:
        engine.close()  # its worker processes, before the interpreter tears down
    if as_json:
        typer.echo(json.dumps(outcome, indent=2, default=str))
    else:
        report = outcome["report"] or {}
        problem = outcome["problem"]
        held = outcome["quarantine"]
        verdict = "would be stored" if problem is None else f"would be refused: {problem['title']}"
        typer.echo(
            f"{file.name} against {dataset} {contract.version}: {report.get('rows', 0)} rows, "
            f"{verdict}" + (f"; {held['rows']} row(s) held for review" if held else "")
        )
        for failure in report.get("failures", []):
            rows = ", ".join(str(e["row"]) for e in failure["examples"][:5])
            typer.echo(
                f"  {failure['column'] or '(row)'} {failure['check']}: "
                f"{failure['failing_rows']} row(s), e.g. row {rows or '-'}"
            )
        if problem is not None and not report.get("failures"):
            typer.echo(f"  {problem['detail']}")
    if outcome["problem"] is not None:
        raise typer.Exit(1)


@contracts_app.command("lint")
def contracts_lint(
    folder: Annotated[
        Path | None, typer.Argument(help="The contracts folder (default DATAGATE_CONTRACTS_DIR).")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 on warnings too (for CI).")] = False,
) -> None:
    """What would keep contract files from loading (exit 1), and warnings: checks naming
    columns the contract does not declare, checks no value can pass, columns named like
    personal data without a PII policy."""
    from gateway.contracts import load_contract_path
    from gateway.offline import lint

    target = folder or Settings().contracts_dir
    try:
        findings = lint(load_contract_path(target))
    except FileNotFoundError as exc:
        raise _fail(str(exc), 2) from None
    for finding in findings:
        typer.echo(f"{finding.level}: {finding.file}: {finding.message}")
    errors = sum(1 for f in findings if f.level == "error")
    typer.echo(f"{errors} error(s), {len(findings) - errors} warning(s)", err=True)
    if errors or (strict and findings):
        raise typer.Exit(1)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@audit_app.command("verify")
def audit_verify(
    expect: Annotated[
        str | None,
        typer.Option(help="A head printed by an earlier verify (SEQ:HASH) the trail must hold."),
    ] = None,
) -> None:
    """Recompute the audit trail's keyed chain against its signed checkpoint; exit 1 at the
    first broken link."""
    from gateway.audit_log import Head
    from gateway.services import audit_trail
    from gateway.snapshots import open_store

    try:
        head = Head.parse(expect) if expect else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--expect") from exc
    settings = Settings()
    engine = _migrated_engine(settings)
    try:
        store = open_store(settings.resolved_storage_url, "shared", settings.home)
        result = audit_trail(settings, engine, store, "verify").verify(head)
    finally:
        engine.dispose()
    if result["ok"]:
        typer.echo(
            f"audit trail intact: {result['checked']} entries; head {result['head']} "
            f"(checkpoint {result['checkpoint'] or 'none'})"
        )
        return
    typer.echo(
        f"audit trail broken at entry {result['broken_at']}: {result['reason']} "
        f"({result['checked']} entries before it are intact)",
        err=True,
    )
    raise typer.Exit(1)


@privacy_app.command("decrypt")
def privacy_decrypt(
    values: Annotated[list[str], typer.Argument(help="Values stored by the 'encrypt' action.")],
) -> None:
    """Decrypt values stored with redact 'encrypt' (needs DATAGATE_PII_KEY: admins only)."""
    from privacy import RedactionKey, decrypt_token

    key = RedactionKey(Settings().resolved_pii_key())
    failed = False
    for value in values:
        try:
            typer.echo(decrypt_token(value, key))
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            failed = True
    if failed:
        raise typer.Exit(1)


# Everything Datagate writes (database, snapshots, keys, spooled uploads, metrics) is its
# operator's alone: files 0600, folders 0700.
PRIVATE_UMASK = 0o077


cli_client.register(app)
cli_client.register_audit(app)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("_RJEM_MALLOC_CONF", JEMALLOC_CONF)
    os.umask(PRIVATE_UMASK)
    command = typer.main.get_command(app)
    try:
        code = command.main(standalone_mode=False)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help (already shown
            message = exc.format_message()  # when rich renders it) is the answer
            if message.strip():
                typer.echo(message, err=True)
            sys.exit(exc.exit_code)
        # A bad option or argument: one line, like every other failure, not Typer's box.
        context = getattr(exc, "ctx", None)
        where = f" (see {context.command_path} --help)" if context is not None else ""
        typer.echo(f"error: {exc.format_message()}{where}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
