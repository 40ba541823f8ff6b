"""A resource budget on decoded data (finding 1): bombs of every kind get a 413 in seconds, with
bounded memory, across every codec layer and container, and the server keeps answering."""

from __future__ import annotations

import gzip
import io
import json
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import zstandard
from fastapi.testclient import TestClient

import gateway.decoding
from gateway.app import create_app
from privacy import PiiEngine
from tests.conftest import admin_client, csv_bytes, settings_for

LIMITS: dict[str, Any] = {
    "max_decoded_bytes": 32_000_000,
    "max_rows": 1_000_000,
    "max_columns": 200,
    "max_nesting_depth": 8,
}
UPLOAD = "/api/v1/datasets/customers/uploads"


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


@pytest.fixture
def guarded(tmp_path: Path, database_url: str, pii_engine: PiiEngine) -> Iterator[TestClient]:
    settings = settings_for(
        tmp_path / "home", database_url=database_url, max_upload_bytes=5_000_000, **LIMITS
    )
    with admin_client(create_app(settings, pii_engine=pii_engine)) as client:
        yield client


def _parquet(frame: pl.DataFrame, **options: object) -> bytes:
    out = io.BytesIO()
    frame.write_parquet(out, **options)  # type: ignore[arg-type]
    return out.getvalue()


def _arrow(frame: pl.DataFrame, stream: bool) -> bytes:
    out = io.BytesIO()
    if stream:
        frame.write_ipc_stream(out, compression="zstd")
    else:
        frame.write_ipc(out, compression="zstd")
    return out.getvalue()


def _repeated(rows: int, columns: int = 1) -> pl.DataFrame:
    return pl.select(pl.repeat(7, rows, dtype=pl.Int64).alias(f"c{i}") for i in range(columns))


def _deep_struct(depth: int) -> pl.DataFrame:
    value = pl.lit(1)
    for _ in range(depth):
        value = pl.struct(value.alias("a"))
    return pl.select(value.alias("a"))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


def _deep_parquet(depth: int) -> bytes:
    """A Parquet file whose schema nests ``depth`` groups: polars overflowed its stack on one
    (written by hand, in Thrift's compact protocol; polars itself takes minutes to build it)."""

    def element(name: bytes, children: int, root: bool = False) -> bytes:
        named = _varint(len(name)) + name
        if root:  # 4: name, 5: num_children
            return b"\x48" + named + b"\x15" + _zigzag(children) + b"\x00"
        if children:  # 3: repetition OPTIONAL, 4: name, 5: num_children
            return b"\x35" + _zigzag(1) + b"\x18" + named + b"\x15" + _zigzag(children) + b"\x00"
        # 1: type INT64, 3: repetition OPTIONAL, 4: name
        return b"\x15" + _zigzag(2) + b"\x25" + _zigzag(1) + b"\x18" + named + b"\x00"

    elements = [element(b"schema", 1, root=True)] + [element(b"a", 1) for _ in range(depth)]
    elements.append(element(b"a", 0))
    schema = b"\xfc" + _varint(len(elements)) + b"".join(elements)  # list<struct>, long form
    footer = (
        b"\x15"
        + _zigzag(1)  # 1: version
        + b"\x19"
        + schema  # 2: schema
        + b"\x16"
        + _zigzag(1)  # 3: num_rows
        + b"\x19\x0c"  # 4: row_groups, an empty list of structs
        + b"\x00"
    )
    return b"PAR1" + footer + len(footer).to_bytes(4, "little") + b"PAR1"


ZEROS = 100_000_000


def _gzip_zeros() -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
        block = b"\0" * (1 << 20)
        for _ in range(ZEROS >> 20):
            gz.write(block)
    return out.getvalue()


