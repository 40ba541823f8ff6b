"""Decide an upload's format and read it into a polars frame, within a decoding budget.

Formats: CSV, Parquet, NDJSON (JSON Lines), JSON array of records, Arrow IPC; each optionally
gzip or zstd compressed (unwrapped first by ``gateway.decoding``). The format comes from
``?format=``, then the Content-Type, then the file name, then the content itself. Every reader
is measured before it starts and streams in batches whose rows and bytes are added up
(``gateway.decoding``), so no upload decodes past its limits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from gateway.decoding import (
    DecodeLimits,
    arrow_footprint,
    check_json_keys,
    check_schema,
    collect_within,
    parquet_footprint,
    scan_json_text,
)
from gateway.errors import EmptyUpload, UnreadableUpload, UnsupportedFormat, UploadError

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
_BOM = "\ufeff"
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")


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


def declared_format(requested: str | None, content_type: str | None) -> str | None:
    """The format ``?format=`` or the Content-Type names, if either does (``json`` may also
    be JSON Lines: the content tells).

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
        return fmt_or_none
    return None


def detect_format(
    path: Path, requested: str | None, content_type: str | None, filename: str | None
) -> str:
    """Decide the payload's format: ``?format=``, Content-Type, file name, then content.

    Raises:
        UnsupportedFormat: the requested or declared format is not one Datagate reads.
    """
    declared = declared_format(requested, content_type)
    if declared == "json" and not requested:
        # application/json covers both a JSON array and JSON Lines: look at the content.
        sniffed = _sniff(path)
        return sniffed if sniffed in ("json", "ndjson") else "json"
    return declared or _from_filename(filename) or _sniff(path)


_QUOTE = re.compile(r"[`'\"]")


def safe_reason(exc: BaseException) -> str:
    """The first line of a reader's error, cut at its first quote: readers quote cell values
    (and column names) there, and a quoted value may run on over several lines."""
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    cut = _QUOTE.split(first_line, maxsplit=1)[0].rstrip(" :")
    return (cut or type(exc).__name__)[:200]


def _parsed_by_reader(dtype: pl.DataType | None) -> pl.DataType:
    # The CSV reader parses integers, floats, booleans and dates exactly (or fails); it would
    # cut decimals and sub-microsecond times to the contract's scale without a word, so those
    # are read as text and parsed exactly by the validation stage.
    if dtype is None or isinstance(dtype, pl.Decimal) or (dtype.is_temporal() and dtype != pl.Date):
        return pl.String()
    return dtype


def _read_csv(path: Path, dtypes: Mapping[str, pl.DataType], limits: DecodeLimits) -> pl.DataFrame:
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith(_UTF16_32_BOMS):
        raise UnreadableUpload("CSV text must be UTF-8 encoded (found a UTF-16/32 byte order mark)")
    header = pl.read_csv(path, n_rows=0, infer_schema=False, raise_if_empty=False).columns
    limits.check(columns=len(header))
    overrides = {c: _parsed_by_reader(dtypes.get(c)) for c in header}
    try:
        # Fast path: the reader parses straight into the contract's dtypes.
        batches = pl.scan_csv(path, schema_overrides=overrides, encoding="utf8").collect_batches()
        return collect_within(batches, limits)
    except pl.exceptions.ComputeError:
        # Some cell does not parse: read every column as text, so that validation can cast
        # it and report each bad cell as a contract failure instead of a reader error.
        batches = pl.scan_csv(
            path, infer_schema=False, encoding="utf8", raise_if_empty=False
        ).collect_batches()
        return collect_within(batches, limits)


def _read_parquet(path: Path, limits: DecodeLimits) -> pl.DataFrame:
    footprint = parquet_footprint(path)
    # Parquet spells a list in two schema levels; bound it before polars walks the schema.
    limits.check(depth=max(0, footprint.depth - 1) // 3, rows=footprint.rows)
    limits.check(size=footprint.decoded_bytes)
    check_schema(pl.Schema(pl.read_parquet_schema(path)), limits)
    return collect_within(pl.scan_parquet(path).collect_batches(), limits)


def _read_arrow(path: Path, limits: DecodeLimits) -> pl.DataFrame:
    footprint = arrow_footprint(path)
    limits.check(
        columns=footprint.columns,
        depth=max(0, footprint.depth - 1),
        rows=footprint.rows,
        size=footprint.decoded_bytes,
    )
    with path.open("rb") as fh:
        is_file = fh.read(6) == b"ARROW1"
    if is_file:
        return collect_within(pl.scan_ipc(path).collect_batches(), limits)
    return collect_within([pl.read_ipc_stream(path)], limits)


def _read_json_lines(path: Path, limits: DecodeLimits, *, array: bool) -> pl.DataFrame:
    # A record is one level, so its columns may nest ``limits.depth`` more (an array one more).
    scan_json_text(path, limits.depth + (2 if array else 1), to_lines=array)
    check_json_keys(path, limits)
    schema = pl.scan_ndjson(path, infer_schema_length=None).collect_schema()
    check_schema(schema, limits)
    return collect_within(pl.scan_ndjson(path, schema=schema).collect_batches(), limits)


def _read(
    path: Path, fmt: str, dtypes: Mapping[str, pl.DataType], limits: DecodeLimits
) -> pl.DataFrame:
    if fmt == "csv":
        return _read_csv(path, dtypes, limits)
    if fmt == "parquet":
        return _read_parquet(path, limits)
    if fmt == "arrow":
        return _read_arrow(path, limits)
    return _read_json_lines(path, limits, array=fmt == "json")


def read_frame(
    path: Path, fmt: str, dtypes: Mapping[str, pl.DataType], limits: DecodeLimits
) -> pl.DataFrame:
    """Read the payload as a table, within ``limits``; text formats are parsed with the
    contract's ``dtypes``.

    Raises:
        UploadTooLarge: the decoded table would pass a limit.
        UnreadableUpload: the bytes are not valid ``fmt`` or not a table of records.
        EmptyUpload: the table has no rows or no columns.
    """
    try:
        frame = _read(path, fmt, dtypes, limits)
    except UploadError:
        raise
    except (pl.exceptions.PolarsError, OSError, ValueError, TypeError) as exc:
        raise UnreadableUpload(f"could not read the upload as {fmt}: {safe_reason(exc)}") from exc
    except BaseException as exc:
        # pyo3 panics surface as PanicException (a BaseException); the upload is at fault.
        if type(exc).__name__ == "PanicException":
            raise UnreadableUpload(f"could not read the upload as {fmt}") from exc
        raise
    if frame.width == 0 or frame.height == 0:
        raise EmptyUpload(f"the {fmt} upload holds no rows")
    limits.check(columns=frame.width)
    return frame
