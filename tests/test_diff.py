"""Version diff: schema, rows matched by key (or whole-row hashes), changed cells, pseudonymised
sample keys; the route on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.diff import Side, diff_versions
from gateway.keys import ADMIN_PRINCIPAL
from privacy import PiiEngine, RedactionKey
from tests.conftest import TEST_ADMIN_KEY, TEST_PII_KEY, admin_client, contract_folder, settings_for
from tests.test_console import sign_in

SECRET = RedactionKey(TEST_PII_KEY.encode())


def side(
    tmp_path: Path, number: int, frame: pl.DataFrame, hashed: frozenset[str] = frozenset()
) -> Side:
    path = tmp_path / f"v{number}.parquet"
    frame.write_parquet(path)
    return Side(number, [path], {n: str(t) for n, t in frame.schema.items()}, hashed)


def test_rows_are_matched_by_key_and_changed_cells_counted(tmp_path: Path) -> None:
    before = pl.DataFrame(
        {
            "id": pl.Series([1, 2, 3, 4, 5], dtype=pl.Int32),
            "name": ["a", "b", "c", "d", None],
            "amount": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    after = pl.DataFrame(
        {
            "id": pl.Series([2, 3, 4, 5, 6], dtype=pl.Int64),  # widened: not a change of value
            "name": ["b", "c", "D", None, "f"],
            "amount": [2.0, 3.5, 4.0, 5.0, 6.0],
            "flag": [True, False, True, False, True],
        }
    )
    found = diff_versions(side(tmp_path, 1, before), side(tmp_path, 2, after), ["id"], SECRET)
    assert found["schema"] == {
        "added": ["flag"],
        "removed": [],
        "type_changed": [{"column": "id", "from": "Int32", "to": "Int64"}],
    }
    assert found["matched_by"] == "primary_key"
    assert found["rows"] == {"added": 1, "removed": 1, "changed": 2, "unchanged": 2}
    assert found["changed_cells"] == {"name": 1, "amount": 1}
    sample = found["sample_keys"]
    assert (len(sample["added"]), len(sample["removed"]), len(sample["changed"])) == (1, 1, 2)
    assert all(len(k) == 64 for k in sample["added"] + sample["changed"])  # pseudonyms
    assert "6" not in sample["added"]


def test_without_a_usable_key_rows_are_matched_as_a_multiset(tmp_path: Path) -> None:
    before = pl.DataFrame({"id": [1, 1, 2], "v": ["x", "x", "y"]})
    after = pl.DataFrame({"id": [1, 2, 2, 3], "v": ["x", "y", "y", "z"]})
    a, b = side(tmp_path, 1, before), side(tmp_path, 2, after)
    unkeyed = diff_versions(a, b, [], SECRET)
    assert unkeyed["matched_by"] == "row_hash"
    assert unkeyed["rows"] == {"added": 2, "removed": 1, "changed": None, "unchanged": 2}
    assert unkeyed["changed_cells"] is None
    duplicated = diff_versions(a, b, ["id"], SECRET)  # id 1 twice in v1: no key
    assert duplicated["matched_by"] == "row_hash"
    assert "not unique" in duplicated["note"]


def test_a_pseudonymised_key_is_shown_as_stored(tmp_path: Path) -> None:
    before = pl.DataFrame({"email": ["p1", "p2"], "n": [1, 2]})
    after = pl.DataFrame({"email": ["p1", "p3"], "n": [1, 2]})
    found = diff_versions(
        side(tmp_path, 1, before, frozenset({"email"})),
        side(tmp_path, 2, after, frozenset({"email"})),
        ["email"],
        SECRET,
    )
    assert found["sample_keys"] == {"added": ["p3"], "removed": ["p2"], "changed": []}


CONTRACT = """
import pandera.polars as pa


class Orders(pa.DataFrameModel):
    order_id: int = pa.Field(unique=True)
    email: str = pa.Field(metadata={"pii": "EMAIL_ADDRESS", "redact": "hash"})
    amount: float

    class Config:
        name = "orders"
        metadata = {"version": "1.0.0", "primary_key": "order_id"}
"""


@pytest.fixture
def gateway(tmp_path: Path, database_url: str, pii_engine: PiiEngine) -> Iterator[TestClient]:
    folder = contract_folder(tmp_path, orders=CONTRACT)
    settings = settings_for(tmp_path / "home", folder, database_url=database_url)
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        yield client


def test_the_diff_route_on_stored_versions(gateway: TestClient) -> None:
    first = "order_id,email,amount\n1,a@example.com,1.5\n2,b@example.com,2.5\n3,c@example.com,3\n"
    second = "order_id,email,amount\n2,b@example.com,2.5\n3,c@example.com,9\n4,d@example.com,4\n"
    for body in (first, second):
        answer = gateway.post("/api/v1/datasets/orders/uploads?format=csv", content=body)
        assert answer.status_code == 201, answer.text
    found = gateway.get("/api/v1/datasets/orders/versions/1/diff/2")
    assert found.status_code == 200, found.text
    shown = found.json()
    assert (shown["from"], shown["to"], shown["key"]) == (1, 2, ["order_id"])
    assert shown["rows"] == {"added": 1, "removed": 1, "changed": 1, "unchanged": 1}
    assert shown["changed_cells"] == {"email": 0, "amount": 1}
    assert "d@example.com" not in found.text
    assert gateway.get("/api/v1/datasets/orders/versions/1/diff/7").status_code == 404
    created = gateway.post("/api/v1/keys", json={"role": "consumer", "datasets": ["other"]})
    outsider = {"Authorization": f"Bearer {created.json()['key']}"}
    assert (
        gateway.get("/api/v1/datasets/orders/versions/1/diff/2", headers=outsider).status_code
        == 403
    )
    # A key runs at most two diffs at once (each reads two whole versions); the next is a 429
    # for it alone, in the API and in the console's fragment.
    services = gateway.app.state.services  # type: ignore[attr-defined]
    reader = gateway.post("/api/v1/keys", json={"role": "consumer", "datasets": ["orders"]})
    other = {"Authorization": f"Bearer {reader.json()['key']}"}
    browser = TestClient(gateway.app)
    assert sign_in(browser, TEST_ADMIN_KEY).status_code == 303
    with ExitStack() as running:
        for _ in range(2):
            running.enter_context(services.diffs.slot(ADMIN_PRINCIPAL))
        busy = gateway.get("/api/v1/datasets/orders/versions/1/diff/2")
        assert busy.status_code == 429
        assert busy.headers["retry-after"] == "5"
        assert busy.json()["type"].endswith("/too-busy")
        fragment = browser.get("/ui/datasets/orders/versions/2/changes")
        assert "already has two diffs running" in fragment.text
        assert gateway.get("/api/v1/datasets/orders/versions/1/diff/2", headers=other).is_success
    assert gateway.get("/api/v1/datasets/orders/versions/1/diff/2").status_code == 200
