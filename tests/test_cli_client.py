"""The `datagate` client commands against a live `datagate serve`: results, exit codes, and one
clean line on standard error for every failure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import polars as pl
import pytest

from bench.generate import customers
from tests.conftest import CONTRACTS, TEST_ADMIN_KEY, csv_bytes
from tests.serve import free_port

pytestmark = pytest.mark.slow
DATAGATE = str(Path(sys.executable).parent / "datagate")


def _cli(
    *args: str,
    url: str,
    key: str | None = TEST_ADMIN_KEY,
    cwd: Path | None = None,
    env_extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAGATE_")}
    env.update(env_extra or {})
    env["DATAGATE_URL"] = url
    if key is not None:
        env["DATAGATE_API_KEY"] = key
    env["DATAGATE_HOME"] = str(cwd or Path.cwd() / "no-such-home")
    # The user's own config file is never read: a test's config is in its folder, if any.
    env["DATAGATE_CONFIG"] = str((cwd or Path.cwd() / "no-such-home") / "config.toml")
    return subprocess.run(
        [DATAGATE, *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd
    )


def _one_clean_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), lines
    return lines[0]


def test_upload_list_show_and_download(server: str, tmp_path: Path) -> None:
    frame = customers(50, seed=4)
    good = tmp_path / "customers.csv"
    good.write_bytes(csv_bytes(frame))
    stored = _cli("upload", str(good), "--dataset", "customers", url=server)
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout.startswith("stored: customers@1, 50 rows, run ")
    again = _cli("upload", str(good), "-d", "customers", "--json", url=server)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["created"] is False

    listed = _cli("datasets", url=server)
    assert listed.returncode == 0
    header, *rows = listed.stdout.splitlines()
    assert header.split("\t") == ["dataset", "versions", "latest", "rows", "contract"]
    assert ["customers", "1", "1", "50", "customers 1.2.0"] in [r.split("\t") for r in rows]
    versions = json.loads(_cli("versions", "customers", "--json", url=server).stdout)
    assert [v["version"] for v in versions] == [1]
    shown = json.loads(_cli("show", "customers@1", "--json", url=server).stdout)
    assert shown["row_count"] == 50
    assert "row_count\t50" in _cli("show", "customers", url=server).stdout
    run = json.loads(_cli("runs", "show", shown["run_id"], "--json", url=server).stdout)
    assert run["id"] == shown["run_id"]
    contract = json.loads(_cli("contracts", "customers", "--json", url=server).stdout)
    assert contract["name"] == "customers"

    for suffix in (".parquet", ".csv"):
        target = tmp_path / f"out{suffix}"
        done = _cli("download", "customers@1", "-o", str(target), url=server)
        assert done.returncode == 0, done.stderr
        read = pl.read_parquet(target) if suffix == ".parquet" else pl.read_csv(target)
        assert read.height == 50
        assert read["customer_id"].to_list() == frame["customer_id"].to_list()
    assert not list(tmp_path.glob(".*.partial"))
    # A second version: what changed, from the terminal.
    more = tmp_path / "more.csv"
    second = pl.concat([frame.head(40), customers(60, seed=9).tail(10)])
    more.write_bytes(csv_bytes(second))
    assert _cli("upload", str(more), "-d", "customers", url=server).returncode == 0
    changed = _cli("diff", "customers@1", "customers@2", "--json", url=server)
    assert changed.returncode == 0, changed.stderr
    found = json.loads(changed.stdout)
    assert found["matched_by"] == "row_hash"  # the example contract declares no primary_key
    assert (found["rows"]["added"], found["rows"]["removed"]) == (10, 10)
    shown = _cli("diff", "customers@1", "customers@2", url=server)
    assert "customers: v1 → v2, rows matched by whole-row hashes" in shown.stdout
    assert "added\tremoved\tchanged\tunchanged" in shown.stdout
    other = _cli("diff", "customers@1", "transactions@1", url=server)
    assert "both versions must be of one dataset" in _one_clean_line(other)
    _contracts_check(server, tmp_path, second["country"].to_list())


def _contracts_check(server: str, tmp_path: Path, countries: list[str]) -> None:
    """`datagate contracts check`: lint, diff against what the gateway serves, and the
    candidate run on the latest stored version (customers@2, 50 rows), for CI."""
    candidates = tmp_path / "candidates"
    candidates.mkdir()
    for source in CONTRACTS.glob("*.py"):
        (candidates / source.name).write_text(source.read_text())

    def check(*extra: str) -> subprocess.CompletedProcess[str]:
        return _cli(
            "contracts",
            "check",
            str(candidates),
            "--against",
            server,
            *extra,
            url="http://127.0.0.1:9",  # --against wins over DATAGATE_URL
            env_extra={"DATAGATE_SPACY_MODEL": ""},
        )

    same = check()
    assert same.returncode == 0, same.stderr
    assert same.stdout.startswith("## Contract check: passed")
    assert "### Contract customers: 1.2.0 → 1.2.0" in same.stdout
    assert "| 2 | 50 | valid | — |" in same.stdout  # email's regex: not checkable, redacted
    # Germany refused, with a major bump: compatible by the rules, but stored data fails it.
    customers_py = candidates / "customers.py"
    customers_py.write_text(
        customers_py.read_text()
        .replace('"US", "GB", "DE",', '"US", "GB",')
        .replace('"version": "1.2.0"', '"version": "2.0.0"')
    )
    changed = check("--dataset", "customers", "--json")
    assert changed.returncode == 1, changed.stderr
    outcome = json.loads(changed.stdout)
    (customers_check,) = outcome["contracts"]
    assert (customers_check["serving"], customers_check["version"]) == ("1.2.0", "2.0.0")
    assert customers_check["diff"]["major_bump"] is True
    kinds = [(c["kind"], c["column"]) for c in customers_check["diff"]["changes"]]
    assert kinds == [("check_tightened", "country"), ("metadata_changed", None)]
    (revalidated,) = customers_check["revalidation"]
    assert revalidated["valid"] is False
    failing = {(f["column"], f["failing_rows"]) for f in revalidated["report"]["failures"]}
    germans = countries.count("DE")
    assert germans > 0
    assert failing == {("country", germans)}
    email = [a for a in revalidated["report"]["assertions"] if a["column"] == "email"]
    assert email
    assert all(a["status"] == "not checkable on redacted data" for a in email)
    # The same change without the major bump is refused; a file that does not load fails.
    customers_py.write_text(customers_py.read_text().replace('"2.0.0"', '"1.3.0"'))
    (candidates / "broken.py").write_text("import nothing_of_the_kind\n")
    refused = check()
    assert refused.returncode == 1
    assert "**incompatible**: bump the major version or revert" in refused.stdout
    assert "- error: `" in refused.stdout
    assert (
        "broken.py`: ModuleNotFoundError: No module named 'nothing_of_the_kind'" in refused.stdout
    )
    for done in (same, changed, refused):
        assert "Traceback" not in done.stderr


def test_a_rejected_upload_exits_1_with_its_report_as_a_table(server: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(csv_bytes(customers(5, seed=1).with_columns(pl.lit("ZZ").alias("country"))))
    done = _cli("upload", str(bad), "--dataset", "customers", url=server)
    assert done.returncode == 1
    line = _one_clean_line(done)
    assert "422 Contract violation" in line
    header, *rows = done.stdout.splitlines()
    assert header.split("\t") == ["column", "check", "failing rows", "examples"]
    assert rows[0].split("\t")[:3] == [
        "country",
        "isin(['US', 'GB', 'DE', 'FR', 'NL', 'ES', 'IT', 'CA'])",
        "5",
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_profile_of_the_config_file_connects(server: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[profiles.live]\nurl = "{server}"\nkey = "{TEST_ADMIN_KEY}"\n')
    config.chmod(0o600)
    done = _cli("datasets", "--profile", "live", url="http://127.0.0.1:9", key=None, cwd=tmp_path)
    # --profile beats DATAGATE_URL (set to a closed port by _cli here).
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("dataset\t")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_failure_is_one_line_with_its_exit_code(server: str, tmp_path: Path) -> None:
    good = tmp_path / "customers.csv"
    good.write_bytes(csv_bytes(customers(5, seed=2)))
    nowhere = f"http://127.0.0.1:{free_port()}"
    consumer = httpx.post(
        f"{server}/api/v1/keys",
        json={"role": "consumer", "name": "reader", "datasets": ["customers"]},
        headers={"Authorization": f"Bearer {TEST_ADMIN_KEY}"},
        timeout=30,
    ).json()["key"]
    cases = [
        (_cli("upload", str(good), "-d", "customers", url=server, key=consumer), 3, "403"),
        (_cli("datasets", url=nowhere), 3, "cannot reach Datagate"),
        (_cli("datasets", url=server, key="dg_wrong"), 3, "401"),
        (_cli("datasets", url=server, key=None), 3, "401"),
        (_cli("versions", "nosuch", url=server), 1, "404"),
        (
            _cli("upload", str(tmp_path / "missing.csv"), "-d", "customers", url=server),
            2,
            "missing.csv",
        ),
        (_cli("upload", str(good), "-d", "nosuch", url=server), 1, "404"),
        (_cli("download", "customers", "-o", "x.parquet", url=server), 2, "DATASET@VERSION"),
        (_cli("download", "customers@1", "-o", "x.xlsx", url=server), 2, "suffix"),
        (_cli("upload", str(good), url=server), 2, "--dataset"),
        (_cli("datasets", "--profile", "qa", url=server, cwd=tmp_path), 2, "no profile 'qa'"),
    ]
    for done, code, text in cases:
        assert done.returncode == code, (done.args, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout
        assert text in done.stderr, (done.args, done.stderr)
        assert text in _one_clean_line(done)


def test_lineage_provenance_impact_and_audit_from_the_terminal(server: str, tmp_path: Path) -> None:
    data = tmp_path / "customers.csv"
    data.write_bytes(csv_bytes(customers(20, seed=6)))
    assert _cli("upload", str(data), "-d", "customers", url=server).returncode == 0
    trained = httpx.post(
        f"{server}/api/v1/training-runs",
        json={
            "model": {"name": "churn", "version": "3"},
            "inputs": [{"dataset": "customers", "version": 1}],
        },
        headers={"Authorization": f"Bearer {TEST_ADMIN_KEY}"},
        timeout=30,
    )
    assert trained.status_code == 201, trained.text

    tree = _cli("lineage", "dataset:datagate:customers", url=server)
    assert tree.returncode == 0, tree.stderr
    lines = tree.stdout.splitlines()
    assert lines[0] == "dataset:datagate:customers"
    assert any(line.strip().startswith("<- job:datagate:ingest.customers") for line in lines)
    assert any("-> job:" in line and "train" in line for line in lines), lines

    provenance = _cli("provenance", "churn@3", url=server)
    assert provenance.returncode == 0, provenance.stderr
    assert "customers" in provenance.stdout
    assert json.loads(_cli("provenance", "churn@3", "--json", url=server).stdout)
    impact = _cli("impact", "customers@1", url=server)
    assert impact.returncode == 0, impact.stderr
    assert "churn" in impact.stdout
    log = json.loads(_cli("audit", "log", "--limit", "5", "--json", url=server).stdout)
    assert 0 < len(log["entries"]) <= 5
    table = _cli("audit", "log", "--dataset", "customers", url=server)
    assert table.stdout.splitlines()[0].split("\t") == [
        "seq",
        "at",
        "actor",
        "action",
        "target",
        "outcome",
    ]
    usage = _cli("provenance", "churn", url=server)
    assert usage.returncode == 2
    assert "MODEL@VERSION" in usage.stderr
    assert "Traceback" not in usage.stderr


def _on_a_terminal(*args: str, url: str, cwd: Path) -> tuple[int, str]:
    """Run ``datagate`` with a pseudo-terminal as its standard output and error: what a person
    at a terminal sees (progress bars, tables), and its exit code."""
    import pty

    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAGATE_")}
    env.update(
        DATAGATE_URL=url,
        DATAGATE_API_KEY=TEST_ADMIN_KEY,
        DATAGATE_CONFIG=str(cwd / "config.toml"),
        TERM="xterm-256color",
        COLUMNS="120",
    )
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [DATAGATE, *args], stdout=secondary, stderr=secondary, env=env, cwd=cwd
    )
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))  # no colours
    return process.wait(timeout=120), plain


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # what a terminal shows
def test_a_terminal_gets_progress_bars_and_tables(server: str, tmp_path: Path) -> None:
    data = tmp_path / "customers.csv"
    data.write_bytes(csv_bytes(customers(30_000, seed=9)))
    code, shown = _on_a_terminal("upload", str(data), "-d", "customers", url=server, cwd=tmp_path)
    assert code == 0, shown
    assert "uploading customers.csv" in shown
    assert "validating, redacting and storing" in shown  # the bar after the last byte went
    assert "stored: customers@1, 30,000 rows" in shown
    code, shown = _on_a_terminal(
        "download", "customers@1", "-o", "out.csv", url=server, cwd=tmp_path
    )
    assert code == 0, shown
    assert "downloading customers@1" in shown
    assert (tmp_path / "out.csv").exists()
    code, shown = _on_a_terminal("versions", "customers", url=server, cwd=tmp_path)
    assert code == 0, shown
    assert "┃ version" in shown  # a rich table, not tab-separated lines
    assert "\t" not in shown