BOMBS: dict[str, tuple[Callable[[], bytes], str, str]] = {
    # name: (body, ?format=, the limit it passes)
    "parquet-rle-rows": (lambda: _parquet(_repeated(5_000_000)), "parquet", "rows"),
    "parquet-rle-bytes": (lambda: _parquet(_repeated(500_000, 10)), "parquet", "bytes"),
    "parquet-dictionary-text": (
        lambda: _parquet(pl.select(pl.repeat("x" * 1000, 200_000).alias("s"))),
        "parquet",
        "bytes",
    ),
    "parquet-deep-schema": (lambda: _deep_parquet(5_000), "parquet", "nesting levels"),
    "arrow-file": (lambda: _arrow(_repeated(5_000_000), stream=False), "arrow", "rows"),
    "arrow-stream": (lambda: _arrow(_repeated(5_000_000), stream=True), "arrow", "rows"),
    "arrow-deep-schema": (
        lambda: _arrow(_deep_struct(40), stream=False),
        "arrow",
        "nesting levels",
    ),
    "gzip-in-gzip": (lambda: gzip.compress(_gzip_zeros()), "csv", "bytes"),
    "zstd-in-gzip": (
        lambda: gzip.compress(zstandard.ZstdCompressor(level=19).compress(b"\0" * ZEROS)),
        "csv",
        "bytes",
    ),
    "zlib-csv": (lambda: zlib.compress(b"a\n" + b"1\n" * 30_000_000, 9), "csv", "bytes"),
    "four-layers": (
        lambda: gzip.compress(gzip.compress(gzip.compress(gzip.compress(b"a\n1\n")))),
        "csv",
        "compression layers",
    ),
    "many-tiny-rows": (lambda: b"customer_id\n" + b"1\n" * 2_000_000, "csv", "rows"),
    "too-many-columns": (
        lambda: (
            ",".join(f"c{i}" for i in range(300)) + "\n" + ",".join("1" * 300) + "\n"
        ).encode(),
        "csv",
        "columns",
    ),
    "wide-sparse-ndjson": (
        lambda: "".join(json.dumps({f"k{i}": i}) + "\n" for i in range(300)).encode(),
        "ndjson",
        "columns",
    ),
    # Schema inference is quadratic in distinct keys: this took polars minutes to infer.
    "ndjson-200k-distinct-keys": (
        lambda: "".join(json.dumps({f"k{i}": i}) + "\n" for i in range(200_000)).encode(),
        "ndjson",
        "columns",
    ),
    "ndjson-200k-distinct-nested-keys": (
        lambda: "".join(json.dumps({"a": {f"k{i}": 1}}) + "\n" for i in range(200_000)).encode(),
        "ndjson",
        "columns",
    ),
    "json-array-200k-distinct-keys": (
        lambda: json.dumps([{f"k{i}": i} for i in range(200_000)]).encode(),
        "json",
        "columns",
    ),
    "deep-ndjson": (lambda: b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "ndjson", "nesting levels"),
    "deep-json-array": (
        lambda: b"[" + b"[" * 100_000 + b"]" * 100_000 + b"]",
        "json",
        "nesting levels",
    ),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_decoding_bomb_is_refused_quickly_with_bounded_memory(
    guarded: TestClient, name: str
) -> None:
    make, fmt, limit = BOMBS[name]
    body = make()
    assert len(body) < 5_000_000
    _reset_peak_rss()
    before = _peak_rss_mb()
    started = time.monotonic()
    response = guarded.post(f"{UPLOAD}?format={fmt}", content=body)
    elapsed = time.monotonic() - started
    assert response.status_code == 413, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["type"].endswith("/upload-too-large")
    assert problem["exceeded"] == limit
    assert elapsed < 10
    assert _peak_rss_mb() - before < 250, "decoding grew the process by more than 250 MB"
    assert guarded.get("/healthz").status_code == 200
    home = guarded.app.state.services.settings.home  # type: ignore[attr-defined]
    assert [p for p in (home / "tmp").rglob("*") if p.is_file()] == []


def test_the_default_limits_refuse_the_reported_bomb(client: TestClient) -> None:
    """200 million identical int64 values (600 KB as zstd Arrow): 1.6 GB decoded."""
    lazy = pl.LazyFrame().select(pl.repeat(7, 200_000_000, dtype=pl.Int64).alias("customer_id"))
    out = io.BytesIO()
    lazy.sink_ipc(out, compression="zstd")
    response = client.post(f"{UPLOAD}?format=arrow", content=out.getvalue())
    assert response.status_code == 413
    assert response.json()["exceeded"] == "rows"


def test_data_within_the_limits_still_passes(
    guarded: TestClient, customers_frame: pl.DataFrame
) -> None:
    frames = {
        "csv": csv_bytes(customers_frame),
        "gzip": gzip.compress(csv_bytes(customers_frame)),
        "zstd-in-gzip": gzip.compress(zstandard.compress(csv_bytes(customers_frame))),
        "json": customers_frame.write_json().encode(),
    }
    for name, body in frames.items():
        fmt = "json" if name == "json" else "csv"
        response = guarded.post(f"{UPLOAD}?format={fmt}", content=body)
        assert response.status_code in (200, 201), (name, response.text)
        assert response.json()["version"]["row_count"] == customers_frame.height


def test_an_arrow_stream_of_countless_tiny_messages_is_refused_while_it_is_read(
    guarded: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers are read one at a time and counted: a flood of tiny record batches neither piles
    up in memory nor keeps the reader busy for minutes (the cap is lowered to keep it small)."""
    monkeypatch.setattr(gateway.decoding, "_MAX_MESSAGES", 50)
    single = io.BytesIO()
    pl.DataFrame({"customer_id": [1]}).write_ipc_stream(single)
    data = single.getvalue()
    # The stream is: schema message, one record batch message, end-of-stream marker.
    schema_end = _message_end(data, 0)
    batch_end = _message_end(data, schema_end)
    stream = data[:schema_end] + data[schema_end:batch_end] * 200 + data[batch_end:]
    response = guarded.post(f"{UPLOAD}?format=arrow", content=stream)
    assert response.status_code == 413, response.text
    assert response.json()["exceeded"] == "messages"


def _message_end(data: bytes, pos: int) -> int:
    """Where the encapsulated Arrow message starting at ``pos`` ends (header and body)."""
    found = gateway.decoding._message_at(io.BytesIO(data), pos, len(data))
    assert found is not None
    _, body, body_length = found
    return body + body_length
