"""``gateway.client`` against a live ``datagate serve``: the synchronous and the asynchronous
client, typed answers, DataFrames in and out, and refusals as exceptions with their problem."""

from __future__ import annotations

import asyncio
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from bench.generate import customers
from gateway.client import AsyncDatagateClient, DatagateClient, DatagateError
from gateway.schemas import DatasetOut, Impact, Provenance, UploadOut, VersionOut
from tests.conftest import TEST_ADMIN_KEY, csv_bytes

pytestmark = pytest.mark.slow


def test_the_client_walks_from_an_upload_to_a_model_and_back(server: str, tmp_path: Path) -> None:
    frame = customers(40, seed=11)
    data = tmp_path / "customers.csv"
    data.write_bytes(csv_bytes(frame))
    sent: list[tuple[int, int | None]] = []
    with DatagateClient(server, TEST_ADMIN_KEY) as datagate:
        stored = datagate.upload(
            data, "customers", source="crm:x", progress=lambda *p: sent.append(p)
        )
        assert isinstance(stored, UploadOut)
        assert stored.created
        assert stored.version.row_count == 40
        assert stored.version.created_at.utcoffset() is not None
        assert sent[-1][0] == sent[-1][1] == data.stat().st_size

        # The same rows as a DataFrame (sent as Parquet): identical once redacted.
        again = datagate.upload(frame, "customers")
        assert not again.created
        assert again.version.version == stored.version.version

        listed = {d.name: d for d in datagate.datasets()}["customers"]
        assert isinstance(listed, DatasetOut)
        assert listed.latest_version is not None
        assert listed.latest_version.version == 1
        assert [v.version for v in datagate.versions("customers")] == [1]
        assert isinstance(datagate.version("customers", 1), VersionOut)
        assert datagate.run(stored.run_id).status == "accepted"
        assert "customers" in {c.name for c in datagate.contracts().contracts}
        assert datagate.contract("customers").columns[0].name == "customer_id"

        read = datagate.read("customers", 1)
        assert read.height == 40
        assert read["customer_id"].to_list() == frame["customer_id"].to_list()
        assert not set(read["email"]) & set(frame["email"])  # stored pseudonymised
        downloaded = datagate.download("customers", 1, tmp_path / "v1.parquet")
        assert_frame_equal(pl.read_parquet(downloaded), read)

        with datagate.training_run("churn", "3", inputs=[("customers", 1)]) as run:
            run.metrics["auc"] = 0.9
        provenance = datagate.provenance("churn", "3")
        assert isinstance(provenance, Provenance)
        (training,) = provenance.training_runs
        assert training.run_id == run.run_id
        (used,) = training.inputs
        assert used.upload is not None
        assert used.upload.run_id == stored.run_id
        impact = datagate.impact("customers", 1)
        assert isinstance(impact, Impact)
        assert [(m.model, m.version) for m in impact.models] == [("churn", "3")]
        assert "churn" in datagate.impact_markdown("customers", 1)
        assert datagate.lineage("dataset:datagate:customers").graph
        assert datagate.audit_log(dataset="customers", limit=3).entries


def test_refusals_raise_with_their_problem_details(server: str) -> None:
    bad = customers(5, seed=3).with_columns(pl.lit("not an address").alias("email"))
    with DatagateClient(server, TEST_ADMIN_KEY) as datagate:
        with pytest.raises(DatagateError) as rejected:
            datagate.upload(bad, "customers")
        assert rejected.value.status == 422
        assert rejected.value.type is not None
        assert rejected.value.type.endswith("/contract-violation")
        report = rejected.value.report
        assert report is not None
        assert any(f["column"] == "email" for f in report["failures"])
        assert "not an address" not in str(rejected.value.problem)  # a PII column: placeholder
        with pytest.raises(DatagateError) as missing:
            datagate.version("customers", 7)
        assert missing.value.status == 404
    with DatagateClient(server, "dg_wrong") as stranger, pytest.raises(DatagateError) as refused:
        stranger.datasets()
    assert refused.value.status == 401


def test_the_async_client_does_the_same(server: str, tmp_path: Path) -> None:
    frame = customers(25, seed=12)

    async def walk() -> pl.DataFrame:
        async with AsyncDatagateClient(server, TEST_ADMIN_KEY) as datagate:
            stored = await datagate.upload(frame, "customers", source="notebook:churn-prep")
            assert stored.created
            assert "customers" in {d.name for d in await datagate.datasets()}
            async with datagate.training_run("churn", "4", inputs=[("customers", 1)]):
                pass
            assert (await datagate.provenance("churn", "4")).training_runs
            with pytest.raises(DatagateError) as missing:
                await datagate.run("no-such-run")
            assert missing.value.status == 404
            return await datagate.read("customers", stored.version.version)

    read = asyncio.run(walk())
    assert read["customer_id"].to_list() == frame["customer_id"].to_list()
