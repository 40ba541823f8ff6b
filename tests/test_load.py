"""64 concurrent uploads against `datagate serve --workers 2`: 32 to one dataset, 32 to 32 others.

Every upload gets exactly one outcome, every run is accounted for, versions are unique and
gap-free, and every accepted upload's data is stored and its lineage recorded once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import Session, select

from bench.load import Upload, distinct_body, upload_all, write_contracts
from gateway.db import make_engine
from gateway.models import Dataset, DatasetVersion, IngestRun, LineageEvent
from tests.conftest import TEST_ADMIN_KEY
from tests.serve import ServeProcess

pytestmark = pytest.mark.slow

PER_GROUP = 32
ROWS = 200


def test_concurrent_uploads_each_get_one_outcome_and_gap_free_versions(
    tmp_path: Path, database_url: str
) -> None:
    others = write_contracts(tmp_path / "contracts", PER_GROUP)
    jobs = [Upload("customers", distinct_body(ROWS, seed)) for seed in range(PER_GROUP)]
    jobs += [Upload(name, distinct_body(ROWS, 500 + i)) for i, name in enumerate(others)]
    server = ServeProcess(
        tmp_path / "home",
        database_url,
        tmp_path / "server.log",
        env={"DATAGATE_CONTRACTS_DIR": str(tmp_path / "contracts")},
        args=("--workers", "2"),
    ).wait_ready()
    try:
        outcomes = asyncio.run(upload_all(server.base, TEST_ADMIN_KEY, jobs))
    finally:
        server.stop()

    assert [o.status for o in outcomes] == [201] * len(jobs), [
        (o.status, o.problem) for o in outcomes if o.status != 201
    ]
    assert sorted(o.version or 0 for o in outcomes[:PER_GROUP]) == list(range(1, PER_GROUP + 1))
    assert [o.version for o in outcomes[PER_GROUP:]] == [1] * PER_GROUP
    run_ids = {o.run_id for o in outcomes}
    assert len(run_ids) == len(jobs)

    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            runs = session.exec(select(IngestRun)).all()
            versions = session.exec(select(DatasetVersion, Dataset).join(Dataset)).all()
            events = session.exec(select(LineageEvent.run_id, LineageEvent.event_type)).all()
    finally:
        engine.dispose()
    assert {r.id for r in runs} == run_ids
    assert {r.status for r in runs} == {"accepted"}
    by_dataset = Counter(dataset.name for _, dataset in versions)
    assert by_dataset == {"customers": PER_GROUP, **dict.fromkeys(others, 1)}
    assert len({v.content_hash for v, d in versions if d.name == "customers"}) == PER_GROUP
    assert all(v.row_count == ROWS for v, _ in versions)
    home = tmp_path / "home" / "snapshots"
    assert all((home / v.storage_key).is_file() for v, _ in versions)
    assert Counter(events) == {(r, t): 1 for r in run_ids for t in ("START", "COMPLETE")}
