"""Decide an upload's format and read it into a polars frame, within a decoding budget.

Formats: CSV, Parquet, NDJSON (JSON Lines), JSON array of records, Arrow IPC; each optionally
gzip or zstd compressed (unwrapped first by ``gateway.decoding``). The format comes from
``?format=``, then the Content-Type, then the file name, then the content itself. Every reader
is measured before it starts and streams in batches whose rows and bytes are added up
(``gateway.decoding``), so no upload decodes past its limits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import polars as pl

from gateway.decoding import (
    DecodeLimits,
    arrow_footprint,
    check_json_keys,
    check_schema,
    decoded_size,
    parquet_footprint,
    scan_json_text,
)
from gateway.errors import EmptyUpload, UnreadableUpload, UnsupportedFormat, UploadError

# Rows per part of an upload read in parts (``DATAGATE_INGEST_CHUNK_ROWS``).
DEFAULT_CHUNK_ROWS = 250_000
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


# Bytes of the payload looked at at once while finding where its parts end.
_SPLIT_BLOCK = 8 << 20


def part_texts(
    path: Path, rows: int, start: int = 0, *, quoted: bool, prefix: bytes = b""
) -> Iterator[bytes]:
    """The text of each run of ``rows`` lines from ``start`` to the end of the file (the last
    run fewer), after ``prefix``. With ``quoted`` a line ends only at a newline outside double
    quotes (RFC 4180: a quoted field may hold newlines; ``""`` inside it counts twice, so the
    parity holds). One pass over the file, a block at a time, never the whole file: each part
    is copied once, from the blocks it spans."""
    pieces: list[bytes | memoryview] = []
    seen, in_quote = 0, False
    with path.open("rb") as fh:
        fh.seek(start)
        while block := fh.read(_SPLIT_BLOCK):
            if not in_quote and (not quoted or b'"' not in block):
                count = block.count(b"\n")  # C speed: most blocks hold no part's end
                if seen + count < rows:
                    seen += count
                    pieces.append(block)
                    continue
            view = np.frombuffer(block, dtype=np.uint8)
            newlines = np.flatnonzero(view == 0x0A)
            if quoted:
                quotes = np.flatnonzero(view == 0x22)
                if len(quotes):
                    # Quotes before each newline, plus an open quote from earlier blocks.
                    before = np.searchsorted(quotes, newlines) + int(in_quote)
                    newlines = newlines[before % 2 == 0]
                    in_quote = (len(quotes) + int(in_quote)) % 2 == 1
                elif in_quote:
                    newlines = newlines[:0]
            first = rows - seen - 1
            taken = 0
            rest = memoryview(block)
            for cut in newlines[first::rows] if first < len(newlines) else ():
                end = int(cut) + 1
                pieces.append(rest[taken:end])
                yield b"".join([prefix, *pieces])
                pieces, taken = [], end
            if taken < len(block):
                pieces.append(rest[taken:])
            seen = (seen + len(newlines)) % rows
        if any(len(piece) for piece in pieces):
            yield b"".join([prefix, *pieces])


def _csv_chunks(
    path: Path, dtypes: Mapping[str, pl.DataType], limits: DecodeLimits, rows: int
) -> Iterator[pl.DataFrame]:
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith(_UTF16_32_BOMS):
        raise UnreadableUpload("CSV text must be UTF-8 encoded (found a UTF-16/32 byte order mark)")
    header = pl.read_csv(path, n_rows=0, infer_schema=False, raise_if_empty=False).columns
    limits.check(columns=len(header))
    overrides = {c: _parsed_by_reader(dtypes.get(c)) for c in header}
    header_bytes = next(part_texts(path, 1, quoted=True), b"")
    # Each part is the header and its own lines, read when it is wanted: memory holds one.
    for text in part_texts(path, rows, len(header_bytes), quoted=True, prefix=header_bytes):
        try:
            # Fast path: the reader parses straight into the contract's dtypes.
            yield pl.read_csv(text, schema_overrides=overrides, encoding="utf8")
        except pl.exceptions.ComputeError:
            # Some cell does not parse: this part is read as text, so that validation can
            # cast it and report each bad cell as a contract failure instead of a reader error.
            yield pl.read_csv(text, infer_schema=False, encoding="utf8", raise_if_empty=False)


def _parquet_chunks(path: Path, limits: DecodeLimits, rows: int) -> Iterator[pl.DataFrame]:
    footprint = parquet_footprint(path)
    # Parquet spells a list in two schema levels; bound it before polars walks the schema.
    limits.check(depth=max(0, footprint.depth - 1) // 3, rows=footprint.rows)
    limits.check(size=footprint.decoded_bytes)
    check_schema(pl.Schema(pl.read_parquet_schema(path)), limits)
    scan = pl.scan_parquet(path)
    for start in range(0, footprint.rows, rows):
        yield scan.slice(start, rows).collect()  # only the row groups it needs are read


def _arrow_chunks(path: Path, limits: DecodeLimits, rows: int) -> Iterator[pl.DataFrame]:
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
        scan = pl.scan_ipc(path)
        for start in range(0, footprint.rows, rows):
            yield scan.slice(start, rows).collect()
        return
    # An IPC stream has no footer to seek by: polars reads it whole (its size is bounded by
    # the footprint checked above), and it is handed on in parts.
    frame = pl.read_ipc_stream(path)
    for start in range(0, frame.height, rows):
        yield frame.slice(start, rows)


def _json_chunks(
    path: Path, limits: DecodeLimits, rows: int, *, array: bool
) -> Iterator[pl.DataFrame]:
    # A record is one level, so its columns may nest ``limits.depth`` more (an array one more).
    scan_json_text(path, limits.depth + (2 if array else 1), to_lines=array)
    check_json_keys(path, limits)
    # The schema comes from every record, as for a whole-file read, so every part has it.
    schema = pl.scan_ndjson(path, infer_schema_length=None).collect_schema()
    check_schema(schema, limits)
    # A line of JSON holds no raw newline: parts end at newlines.
    for text in part_texts(path, rows, quoted=False):
        part = pl.read_ndjson(text, schema=schema)
        if part.height:
            yield part


def _chunks(
    path: Path, fmt: str, dtypes: Mapping[str, pl.DataType], limits: DecodeLimits, rows: int
) -> Iterator[pl.DataFrame]:
    if fmt == "csv":
        return _csv_chunks(path, dtypes, limits, rows)
    if fmt == "parquet":
        return _parquet_chunks(path, limits, rows)
    if fmt == "arrow":
        return _arrow_chunks(path, limits, rows)
    return _json_chunks(path, limits, rows, array=fmt == "json")


def read_chunks(
    path: Path,
    fmt: str,
    dtypes: Mapping[str, pl.DataType],
    limits: DecodeLimits,
    rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pl.DataFrame]:
    """Read the payload as a table in parts of ``rows`` rows (the last one shorter), within
    ``limits`` counted over the whole upload; text formats are parsed with the contract's
    ``dtypes``. Every part has the same columns.

    Raises (while iterating):
        UploadTooLarge: the decoded table would pass a limit.
        UnreadableUpload: the bytes are not valid ``fmt`` or not a table of records.
        EmptyUpload: the table has no rows or no columns.
    """
    total_rows = size = 0
    columns: list[str] | None = None
    try:
        for batch in _chunks(path, fmt, dtypes, limits, rows):
            if batch.height == 0:
                continue
            total_rows += batch.height
            size += decoded_size(batch)
            limits.check(rows=total_rows, size=size, columns=batch.width)
            if columns is None:
                if batch.width == 0:
                    break
                columns = batch.columns
            yield batch
    except UploadError:
        raise
    except (pl.exceptions.PolarsError, OSError, ValueError, TypeError) as exc:
        raise UnreadableUpload(f"could not read the upload as {fmt}: {safe_reason(exc)}") from exc
    except BaseException as exc:
        # pyo3 panics surface as PanicException (a BaseException); the upload is at fault.
        if type(exc).__name__ == "PanicException":
            raise UnreadableUpload(f"could not read the upload as {fmt}") from exc
        raise
    if columns is None:
        raise EmptyUpload(f"the {fmt} upload holds no rows")


def read_frame(
    path: Path, fmt: str, dtypes: Mapping[str, pl.DataType], limits: DecodeLimits
) -> pl.DataFrame:
    """Read the payload as one table, within ``limits`` (see ``read_chunks``)."""
    # A CSV whose later rows did not parse has its first parts typed, the rest as text.
    parts = list(read_chunks(path, fmt, dtypes, limits))
    return pl.concat(parts, how="vertical_relaxed", rechunk=False)
