"""Database engine, sessions and migrations, for SQLite and PostgreSQL alike."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_SQLITE_BEGIN = "datagate_sqlite_begin"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and write-intent transactions."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "isolation_level": None})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Units of work begin IMMEDIATE: the write lock is taken up front, so two writers
        # queue on the busy timeout instead of one failing when it upgrades a read lock.
        # Reads begin DEFERRED and, under WAL, never wait for a writer.
        mode = connection.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _alembic_config(connection: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


# Any fixed number: PostgreSQL processes migrating one database queue on this lock.
_MIGRATION_LOCK = 0x64617461676174  # "datagat"


def migrate(engine: Engine) -> None:
    """Apply every pending Alembic migration.

    Several processes may start at once (workers, replicas): on SQLite the transaction takes
    the write lock up front, on PostgreSQL an advisory lock, so one migrates and the others
    then find the database at head.
    """
    with engine.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"}).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        before = MigrationContext.configure(connection).get_current_heads()
        command.upgrade(_alembic_config(connection), "head")
        after = MigrationContext.configure(connection).get_current_heads()
    if before != after:
        log.info(
            "database migrated from %s to %s",
            ",".join(before) or "empty",
            ",".join(after),
        )


def pending_migrations(engine: Engine) -> bool:
    """True when the database is not at the newest migration."""
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
        script = ScriptDirectory.from_config(_alembic_config(connection))
        return set(current) != set(script.get_heads())


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    writer = engine.execution_options(**{_SQLITE_BEGIN: "IMMEDIATE"})
    with Session(writer, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
