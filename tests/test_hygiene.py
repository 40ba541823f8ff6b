"""Process and file hygiene (finding 8): a killed server leaves no process behind, and what
it writes is readable by its operator alone."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from bench.generate import customers
from tests.conftest import csv_bytes
from tests.serve import ServeProcess, upload_csv

pytestmark = pytest.mark.slow


def _children(pid: int) -> set[int]:
    """Every process descending from ``pid``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat_line.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_leaves_no_orphan_and_state_files_are_private(tmp_path: Path, workers: int) -> None:
    home = tmp_path / "home"
    server = ServeProcess(
        home,
        f"sqlite:///{home / 'datagate.db'}",
        tmp_path / "serve.log",
        env={"DATAGATE_PII_WORKERS": "1"},
        args=("--workers", str(workers)),
    ).wait_ready()
    assert upload_csv(server.base, csv_bytes(customers(50, seed=4))).status_code == 201
    descendants = _children(server.process.pid)
    # PII workers (spawned with their resource tracker), and uvicorn workers with --workers 2.
    assert len(descendants) >= 2
    os.kill(server.process.pid, signal.SIGKILL)  # the process alone, as the OOM killer does
    server.process.wait(timeout=20)
    server.kill()  # only closes the log: the process group is left alone
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in descendants) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in descendants if _alive(pid)] == []
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for path in home.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        elif path.is_file():
            assert mode == 0o600, path
