"""Decompress an upload, decide its format, and read it into a polars frame.

Formats: CSV, Parquet, NDJSON (JSON Lines), JSON array of records, Arrow IPC; each optionally
gzip or zstd compressed. The format comes from ``?format=``, then the Content-Type, then the
file name, then the content itself.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Protocol

import polars as pl
import zstandard

from gateway.errors import EmptyUpload, UnreadableUpload, UnsupportedFormat, UploadTooLarge
from gateway.uploads import ReceivedUpload, UploadSpool

FORMATS = ("csv", "parquet", "ndjson", "json", "arrow")
_CONTENT_TYPES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/tab-separated-values": None,
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/parquet": "parquet",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/x-jsonlines": "ndjson",
    "application/jsonlines": "ndjson",
    "application/json": "json",
    "text/json": "json",
    "application/vnd.apache.arrow.file": "arrow",
    "application/vnd.apache.arrow.stream": "arrow",
}
_GENERIC_CONTENT_TYPES = frozenset(
    {
        "application/octet-stream",
        "text/plain",
        "application/gzip",
        "application/x-gzip",
        "application/zstd",
        "application/x-www-form-urlencoded",
        "binary/octet-stream",
    }
)
_EXTENSIONS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "json",
    ".arrow": "arrow",
    ".ipc": "arrow",
    ".feather": "arrow",
}
_COMPRESSED_SUFFIXES = (".gz", ".gzip", ".zst", ".zstd")
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_COPY_CHUNK = 1 << 20
_BOM = "\ufeff"
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _copy_limited(source: _Readable, target: IO[bytes], limit: int) -> int:
    written = 0
    while chunk := source.read(_COPY_CHUNK):
        written += len(chunk)
        if written > limit:
            raise UploadTooLarge(
                f"decompressed upload exceeds the limit of {limit} bytes", limit=limit
            )
        target.write(chunk)
    return written


def decompress(upload: ReceivedUpload, spool: UploadSpool, limit: int) -> tuple[Path, str | None]:
    """The path of the uncompressed payload and the compression found (gzip, zstd or None).

    Raises:
        UploadTooLarge: the content expands past ``limit`` bytes.
        UnreadableUpload: the compressed stream is corrupt or truncated.
        EmptyUpload: the stream decompresses to nothing.
    """
    with upload.path.open("rb") as fh:
        magic = fh.read(4)
    if magic.startswith(_GZIP_MAGIC):
        compression = "gzip"
    elif magic.startswith(_ZSTD_MAGIC):
        compression = "zstd"
    else:
        return upload.path, None
    path, out = spool.new_file()
    try:
        with out, upload.path.open("rb") as raw:
            if compression == "gzip":
                with gzip.GzipFile(fileobj=raw) as stream:
                    size = _copy_limited(stream, out, limit)
            else:
                with zstandard.ZstdDecompressor().stream_reader(raw) as zstream:
                    size = _copy_limited(zstream, out, limit)
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        raise UnreadableUpload(f"the {compression} stream is corrupt or truncated") from exc
    if size == 0:
        raise EmptyUpload(f"the {compression} stream holds no data")
    return path, compression


def _sniff(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"ARROW1") or head.startswith(b"\xff\xff\xff\xff"):
        return "arrow"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        return "ndjson"
    return "csv"


def _from_filename(filename: str | None) -> str | None:
    if not filename:
        return None
    name = filename.lower()
    for suffix in _COMPRESSED_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return _EXTENSIONS.get(Path(name).suffix)


def detect_format(
    path: Path, requested: str | None, content_type: str | None, filename: str | None
) -> str:
    """Decide the payload's format: ``?format=``, Content-Type, file name, then content.

    Raises:
        UnsupportedFormat: the requested or declared format is not one Datagate reads.
    """
    if requested:
        fmt = requested.lower()
        if fmt == "jsonl":
            fmt = "ndjson"
        if fmt not in FORMATS:
            raise UnsupportedFormat(
                f"format {requested!r} is not supported (supported: {', '.join(FORMATS)})"
            )
        return fmt
    if content_type and content_type not in _GENERIC_CONTENT_TYPES:
        fmt_or_none = _CONTENT_TYPES.get(content_type)
        if fmt_or_none is None:
            raise UnsupportedFormat(
                f"content type {content_type!r} is not supported; "
                f"send one of {', '.join(sorted(k for k, v in _CONTENT_TYPES.items() if v))}"
            )
        if fmt_or_none != "json":
            return fmt_or_none
        # application/json covers both a JSON array and JSON Lines: look at the content.
        sniffed = _sniff(path)
        return sniffed if sniffed in ("json", "ndjson") else "json"
    return _from_filename(filename) or _sniff(path)


_QUOTED = re.compile(r"`[^`]*`|'[^']*'|\"[^\"]*\"")


def safe_reason(exc: BaseException) -> str:
    """A reader's error message with quoted fragments (which may be cell values) removed."""
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return _QUOTED.sub("<…>", first_line)[:300]


def _read_csv(path: Path, dtypes: Mapping[str, pl.DataType]) -> pl.DataFrame:
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith(_UTF16_32_BOMS):
        raise UnreadableUpload("CSV text must be UTF-8 encoded (found a UTF-16/32 byte order mark)")
    header = pl.read_csv(path, n_rows=0, infer_schema=False, raise_if_empty=False).columns
    try:
        # Fast path: the reader parses straight into the contract's dtypes.
        frame = pl.read_csv(
            path,
            schema_overrides={c: dtypes.get(c.removeprefix(_BOM), pl.String()) for c in header},
            encoding="utf8",
        )
    except pl.exceptions.ComputeError:
        # Some cell does not parse: read every column as text, so that validation can cast
        # it and report each bad cell as a contract failure instead of a reader error.
        frame = pl.read_csv(path, infer_schema=False, encoding="utf8", raise_if_empty=False)
    if frame.columns and frame.columns[0].startswith(_BOM):
        frame = frame.rename({frame.columns[0]: frame.columns[0].removeprefix(_BOM)})
    return frame


def _read(path: Path, fmt: str, dtypes: Mapping[str, pl.DataType]) -> pl.DataFrame:
    if fmt == "csv":
        return _read_csv(path, dtypes)
    if fmt == "parquet":
        return pl.read_parquet(path)
    if fmt == "arrow":
        with path.open("rb") as fh:
            is_file = fh.read(6) == b"ARROW1"
        return pl.read_ipc(path) if is_file else pl.read_ipc_stream(path)
    if fmt == "ndjson":
        return pl.read_ndjson(path, infer_schema_length=None)
    return pl.read_json(path, infer_schema_length=None)


def read_frame(path: Path, fmt: str, dtypes: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Read the payload as a table; text formats are parsed with the contract's ``dtypes``.

    Raises:
        UnreadableUpload: the bytes are not valid ``fmt`` or not a table of records.
        EmptyUpload: the table has no rows or no columns.
    """
    try:
        frame = _read(path, fmt, dtypes)
    except (pl.exceptions.PolarsError, OSError, ValueError, TypeError) as exc:
        raise UnreadableUpload(f"could not read the upload as {fmt}: {safe_reason(exc)}") from exc
    except BaseException as exc:
        # pyo3 panics surface as PanicException (a BaseException); the upload is at fault.
        if type(exc).__name__ == "PanicException":
            raise UnreadableUpload(f"could not read the upload as {fmt}") from exc
        raise
    if frame.width == 0 or frame.height == 0:
        raise EmptyUpload(f"the {fmt} upload holds no rows")
    return frame
