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
        # Patterns only, quicker to start; or the model in one detector process (its pool is
        # closed before the interpreter exits, without a traceback).
        **({"DATAGATE_PII_WORKERS": "1"} if ner else {"DATAGATE_SPACY_MODEL": ""}),
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
    assert "Traceback" not in checked.stderr  # the detector process closed before exit
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


SHOP = """
import pandera.polars as pa
import polars as pl


class Shop(pa.DataFrameModel):
    order_id: int = pa.Field(unique=True, gt=5, lt=7)
    qty: int = pa.Field(ge=10, le=3)
    country: str = pa.Field(isin=["US", "DE"], notin=["US", "DE"])
    price: float = pa.Field(isin=[1.0, 2.0], ge=5)
    rating: int = pa.Field(ge=0, le=10, isin=[3, 20])
    stock: int = pa.Field(gt=1, lt=2)
    level: float = pa.Field(ge=1, lt=1)
    share: float = pa.Field(in_range={"min_value": 0, "max_value": 1}, gt=1)

    @pa.dataframe_check
    def totals(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("total") > 0)

    @pa.check("qty")
    def positive(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("quantity_before") > 0)

    @pa.check("rating")
    def sane(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("rating") < pl.col("stock") + 100)

    class Config:
        name = "shop"
        metadata = {"version": "1.0.0"}
"""


def test_lint_warns_of_checks_naming_missing_columns_and_unreachable_checks(
    tmp_path: Path,
) -> None:
    from gateway.contracts import load_contract_path
    from gateway.offline import lint

    (tmp_path / "shop.py").write_text(SHOP)
    found = lint(load_contract_path(tmp_path))
    assert {f.level for f in found} == {"warning"}
    messages = sorted(f.message for f in found)
    assert any("'totals' names column 'total'" in m for m in messages)
    assert any("check on qty 'positive' names column 'quantity_before'" in m for m in messages)
    unreachable = {m.split(":")[0] for m in messages if "unreachable" in m}
    # gt=1, lt=2 admits no integer; [1, 1) nothing; gt=5, lt=7 admits 6; 3 is in 0..10.
    assert unreachable == {
        "shop.qty",
        "shop.country",
        "shop.price",
        "shop.stock",
        "shop.level",
        "shop.share",
    }
    assert not any("sane" in m or "order_id" in m or "rating" in m for m in messages)
    linted = _datagate("contracts", "lint", str(tmp_path), cwd=tmp_path)
    assert linted.returncode == 0, linted.stderr
    assert linted.stdout.count("warning: ") == 8
    strict = _datagate("contracts", "lint", "--strict", str(tmp_path), cwd=tmp_path)
    assert strict.returncode == 1


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
