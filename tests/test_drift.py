"""Drift: synthetic shifts of known size are flagged, unshifted columns are not (seeded); the
report on the version, its route, the OpenLineage event and the Prometheus gauges; reject."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from gateway.app import create_app
from gateway.drift import DriftPolicy, drift_policy, measure, report
from gateway.models import LineageEvent
from lineage.validation import validate_event
from privacy import PiiEngine, RedactionKey
from tests.conftest import TEST_PII_KEY, admin_client, settings_for

SECRET = RedactionKey(TEST_PII_KEY.encode())
ROWS = 20_000


def frame(
    seed: int, *, shift: float = 0.0, mix: tuple[float, ...] = (0.6, 0.3, 0.1), nulls: float = 0.0
) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.normal(100 + 15 * shift, 15, ROWS)
    score = rng.normal(0, 1, ROWS)
    label = rng.choice(["a", "b", "c"], ROWS, p=list(mix))
    pseudonym = [f"{rng.integers(0, 500):064x}" for _ in range(ROWS)]
    missing = rng.random(ROWS) < nulls
    return pl.DataFrame(
        {
            "amount": amount,
            "score": np.where(missing, np.nan, score),
            "label": label,
            "email": pseudonym,
            "day": pl.date_range(pl.date(2024, 1, 1), pl.date(2024, 1, 1), eager=True).to_list()
            * ROWS,
        }
    ).with_columns(pl.col("score").fill_nan(None))


Measured = tuple[dict[str, Any], dict[str, dict[str, int]]]


def profiled(tmp_path: Path, name: str, data: pl.DataFrame) -> Measured:
    path = tmp_path / f"{name}.parquet"
    data.write_parquet(path)
    return measure([path], data.height, SECRET)


def drifted(base: Measured, new: Measured, policy: DriftPolicy | None = None) -> set[str]:
    found = report(new[0], [("previous", 1, base[0])], policy or DriftPolicy(), new[1])
    return set(found["comparisons"][0]["drifted"])


def test_a_shifted_column_is_flagged_and_an_unshifted_one_is_not(tmp_path: Path) -> None:
    base = profiled(tmp_path, "base", frame(1))
    same = profiled(tmp_path, "same", frame(2))
    assert drifted(base, same) == set()
    moved = profiled(tmp_path, "moved", frame(3, shift=0.5))  # half a standard deviation
    assert drifted(base, moved) == {"amount"}
    slight = profiled(tmp_path, "slight", frame(4, shift=0.03))
    assert drifted(base, slight) == set()
    mixed = profiled(tmp_path, "mixed", frame(5, mix=(0.3, 0.3, 0.4)))
    assert drifted(base, mixed) == {"label"}
    holes = profiled(tmp_path, "holes", frame(6, nulls=0.3))
    assert drifted(base, holes) == {"score"}
    found = report(moved[0], [("previous", 1, base[0])], DriftPolicy(), moved[1])
    amount = next(c for c in found["comparisons"][0]["columns"] if c["column"] == "amount")
    assert amount["exceeded"] == ["wasserstein"]
    assert 0.4 < amount["wasserstein"] < 0.6  # 0.5 standard deviations
    assert 0.15 < amount["ks"] < 0.25  # KS of N(0,1) against N(0.5,1) is 0.197
    assert amount["psi"] > 0.1
    assert found["status"] == "warn"


def test_pii_columns_are_measured_by_their_pseudonyms_only(tmp_path: Path) -> None:
    base, _ = profiled(tmp_path, "base", frame(1))
    entry = base["columns"]["email"]
    assert entry["kind"] == "categorical"
    assert all(len(k) == 16 for k in entry["top"])  # pseudonyms of the values, not values
    assert not set(entry["top"]) & set(frame(1)["email"].to_list())
    assert "quantiles" in base["columns"]["day"]  # dates are numeric


def test_thresholds_and_actions_come_from_the_contract(tmp_path: Path) -> None:
    base = profiled(tmp_path, "base", frame(1))
    slight = profiled(tmp_path, "slight", frame(4, shift=0.1))
    strict = drift_policy(
        {"columns": {"amount": {"wasserstein": 0.05, "action": "reject"}}}, ["amount"]
    )
    found = report(slight[0], [("previous", 1, base[0])], strict, slight[1])
    assert found["status"] == "reject"
    assert drifted(base, slight, drift_policy({"default": {"ks": 0.5}}, [])) == set()


@pytest.mark.parametrize(
    "declared",
    [
        {"action": "stop"},
        {"columns": {"nope": {"psi": 0.1}}},
        {"columns": {"amount": {"p_value": 0.05}}},
        {"default": {"psi": -1}},
        {"columns": {"amount": {"psi": 0.1, "action": "explode"}}},
        "0.1",
    ],
)
def test_a_bad_drift_policy_is_refused(declared: object) -> None:
    with pytest.raises(ValueError, match="drift"):
        drift_policy(declared, ["amount"])


CONTRACT = """
import pandera.polars as pa


class Payments(pa.DataFrameModel):
    payment_id: int
    email: str = pa.Field(metadata={"pii": "EMAIL_ADDRESS", "redact": "hash"})
    amount: float
    channel: str

    class Config:
        name = "payments"
        metadata = {
            "version": "1.0.0",
            "drift": {"columns": {"amount": {"wasserstein": 0.2, "action": "reject"}}},
        }
