"""Format detection, decompression with limits, and reading every supported format."""

from __future__ import annotations

import asyncio
import gzip
import io
from collections.abc import AsyncIterator
from pathlib import Path

import polars as pl
import pytest
import zstandard

from gateway.decoding import DecodeLimits, unwrap
from gateway.errors import (
    EmptyUpload,
    InvalidRequest,
    UnreadableUpload,
    UnsupportedFormat,
    UploadTooLarge,
)
from gateway.formats import detect_format, read_frame, safe_reason
from gateway.uploads import ReceivedUpload, UploadSpool, receive_upload

FRAME = pl.DataFrame({"id": [1, 2, 3], "name": ["a", "b", None]})
LIMITS = DecodeLimits(bytes=10_000_000, rows=1_000_000, columns=100, depth=8)


def _limited(size: int) -> DecodeLimits:
    return DecodeLimits(bytes=size, rows=1_000_000, columns=100, depth=8)


def _file(tmp_path: Path, data: bytes, name: str = "payload") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _encodings() -> dict[str, bytes]:
    parquet, arrow = io.BytesIO(), io.BytesIO()
    FRAME.write_parquet(parquet)
    FRAME.write_ipc(arrow)
    return {
        "csv": FRAME.write_csv().encode(),
        "parquet": parquet.getvalue(),
        "ndjson": FRAME.write_ndjson().encode(),
        "json": FRAME.write_json().encode(),
        "arrow": arrow.getvalue(),
    }


@pytest.mark.parametrize("fmt", ["csv", "parquet", "ndjson", "json", "arrow"])
def test_content_sniffing_finds_every_format_and_reads_it(tmp_path: Path, fmt: str) -> None:
    path = _file(tmp_path, _encodings()[fmt])
    assert detect_format(path, None, None, None) == fmt
    frame = read_frame(path, fmt, {"id": pl.Int64(), "name": pl.String()}, LIMITS)
    assert frame.height == 3
    assert frame["name"].to_list() == ["a", "b", None]


@pytest.mark.parametrize(
    ("requested", "content_type", "filename", "expected"),
    [
        ("parquet", "text/csv", "x.json", "parquet"),
        ("JSONL", None, None, "ndjson"),
        (None, "text/csv", "x.parquet", "csv"),
        (None, "application/x-ndjson", None, "ndjson"),
        (None, "application/octet-stream", "data.csv.gz", "csv"),
        (None, None, "export.PARQUET", "parquet"),
        (None, "text/plain", "notes.jsonl.zst", "ndjson"),
    ],
)
def test_format_precedence_is_query_then_content_type_then_file_name(
    tmp_path: Path,
    requested: str | None,
    content_type: str | None,
    filename: str | None,
    expected: str,
) -> None:
    path = _file(tmp_path, b'{"id": 1}\n')
    assert detect_format(path, requested, content_type, filename) == expected


def test_application_json_holding_json_lines_is_read_as_ndjson(tmp_path: Path) -> None:
    path = _file(tmp_path, b'{"id": 1}\n{"id": 2}\n')
    assert detect_format(path, None, "application/json", None) == "ndjson"


@pytest.mark.parametrize(("requested", "content_type"), [("xml", None), (None, "image/png")])
def test_unknown_formats_are_unsupported(
    tmp_path: Path, requested: str | None, content_type: str | None
) -> None:
    with pytest.raises(UnsupportedFormat):
        detect_format(_file(tmp_path, b"a\n1\n"), requested, content_type, None)


@pytest.mark.parametrize("compress", [gzip.compress, zstandard.compress], ids=["gzip", "zstd"])
def test_compressed_payloads_are_unwrapped_within_the_limit(
    tmp_path: Path, compress: object
) -> None:
    data = FRAME.write_csv().encode()
    raw = _file(tmp_path, compress(data))  # type: ignore[operator]
    spool = UploadSpool(tmp_path / "spool")
    path, layers = unwrap(raw, spool, _limited(1000))
    assert path.read_bytes() == data
    assert layers in (["gzip"], ["zstd"])
    with pytest.raises(UploadTooLarge):
        unwrap(raw, spool, _limited(len(data) - 1))
    spool.close()
    assert list((tmp_path / "spool").iterdir()) == []


def test_corrupt_compressed_stream_is_unreadable(tmp_path: Path) -> None:
    raw = _file(tmp_path, gzip.compress(b"a,b\n1,2\n" * 100)[:30])
    with pytest.raises(UnreadableUpload):
        unwrap(raw, UploadSpool(tmp_path / "s"), _limited(10_000))


@pytest.mark.parametrize(
    ("data", "fmt", "error"),
    [
        (b"PAR1garbage", "parquet", UnreadableUpload),
        (b'{"a": 1', "ndjson", UnreadableUpload),
        (b"id,name\n", "csv", EmptyUpload),
        (b"id\n\xff\xfe\n", "csv", UnreadableUpload),
    ],
)
def test_bad_payloads_raise_upload_errors(
    tmp_path: Path, data: bytes, fmt: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        read_frame(_file(tmp_path, data), fmt, {}, LIMITS)


@pytest.mark.parametrize(
    "message",
    [
        "could not parse `john@example.com` as i64 in 'email'",
        # A quoted field that spans lines: the quote never closes on the first line (finding 4).
        'could not parse `"victim@example.com 536-22-8726\n more` as dtype i64',
        "found 3 fields in 'john@example.com' but expected 2",
    ],
)
def test_reader_messages_drop_quoted_fragments(message: str) -> None:
    reason = safe_reason(ValueError(message))
    assert "example.com" not in reason
    assert "536-22" not in reason
    assert "email" not in reason
    assert reason


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _receive(
    tmp_path: Path, headers: dict[str, str], *parts: bytes, limit: int = 1000
) -> tuple[ReceivedUpload, UploadSpool]:
    spool = UploadSpool(tmp_path / "spool")
    return asyncio.run(receive_upload(_chunks(*parts), headers, spool, limit)), spool


def test_raw_body_is_streamed_to_a_temporary_file(tmp_path: Path) -> None:
    upload, spool = _receive(
        tmp_path, {"content-type": "text/csv; charset=utf-8"}, b"a,b\n", b"1,2\n"
    )
    assert upload.path.read_bytes() == b"a,b\n1,2\n"
    assert upload.content_type == "text/csv"
    spool.close()
    assert not upload.path.exists()


def test_size_limit_is_enforced_while_streaming(tmp_path: Path) -> None:
    with pytest.raises(UploadTooLarge):
        _receive(tmp_path, {}, b"x" * 600, b"x" * 600)
    with pytest.raises(UploadTooLarge):
        _receive(tmp_path, {"content-length": "5000"}, b"x")


def test_multipart_file_field_is_extracted_with_its_name(tmp_path: Path) -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="comment"\r\n\r\nhello\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="c.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\na,b\n1,2\n\r\n--XyZ--\r\n"
    )
    headers = {"content-type": "multipart/form-data; boundary=XyZ"}
    upload, spool = _receive(tmp_path, headers, body[:37], body[37:])
    assert upload.path.read_bytes() == b"a,b\n1,2\n"
    assert (upload.filename, upload.content_type) == ("c.csv", "text/csv")
    spool.close()


def test_multipart_without_file_field_is_invalid(tmp_path: Path) -> None:
    body = b'--XyZ\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--XyZ--\r\n'
    with pytest.raises(InvalidRequest):
        _receive(tmp_path, {"content-type": "multipart/form-data; boundary=XyZ"}, body)
