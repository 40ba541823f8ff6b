"""Alembic migrations on SQLite and PostgreSQL, at start-up and through `datagate db upgrade`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from gateway.db import make_engine, migrate, pending_migrations

TABLES = {
    "dataset",
    "contract_version",
    "ingest_run",
    "ingest_part",
    "dataset_version",
    "lineage_event",
    "lineage_edge",
    "api_key",
    "audit_log",
}


def test_migrations_create_every_table_and_are_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    migrate(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert not pending_migrations(engine)
    engine.dispose()


def _empty(database_url: str) -> None:
    if database_url.startswith("postgresql"):
        # The per-test PostgreSQL database comes migrated from its template: empty it first.
        engine = make_engine(database_url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()


@pytest.mark.slow
def test_db_upgrade_command_migrates_a_new_database(tmp_path: Path, database_url: str) -> None:
    _empty(database_url)
    env = {**os.environ, "DATAGATE_DATABASE_URL": database_url, "DATAGATE_HOME": str(tmp_path)}
    result = subprocess.run(
        [Path(sys.executable).parent / "datagate", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "database at head" in result.stdout
    engine = make_engine(database_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert not pending_migrations(engine)
    engine.dispose()


@pytest.mark.slow
def test_processes_starting_together_migrate_a_new_database_once(
    tmp_path: Path, database_url: str
) -> None:
    # Workers and replicas start at the same moment against a new database.
    _empty(database_url)
    env = {**os.environ, "DATAGATE_DATABASE_URL": database_url, "DATAGATE_HOME": str(tmp_path)}
    processes = [
        subprocess.Popen(
            [Path(sys.executable).parent / "datagate", "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    assert [code for code, _, _ in results] == [0] * 4, [err for _, _, err in results]
    engine = make_engine(database_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert not pending_migrations(engine)
    engine.dispose()


def test_migrations_match_the_models(engine: object) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import gateway.models  # noqa: F401  (registers the tables)

    def ours(name: str | None, kind: str, parent: object) -> bool:
        # procrastinate's queue tables (PostgreSQL) are its own schema, created by migration
        # 0008 from the SQL it ships.
        return not (kind == "table" and (name or "").startswith("procrastinate_"))

    with engine.connect() as connection:  # type: ignore[attr-defined]
        context = MigrationContext.configure(connection, opts={"include_name": ours})
        assert compare_metadata(context, SQLModel.metadata) == []
