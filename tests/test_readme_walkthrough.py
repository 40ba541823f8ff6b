"""The README's "Your first ten minutes" runs as written: every shell command and the Python
example, in order, in a folder laid out like a checkout after ``make run``, against a live
``datagate serve`` on the embedded default (the one change: the port, via ``DATAGATE_URL``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from bench.serve import ServeProcess

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SECTION = "Your first ten minutes"
EXITS = re.compile(r"#\s*exits (\d+)")


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def _script(block: str) -> str:
    """Each command, then a check of its exit code (0 unless its comment says ``exits N``)."""
    lines = ["set -u"]
    for number, line in enumerate(block.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        expected = EXITS.search(line)
        code = int(expected.group(1)) if expected else 0
        lines += [
            f"echo '$ {line}' >&2",
            line,
            f'rc=$?; [ "$rc" -eq {code} ] || {{ echo "line {number} exited $rc" >&2; exit 99; }}',
        ]
    return "\n".join(lines) + "\n"


def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    section = _section((REPO / "README.md").read_text(), SECTION)
    (shell,) = _blocks(section, "sh")
    (python,) = _blocks(section, "python")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(Path(sys.prefix))
    (checkout / "contracts").symlink_to(REPO / "contracts")
    home = checkout / ".datagate"
    server = ServeProcess(
        home,
        f"sqlite:///{home / 'datagate.db'}",
        tmp_path / "serve.log",
        env={"DATAGATE_CONTRACTS_DIR": str(checkout / "contracts")},
    ).wait_ready()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DATAGATE_URL": server.base}
    try:
        done = subprocess.run(
            ["bash", "-c", _script(shell)],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        print(done.stdout, done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        # What the prose around the commands promises.
        shown = done.stdout
        assert "pii email\tEMAIL_ADDRESS -> hash, 1,000 values" in shown
        assert re.search(r"pii notes\tscanned: [\d,]+ values redacted \(.*PERSON", shown)
        assert re.search(r"transaction_id\tcolumn_in_dataframe \(missing\)", shown)
        sample = pl.read_csv(checkout / "customers.csv")
        stored = pl.read_parquet(checkout / "customers.parquet")
        assert sample.height == stored.height == 1000
        raw_notes = sample["notes"].drop_nulls()
        assert raw_notes.str.contains("@").sum() > 50  # the sample does name people...
        assert raw_notes.str.contains(r"\+1 \d{3}-555").sum() > 50
        notes = stored["notes"].drop_nulls()
        assert notes.str.contains("<EMAIL_ADDRESS>").sum() > 50  # ...and none is stored
        assert not notes.str.contains("@").any()
        assert not notes.str.contains(r"\+1 \d{3}-555").any()
        named = notes.str.extract_all(r"[A-Z]\w+ (?:de )?[A-Z]\w+").explode()
        assert not set(sample["full_name"]) & set(named)
        notebook = subprocess.run(
            [str(checkout / ".venv" / "bin" / "python"), "-c", python],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        print(notebook.stdout, notebook.stderr)
        assert notebook.returncode == 0, notebook.stdout + notebook.stderr
    finally:
        server.stop()
