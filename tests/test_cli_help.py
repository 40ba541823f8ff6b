"""The ``datagate`` help and usage errors: every option named in the classic style (no Typer
``<str>``/``<bool>`` type placeholders), and a bad option is one line on standard error."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from gateway.cli import app

DATAGATE = str(Path(sys.executable).parent / "datagate")
PLACEHOLDER = re.compile(r"<[a-z][a-z_\[\]|,. ]*>")


def _paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _paths(sub, (*path, name))


def test_no_help_page_shows_a_type_placeholder(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    root = typer.main.get_command(app)
    paths = list(_paths(root))
    assert ("keys", "create") in paths
    assert ("upload",) in paths
    for path in paths:
        assert root.main(args=[*path, "--help"], standalone_mode=False) == 0
        shown = capsys.readouterr().out
        assert "--help" in shown, path
        assert not PLACEHOLDER.findall(shown), (path, PLACEHOLDER.findall(shown), shown)
    root.main(args=["keys", "create", "--help"], standalone_mode=False)
    create = capsys.readouterr().out
    assert "[admin|producer|consumer|auditor]" in create
    assert re.search(r"--expires\s+EXPIRES", create)
    root.main(args=["upload", "--help"], standalone_mode=False)
    assert re.search(r"--dataset\s+-d\s+DATASET", capsys.readouterr().out)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["upload", "x.csv"], "Missing option '--dataset'"),
        (["keys", "create", "--role", "root"], "'root' is not one of"),
        (["keys", "create", "--role", "auditor", "--expires", "soon"], "--expires"),
        (["nosuch"], "No such command 'nosuch'"),
        (["download", "customers", "-o", "x.parquet"], "DATASET@VERSION"),
        (["versions", "customers", "--depth", "3"], "No such option: --depth"),
    ],
)
def test_a_usage_error_is_one_line_with_exit_code_2(
    args: list[str], says: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [DATAGATE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "DATAGATE_HOME": str(tmp_path)},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), lines
    assert says in lines[0], lines
    assert "--help)" in lines[0]


def test_a_worker_on_the_embedded_default_says_serve_runs_the_jobs(tmp_path: Path) -> None:
    done = subprocess.run(
        [DATAGATE, "worker"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "DATAGATE_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "workers take jobs from PostgreSQL" in done.stderr
