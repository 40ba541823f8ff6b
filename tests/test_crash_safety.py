"""SIGKILL a real `datagate serve` in the middle of an ingest, at every stage, and restart it.

After each restart: no partial version is visible, no staging, spool or orphan snapshot file is
left (recovery logs what it removed), the killed run is failed with a FAIL event, and at the
end a retried upload succeeds with the next version number.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, col, select

from bench.generate import customers
from gateway.db import make_engine
from gateway.models import IngestRun, LineageEvent
from tests.conftest import ADMIN_HEADERS, csv_bytes
from tests.serve import ServeProcess, upload_csv

pytestmark = pytest.mark.slow

# Before each stage, plus the two moments a file exists that no version row refers to yet.
CHECKPOINTS = (
    "parse",
    "validate",
    "redact",
    "version",
    "version:staged",
    "record",
    "record:published",
)


def _files(folder: Path) -> set[str]:
    if not folder.exists():
        return set()
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _published(home: Path) -> set[str]:
    return {f for f in _files(home / "snapshots") if not f.startswith((".staging/", ".audit/"))}


def _unfinished(home: Path) -> set[str]:
    staging = {f for f in _files(home / "snapshots") if f.startswith(".staging/")}
    return staging | _files(home / "tmp")


def _versions(base: str) -> list[int]:
    response = httpx.get(
        f"{base}/api/v1/datasets/customers/versions", headers=ADMIN_HEADERS, timeout=30
    )
    return [v["version"] for v in response.json()["versions"]]


def test_sigkill_at_every_stage_leaves_nothing_half_done(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "home"
    first, second = (csv_bytes(customers(2_000, seed=s)) for s in (1, 2))

    server = ServeProcess(home, database_url, tmp_path / "server-0.log").wait_ready()
    assert upload_csv(server.base, first).status_code == 201
    kept = _published(home)
    assert len(kept) == 1
    server.stop()

    for number, point in enumerate(CHECKPOINTS, start=1):
        server = ServeProcess(
            home,
            database_url,
            tmp_path / f"server-{number}.log",
            # Pattern-only PII detection: the model's load time, times eight starts, buys nothing
            # here; every stage still runs.
            env={"DATAGATE_DEBUG_HANG_AT": point, "DATAGATE_SPACY_MODEL": ""},
        ).wait_ready()
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(upload_csv, server.base, second)
            server.wait_for_log(f"checkpoint {point};")
            # The test kills with something half-done on disk, not between requests.
            assert _files(home / "tmp"), f"no spooled body at {point}"
            if point == "version:staged":
                assert _unfinished(home) - _files(home / "tmp"), "no staging file"
            if point == "record:published":
                assert _published(home) - kept, "no published-but-unrecorded file"
            server.kill()
            with pytest.raises(httpx.TransportError):
                pending.result()

    final = ServeProcess(home, database_url, tmp_path / "server-final.log").wait_ready()
    logs = "".join(p.read_text() for p in sorted(tmp_path.glob("server-*.log")))
    assert "recovery: removed unfinished file" in logs
    assert "recovery: removed snapshot" in logs
    assert logs.count("was interrupted; marked failed") == len(CHECKPOINTS)

    assert _versions(final.base) == [1]
    assert _unfinished(home) == set()
    assert _published(home) == kept

    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            runs = session.exec(select(IngestRun).order_by(col(IngestRun.started_at))).all()
            fails = session.exec(
                select(LineageEvent.run_id).where(LineageEvent.event_type == "FAIL")
            ).all()
    finally:
        engine.dispose()
    assert [r.status for r in runs] == ["accepted"] + ["failed"] * len(CHECKPOINTS)
    interrupted = [r for r in runs if r.status == "failed"]
    assert all(r.error and r.error["title"] == "Ingest interrupted" for r in interrupted)
    assert sorted(str(f) for f in fails) == sorted(r.id for r in interrupted)

    retried = upload_csv(final.base, second)
    assert retried.status_code == 201, retried.text
    assert retried.json()["version"]["version"] == 2
    assert _versions(final.base) == [1, 2]
    assert _unfinished(home) == set()
    final.stop()
