"""Loading contracts from Python files: metadata, fingerprints, and errors that name the file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sqlmodel import Session, select

from gateway.app import create_app
from gateway.contracts import load_contracts, snake_case
from gateway.models import IngestRun
from privacy import PiiEngine
from tests.conftest import CONTRACTS, admin_client, settings_for

GOOD = """
import pandera.polars as pa

class {cls}(pa.DataFrameModel):
    order_id: int = pa.Field(unique=True, ge=1)
    email: str = pa.Field(metadata={{"pii": "EMAIL_ADDRESS", "redact": "{action}"}})

    class Config:
        strict = True
        metadata = {{"version": "{version}", "owner": "shop"}}
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_example_contracts_load_with_their_metadata() -> None:
    catalog = load_contracts(CONTRACTS)
    assert catalog.errors == []
    assert set(catalog.contracts) == {"customers", "transactions"}
    customers = catalog.contracts["customers"]
    assert (customers.version, customers.owner, customers.on_invalid) == (
        "1.2.0",
        "crm-team",
        "reject",
    )
    policies = {p.column: (p.entity, p.action) for p in customers.policies}
    assert policies["email"] == ("EMAIL_ADDRESS", "hash")
    assert policies["notes"] == ("scan", "scan")
    described = customers.describe()
    email = next(c for c in described["columns"] if c["name"] == "email")
    assert email["dtype"] == "String"
    assert email["checks"][0]["name"] == "str_matches"
    assert email["pii"] == {"entity": "EMAIL_ADDRESS", "action": "hash", "justification": None}


def test_dataset_name_defaults_to_snake_case_of_the_class(tmp_path: Path) -> None:
    _write(tmp_path, "orders.py", GOOD.format(cls="CustomerOrders", action="hash", version="1.0.0"))
    catalog = load_contracts(tmp_path)
    assert list(catalog.contracts) == ["customer_orders"]
    assert snake_case("HTTPLogs") == "http_logs"