"""


def payments(seed: int, shift: float = 0.0, rows: int = 2_000) -> str:
    rng = np.random.default_rng(seed)
    data = pl.DataFrame(
        {
            "payment_id": rng.permutation(rows),
            "email": [f"user{i}@example.com" for i in rng.integers(0, 300, rows)],
            "amount": rng.normal(50 + 10 * shift, 10, rows).round(2),
            "channel": rng.choice(["web", "app"], rows),
        }
    )
    return data.write_csv()


@pytest.fixture
def gateway(tmp_path: Path, database_url: str, pii_engine: PiiEngine) -> Iterator[TestClient]:
    folder = tmp_path / "contracts"
    folder.mkdir()
    (folder / "payments.py").write_text(textwrap.dedent(CONTRACT))
    settings = settings_for(tmp_path / "home", folder, database_url=database_url)
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        yield client


def test_each_new_version_gets_a_drift_report_and_reject_refuses(gateway: TestClient) -> None:
    def post(body: str) -> Any:
        return gateway.post("/api/v1/datasets/payments/uploads?format=csv", content=body)

    policies = gateway.get("/api/v1/contracts/payments").json()["policies"]
    assert policies["drift"]["columns"] == {"amount": {"wasserstein": 0.2, "action": "reject"}}
    assert post(payments(1)).status_code == 201
    first = gateway.get("/api/v1/datasets/payments/versions/1").json()
    assert first["drift"] == {"status": "none", "drifted": [], "against": {}}
    assert post(payments(2)).status_code == 201
    second = gateway.get("/api/v1/datasets/payments/versions/2/drift").json()
    assert second["status"] == "ok"
    (comparison,) = second["comparisons"]
    assert (comparison["baseline"], comparison["version"]) == ("previous", 1)
    assert {c["column"] for c in comparison["columns"]} == {
        "payment_id",
        "email",
        "amount",
        "channel",
    }
    shifted = post(payments(3, shift=1.0))
    assert shifted.status_code == 422
    problem = shifted.json()
    assert problem["type"].endswith("/drift-rejected")
    assert "amount" in problem["detail"]
    assert problem["drift"]["status"] == "reject"
    assert gateway.get("/api/v1/datasets/payments").json()["latest_version"]["version"] == 2
    # A pinned reference is measured against as well.
    pinned = gateway.put("/api/v1/datasets/payments/drift/reference", json={"version": 1})
    assert pinned.json() == {"dataset": "payments", "reference": 1}
    assert post(payments(4)).status_code == 201
    third = gateway.get("/api/v1/datasets/payments/versions/3/drift").json()
    assert [(c["baseline"], c["version"]) for c in third["comparisons"]] == [
        ("previous", 2),
        ("reference", 1),
    ]
    assert gateway.delete("/api/v1/datasets/payments/drift/reference").json()["reference"] is None
    # Prometheus gauges per dataset and (declared) column.
    scraped = gateway.get("/metrics").text
    assert (
        'datagate_drift_statistic{column="amount",dataset="payments",statistic="wasserstein"}'
        in scraped
    )
    assert 'datagate_drift_drifted{column="amount",dataset="payments"} 0.0' in scraped
    # The ingest's lineage event: data-quality metrics of what was stored, and the drift facet.
    services = gateway.app.state.services  # type: ignore[attr-defined]
    with Session(services.engine) as session:
        events = [e.payload for e in session.exec(select(LineageEvent)).all()]
    completes = [
        e
        for e in events
        if e.get("eventType") == "COMPLETE" and e["job"]["name"] == "ingest.payments"
    ]
    output = completes[-1]["outputs"][0]
    assert output["facets"]["datagate_drift"]["status"] == "ok"
    quality = output["facets"]["dataQualityMetrics"]["columnMetrics"]
    assert set(quality["amount"]["quantiles"]) == {"0.25", "0.5", "0.75"}
    validate_event(completes[-1])


def test_the_sample_kept_part_by_part_is_evenly_spaced() -> None:
    from gateway.drift import Sampler

    whole = pl.DataFrame({"n": range(10_007)})
    sampler = Sampler(limit=1_000)
    start = 0
    for size in (3, 997, 1, 4_000, 2_506, 2_500):
        sampler.add(whole.slice(start, size))
        start += size
    sample = sampler.sample()
    assert sample is not None
    assert sampler.step == 16  # 10,007 rows, at most 1,000 kept
    assert sample["n"].to_list() == whole.gather_every(16)["n"].to_list()


def test_values_at_the_float_limits_are_measured_without_infinities(tmp_path: Path) -> None:
    """Found by the format round-trip suite: an ingest of huge floats failed in its drift."""
    import json

    data = pl.DataFrame(
        {
            "x": [1.7e308, -1.7e308, 1e308, None],
            "d": pl.Series([1, 2, None, 4], dtype=pl.Decimal(38, 2)),
            "t": [None, None, None, None],
        }
    )
    base, counts = profiled(tmp_path, "huge", data)
    json.dumps(base, allow_nan=False)  # storable as JSON, on PostgreSQL too
    assert "quantiles" not in base["columns"]["x"]  # overflowing figures are left out
    found = report(base, [("previous", 1, base)], DriftPolicy(), counts)
    json.dumps(found, allow_nan=False)
