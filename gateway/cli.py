"""The ``datagate`` command line."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from gateway.settings import Settings

app = typer.Typer(help="Datagate: data governance and validation gateway.", no_args_is_help=True)
db_app = typer.Typer(help="Metadata database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
privacy_app = typer.Typer(help="Privacy administration.", no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Alembic narrates every migration context (readiness checks open one); gateway.db logs
    # what was applied.
    logging.getLogger("alembic").setLevel(logging.WARNING)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (DATAGATE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (DATAGATE_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="Uvicorn worker processes.")] = 1,
) -> None:
    """Run the gateway with uvicorn."""
    import uvicorn

    settings = Settings()
    _configure_logging(settings.log_level)
    uvicorn.run(
        "gateway.cli:build_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=settings.log_level,
    )


def build_app() -> object:
    """App factory for uvicorn: settings from the environment."""
    from gateway.app import create_app

    settings = Settings()
    _configure_logging(settings.log_level)
    return create_app(settings)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations to DATAGATE_DATABASE_URL."""
    from gateway.db import make_engine, migrate

    settings = Settings()
    _configure_logging(settings.log_level)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    typer.echo(f"database at head ({engine.dialect.name})")


# polars allocates through its own jemalloc; returning freed pages at once keeps the peak
# memory of an ingest near the size of its data instead of holding every transient buffer.
# Set before polars is imported; an operator's own setting wins.
JEMALLOC_CONF = "dirty_decay_ms:0,muzzy_decay_ms:0"


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


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("_RJEM_MALLOC_CONF", JEMALLOC_CONF)
    app()