def test_fingerprint_is_stable_and_changes_with_the_schema(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _write(a, "orders.py", GOOD.format(cls="Orders", action="hash", version="1.0.0"))
    _write(b, "orders_copy.py", GOOD.format(cls="Orders", action="hash", version="1.0.0"))
    first = load_contracts(a).contracts["orders"].fingerprint
    assert load_contracts(b).contracts["orders"].fingerprint == first
    _write(b, "orders_copy.py", GOOD.format(cls="Orders", action="mask", version="1.0.0"))
    assert load_contracts(b).contracts["orders"].fingerprint != first


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "import pandera.polars as pa\nclass Broken(pa.DataFrameModel)\n    x: int\n",
            "SyntaxError",
        ),
        ("import not_a_module_anywhere\n", "ModuleNotFoundError"),
        (GOOD.format(cls="Orders", action="shred", version="1"), "unknown redact action 'shred'"),
        (GOOD.format(cls="Orders", action="keep", version="1"), "needs a 'justification'"),
        (
            GOOD.format(cls="Orders", action="hash", version="1").replace(
                '"EMAIL_ADDRESS"', '"email"'
            ),
            "pii must be an entity name",
        ),
        (
            GOOD.format(cls="Orders", action="hash", version="1").replace(
                '"owner"', '"on_invalid": "explode", "o"'
            ),
            "on_invalid 'explode'",
        ),
        (
            GOOD.format(cls="Orders", action="hash", version="1").replace(
                '"owner"', '"on_invalid": "quarantine", "max_invalid_fraction": 1.5, "o"'
            ),
            "max_invalid_fraction must be a number from 0 to 1",
        ),
        (
            GOOD.format(cls="Orders", action="hash", version="1").replace(
                '"owner"', '"on_invalid": "quarantine", "quarantine_days": 0, "o"'
            ),
            "quarantine_days must be a whole number of days",
        ),
        (
            GOOD.format(cls="Orders", action="hash", version="1").replace(
                '"owner"', '"on_invalid": "quarantine", "primary_key": "nope", "o"'
            ),
            "primary_key names no column",
        ),
    ],
    ids=[
        "syntax",
        "import",
        "unknown-action",
        "keep-without-justification",
        "bad-entity",
        "bad-on-invalid",
        "bad-invalid-fraction",
        "bad-quarantine-days",
        "bad-primary-key",
    ],
)
def test_broken_contract_file_is_reported_with_file_and_reason(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = _write(tmp_path, "orders.py", text)
    catalog = load_contracts(tmp_path)
    assert catalog.contracts == {}
    assert len(catalog.errors) == 1
    assert catalog.errors[0].file == str(path)
    assert reason in catalog.errors[0].reason
    assert "Traceback" not in catalog.errors[0].reason


HIJACK = """
import pandera.polars as pa

class Takeover(pa.DataFrameModel):
    customer_id: int
    email: str = pa.Field(metadata={"pii": "EMAIL_ADDRESS", "redact": "keep",
                                    "justification": "needed"})

    class Config:
        name = "customers"
        metadata = {"version": "9.9.9"}
"""


def test_two_contracts_for_one_dataset_are_both_refused_until_one_is_removed(
    tmp_path: Path,
) -> None:
    # A file that sorts first must not take the dataset over (finding 9).
    _write(tmp_path, "a_hijack.py", HIJACK)
    (tmp_path / "customers.py").write_text((CONTRACTS / "customers.py").read_text())
    catalog = load_contracts(tmp_path)
    assert "customers" not in catalog.contracts
    assert sorted(Path(e.file).name for e in catalog.errors) == ["a_hijack.py", "customers.py"]
    assert all("a_hijack.py" in e.reason and "customers.py" in e.reason for e in catalog.errors)
    settings = settings_for(tmp_path / "home", tmp_path)
    with admin_client(create_app(settings, pii_engine=PiiEngine(None, workers=0))) as client:
        refused = client.post(
            "/api/v1/datasets/customers/uploads",
            content=b"customer_id,email\n1,a@example.com\n",
            headers={"Content-Type": "text/csv"},
        )
        assert refused.status_code == 503
        assert refused.json()["type"].endswith("/contract-unavailable")
        assert "a_hijack.py" in refused.json()["detail"]
        engine = client.app.state.services.engine  # type: ignore[attr-defined]
        with Session(engine) as session:
            assert session.exec(select(IngestRun)).all() == []  # no run was started
    (tmp_path / "a_hijack.py").unlink()
    assert "customers" in load_contracts(tmp_path).contracts


@pytest.mark.parametrize(
    "body",
    [
        "raise SystemExit(0)\n",
        "raise SystemExit(3)\n",
        "class Boom(BaseException):\n    pass\nraise Boom()\n",
    ],
)
def test_a_contract_file_that_exits_at_import_is_reported_broken(tmp_path: Path, body: str) -> None:
    _write(tmp_path, "orders.py", GOOD.format(cls="Orders", action="hash", version="1"))
    exiting = _write(tmp_path, "exits.py", body)
    catalog = load_contracts(tmp_path)
    assert list(catalog.contracts) == ["orders"]
    assert [e.file for e in catalog.errors] == [str(exiting)]


def test_readyz_and_contracts_api_name_the_broken_file(tmp_path: Path) -> None:
    _write(tmp_path, "orders.py", GOOD.format(cls="Orders", action="hash", version="1"))
    broken = _write(tmp_path, "refunds.py", GOOD.format(cls="Refunds", action="shred", version="1"))
    settings = settings_for(tmp_path / "home", tmp_path)
    with admin_client(create_app(settings, pii_engine=PiiEngine(None, workers=0))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        contracts = ready.json()["checks"]["contracts"]
        assert (contracts["status"], contracts["loaded"], contracts["failed"]) == ("fail", 1, 1)
        # Open to everyone: no path and no reason, which may quote the file.
        assert str(tmp_path) not in ready.text
        assert "shred" not in ready.text
        listed = client.get("/api/v1/contracts").json()
        assert [c["name"] for c in listed["contracts"]] == ["orders"]
        assert listed["errors"][0]["file"] == str(broken)
        one = client.get("/api/v1/contracts/orders").json()
        assert one["columns"][1]["pii"]["action"] == "hash"
        assert one["owner"] == "shop"
