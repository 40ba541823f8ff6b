"""`datagate contracts test` and `lint`: a contract owner's inner loop, offline, with the
gateway's own engine and report."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import polars as pl

from gateway.app import create_app
from gateway.samples import customers
from privacy import PiiEngine
from tests.conftest import CONTRACTS, admin_client, settings_for

DATAGATE = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "datagate")


def _datagate(*args: str, cwd: Path, ner: bool = False) -> subprocess.CompletedProcess[str]:
    # No database, no server: a database URL that cannot be reached proves none is used.
    env = {
        **os.environ,
        "DATAGATE_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "DATAGATE_HOME": str(cwd / "cli-home"),
        **({} if ner else {"DATAGATE_SPACY_MODEL": ""}),  # patterns only: quicker to start
    }
    return subprocess.run(
        [DATAGATE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def test_contracts_test_gives_the_report_an_upload_gets(
    tmp_path: Path, pii_engine: PiiEngine
) -> None:
    frame = customers(40, seed=5).with_columns(
        pl.when(pl.int_range(pl.len()) == 4)
        .then(pl.lit("call me at jane.roe@example.com"))
        .otherwise(pl.col("country"))
        .alias("country"),
        pl.when(pl.int_range(pl.len()) == 9)
        .then(-3)
        .otherwise(pl.col("customer_id"))
        .alias("customer_id"),
    )
    path = tmp_path / "export.csv"
    frame.write_csv(path)
    settings = settings_for(tmp_path / "home", CONTRACTS)
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        uploaded = client.post(
            "/api/v1/datasets/customers/uploads?format=csv", content=path.read_bytes()
        )
    assert uploaded.status_code == 422, uploaded.text
    checked = _datagate(
        "contracts",
        "test",
        "customers",
        str(path),
        "--contracts",
        str(CONTRACTS),
        "--json",
        cwd=tmp_path,
        ner=True,  # the gateway's engine, model included
    )
    assert checked.returncode == 1, checked.stderr
    outcome = json.loads(checked.stdout)
    assert outcome["report"] == uploaded.json()["report"]
    assert outcome["problem"]["title"] == "Contract violation"
    assert "jane.roe@example.com" not in checked.stdout  # scrubbed as in the gateway's report
    assert not (tmp_path / "cli-home").exists()  # nothing written: no key, no database
    good = tmp_path / "good.csv"
    customers(40, seed=6).write_csv(good)
    fine = _datagate(
        "contracts", "test", "customers", str(good), "--contracts", str(CONTRACTS), cwd=tmp_path
    )
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert fine.stdout.startswith("good.csv against customers 1.2.0: 40 rows, would be stored")
    missing = _datagate(
        "contracts", "test", "nope", str(good), "--contracts", str(CONTRACTS), cwd=tmp_path
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: no contract for dataset 'nope'")


def test_lint_reports_load_errors_and_pii_looking_columns(tmp_path: Path) -> None:
    (tmp_path / "people.py").write_text(
        "import pandera.polars as pa\n\n\n"
        "class People(pa.DataFrameModel):\n"
        "    person_id: int\n"
        "    home_address: str\n"
        "    email: str = pa.Field(metadata={'pii': 'EMAIL_ADDRESS', 'redact': 'hash'})\n"
    )
    (tmp_path / "broken.py").write_text(
        "import pandera.polars as pa\n\n\n"
        "class Broken(pa.DataFrameModel):\n"
        "    x: str = pa.Field(metadata={'pii': 'PERSON', 'redact': 'keep'})\n"
    )
    linted = _datagate("contracts", "lint", str(tmp_path), cwd=tmp_path)
    assert linted.returncode == 1
    lines = linted.stdout.splitlines()
    assert any(
        line.startswith("error: ") and "broken.py" in line and "justification" in line
        for line in lines
    )
    assert any(
        line.startswith("warning: ") and "people.home_address looks like personal data" in line
        for line in lines
    )
    assert not any("people.email" in line or "person_id" in line for line in lines)
    (tmp_path / "broken.py").unlink()
    assert _datagate("contracts", "lint", str(tmp_path), cwd=tmp_path).returncode == 0


def test_contracts_test_prints_each_failing_check(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    frame = customers(12, seed=8).with_columns(
        pl.when(pl.int_range(pl.len()) == 9)
        .then(-3)
        .otherwise(pl.col("customer_id"))
        .alias("customer_id")
    )
    path = tmp_path / "export.csv"
    frame.write_csv(path)
    result = CliRunner().invoke(
        app,
        ["contracts", "test", "customers", str(path), "--contracts", str(CONTRACTS)],
        env={"DATAGATE_SPACY_MODEL": "", "DATAGATE_HOME": str(tmp_path / "cli-home")},
    )
    assert result.exit_code == 1, result.output
    assert "export.csv against customers 1.2.0: 12 rows, would be refused" in result.output
    assert "customer_id greater_than_or_equal_to(1): 1 row(s), e.g. row 10" in result.output
