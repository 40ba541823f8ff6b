"""A resource budget on decoded data: what an upload becomes once decompressed and decoded is
measured *before* and *while* it is decoded, never after the memory is spent.

- Compression layers are unwrapped here, each bounded by the byte budget (gzip in gzip, zstd in
  gzip …), so no reader is ever handed a compressed stream it would inflate on its own.
- Parquet: the footer (row counts, column chunk sizes and value counts, the schema tree) is read
  with a small Thrift reader before polars opens the file; an RLE or dictionary page that
  expands a few bytes into millions of values counts at its decoded width.
- Arrow IPC: every message header is read (record batch lengths, buffer sizes, and for
  compressed buffers the uncompressed length each one declares) before polars opens the file.
- JSON: nesting depth is measured on the text (polars overflows its stack on deep documents),
  and the column count on the inferred schema, before any record is decoded.
- While a reader streams batches, their rows and decoded bytes (text at its full length) are
  added up and the read stops at the first batch over a limit.

Every limit (bytes, rows, columns, nesting depth) is a setting; passing one is a 413.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import polars as pl
import zstandard

from gateway.errors import EmptyUpload, UnreadableUpload, UploadTooLarge
from gateway.uploads import UploadSpool

MAX_LAYERS = 3
_COPY_CHUNK = 1 << 20
_SCAN_CHUNK = 4 << 20
_MAX_FOOTER = 8 << 20
_MAX_MESSAGES = 100_000
_MAX_MESSAGE = 64 << 20
_VIEW_BYTES = 16  # polars keeps a 16-byte view per string or binary value
_MAGIC = {
    "gzip": (b"\x1f\x8b",),
    "zstd": (b"\x28\xb5\x2f\xfd",),
    # What polars' text readers would inflate by themselves (zlib), or could not read at all.
    "zlib": (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda"),
    "bzip2": (b"BZh",),
    "xz": (b"\xfd7zXZ\x00",),
}
UNWRAPPED = ("gzip", "zstd", "zlib")


@dataclass(frozen=True)
class DecodeLimits:
    """How large an upload may become once decoded."""

    bytes: int
    rows: int
    columns: int
    depth: int

    @classmethod
    def of(cls, settings: Any) -> DecodeLimits:
        """The limits ``settings`` set (``DATAGATE_MAX_DECODED_BYTES`` and the rest)."""
        return cls(
            bytes=settings.max_decoded_bytes,
            rows=settings.max_rows,
            columns=settings.max_columns,
            depth=settings.max_nesting_depth,
        )

    def too_large(self, what: str, found: int, limit: int) -> UploadTooLarge:
        """The 413 for passing one limit."""
        return UploadTooLarge(
            f"the upload's decoded {what} exceed the limit ({found:,} > {limit:,})",
            limit=limit,
            exceeded=what,
        )

    def check(self, rows: int = 0, columns: int = 0, depth: int = 0, size: int = 0) -> None:
        """Raise UploadTooLarge if any figure passes its limit.

        Raises:
            UploadTooLarge: names the limit passed.
        """
        for what, found, limit in (
            ("columns", columns, self.columns),
            ("nesting levels", depth, self.depth),
            ("rows", rows, self.rows),
            ("bytes", size, self.bytes),
        ):
            if found > limit:
                raise self.too_large(what, found, limit)


# -- compression layers ------------------------------------------------------------------


def compression_of(path: Path) -> str | None:
    """The compression whose magic bytes start the file, if any."""
    with path.open("rb") as fh:
        head = fh.read(6)
    for name, magics in _MAGIC.items():
        if head.startswith(magics):
            return name
    return None


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _ZlibReader:
    """A zlib stream as a file-like reader that inflates at most ``size`` bytes per read."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.inflater = zlib.decompressobj()

    def read(self, size: int = -1) -> bytes:
        out = self.inflater.decompress(self.inflater.unconsumed_tail, size)
        while not out and not self.inflater.eof:
            chunk = self.raw.read(_COPY_CHUNK)
            if not chunk:
                raise EOFError("truncated zlib stream")
            out = self.inflater.decompress(chunk, size)
        return out


def _copy_limited(source: _Readable, target: IO[bytes], limits: DecodeLimits) -> int:
    written = 0
    while chunk := source.read(_COPY_CHUNK):
        written += len(chunk)
        if written > limits.bytes:
            raise limits.too_large("bytes", written, limits.bytes)
        target.write(chunk)
    return written


def _inflate(path: Path, compression: str, spool: UploadSpool, limits: DecodeLimits) -> Path:
    target, out = spool.new_file()
    try:
        with out, path.open("rb") as raw:
            stream: Any
            if compression == "gzip":
                stream = gzip.GzipFile(fileobj=raw)
            elif compression == "zstd":
                stream = zstandard.ZstdDecompressor().stream_reader(raw)
            else:
                stream = _ZlibReader(raw)
            size = _copy_limited(stream, out, limits)
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        raise UnreadableUpload(f"the {compression} stream is corrupt or truncated") from exc
    if size == 0:
        raise EmptyUpload(f"the {compression} stream holds no data")
    return target


def unwrap(path: Path, spool: UploadSpool, limits: DecodeLimits) -> tuple[Path, list[str]]:
    """Unwrap every compression layer (up to ``MAX_LAYERS``), each bounded by the byte limit.

    Returns the payload and the layers found, outermost first.

    Raises:
        UploadTooLarge: a layer expands past the limit, or layers nest too deep.
        UnreadableUpload: a corrupt stream, or a compression Datagate does not read.
        EmptyUpload: a stream that decompresses to nothing.
    """
    layers: list[str] = []
    while (compression := compression_of(path)) is not None:
        if compression not in UNWRAPPED:
            raise UnreadableUpload(f"{compression} compression is not supported (gzip or zstd)")
        if len(layers) == MAX_LAYERS:
            raise limits.too_large("compression layers", len(layers) + 1, MAX_LAYERS)
        path = _inflate(path, compression, spool, limits)
        layers.append(compression)
    return path, layers


# -- JSON text ---------------------------------------------------------------------------


def _chunks(path: Path) -> Iterator[tuple[int, np.ndarray[Any, np.dtype[np.uint8]]]]:
    data = np.memmap(path, dtype=np.uint8, mode="r")
    for start in range(0, len(data), _SCAN_CHUNK):
        yield start, np.asarray(data[start : start + _SCAN_CHUNK])


def _first_byte(path: Path) -> int | None:
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[0] if head else None


def scan_json_text(path: Path, max_depth: int, to_lines: bool = False) -> None:
    """Measure the nesting depth of JSON text; with ``to_lines``, rewrite it in place as JSON
    Lines (a top-level array becomes one element per line, a single object one line), so it
    is read in bounded batches like any JSON Lines upload.

    Strings are recognised, escapes included, so brackets and commas inside them do not count.

    Raises:
        UploadTooLarge: nested deeper than ``max_depth``.
    """
    depth = 0
    in_string = False
    backslashes = 0  # run of backslashes ending the previous chunk
    writable = np.memmap(path, dtype=np.uint8, mode="r+") if to_lines else None
    is_array = to_lines and _first_byte(path) == 0x5B
    for start, chunk in _chunks(path):
        n = len(chunk)
        index = np.arange(n)
        last_other = np.maximum.accumulate(np.where(chunk == 0x5C, -1, index))
        # A quote is a string boundary unless an odd run of backslashes precedes it.
        quotes = np.flatnonzero(chunk == 0x22)
        before = np.maximum(quotes - 1, 0)
        run = np.where(quotes > 0, quotes - 1 - last_other[before], 0)
        run = run + np.where((quotes == 0) | (last_other[before] == -1), backslashes, 0)
        toggles = np.zeros(n, dtype=np.int8)
        toggles[quotes[run % 2 == 0]] = 1
        inside = ((np.cumsum(toggles, dtype=np.int64) + int(in_string)) % 2).astype(bool)
        outside = ~inside & (toggles == 0)
        delta = np.zeros(n, dtype=np.int64)
        delta[outside & ((chunk == 0x7B) | (chunk == 0x5B))] = 1
        delta[outside & ((chunk == 0x7D) | (chunk == 0x5D))] = -1
        levels = depth + np.cumsum(delta)
        if n and int(levels.max()) > max_depth:
            raise UploadTooLarge(
                f"the upload's JSON nests deeper than the limit of {max_depth} levels",
                limit=max_depth,
                exceeded="nesting levels",
            )
        if writable is not None:
            view = writable[start : start + n]
            # Raw line breaks are only ever whitespace between tokens in valid JSON.
            view[(chunk == 0x0A) | (chunk == 0x0D)] = 0x20
            if is_array:
                view[outside & (levels == 1) & (chunk == 0x2C)] = 0x0A
                view[outside & (delta == 1) & (levels == 1) & (chunk == 0x5B)] = 0x20
                view[outside & (delta == -1) & (levels == 0) & (chunk == 0x5D)] = 0x20
        if n:
            depth = int(levels[-1])
            in_string = bool(inside[-1])
            tail = int(last_other[-1])
            backslashes = n + backslashes if tail == -1 else n - 1 - tail
    if writable is not None:
        writable.flush()


# A JSON object key: a string followed by a colon. On a line of valid JSON a match can only
# start at a real key (a string that ends before a colon is a key; one that ends elsewhere
# fails), so every key is found and nothing else is.
_JSON_KEY = r'"(?:[^"\\]|\\.)*"\s*:'


def check_json_keys(path: Path, limits: DecodeLimits) -> None:
    """At most ``limits.columns`` distinct key names in the JSON Lines file, at any level.

    Inferring a schema costs polars time quadratic in the number of distinct keys (a 4 MB file
    of 200,000 one-key records takes minutes), so they are counted first, in bounded batches:
    every key becomes a column or a struct field, so this bounds both.

    Raises:
        UploadTooLarge: more distinct keys than the column limit.
    """
    # A line of valid JSON holds no raw control character, so 0x1F never splits one (if it
    # does, the reader raises and the upload is unreadable, as it is).
    lines = pl.scan_csv(
        path,
        has_header=False,
        separator="\x1f",
        quote_char=None,
        schema={"line": pl.String},
        raise_if_empty=False,
    )
    keys = lines.select(pl.col("line").str.extract_all(_JSON_KEY).explode().unique())
    seen: set[str] = set()
    for batch in keys.collect_batches():
        seen.update(batch["line"].drop_nulls().to_list())
        if len(seen) > limits.columns:
            raise limits.too_large("columns", len(seen), limits.columns)


# -- Parquet footer ----------------------------------------------------------------------

_PHYSICAL_WIDTH = {0: 1, 1: 4, 2: 8, 3: 12, 4: 4, 5: 8, 6: _VIEW_BYTES, 7: _VIEW_BYTES}
_BYTE_ARRAY = 6
_MAX_THRIFT_NESTING = 32


@dataclass(frozen=True)
class Footprint:
    """What a file will decode into, read from its metadata."""

    rows: int
    columns: int
    depth: int
    decoded_bytes: int


class _Thrift:
    """A reader of Thrift's compact protocol: enough to read a Parquet footer."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _byte(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("metadata ends early")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            byte = self._byte()
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise ValueError("varint too long")

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def _size(self, size: int) -> int:
        if size < 0 or size > len(self.data) - self.pos + 1:
            raise ValueError("a size beyond the metadata")
        return size

    def value(self, kind: int, nesting: int) -> Any:
        if kind in (1, 2):  # booleans inside a struct carry their value in the type
            return kind == 1
        if kind == 3:
            return self._byte()
        if kind in (4, 5, 6):
            return self.zigzag()
        if kind == 7:
            self.pos += 8
            return None
        if kind == 8:
            size = self._size(self.varint())
            raw = self.data[self.pos : self.pos + size]
            self.pos += size
            return raw
        if kind in (9, 10):
            header = self._byte()
            size = header >> 4
            if size == 15:
                size = self.varint()
            self._size(size)
            element = header & 0x0F
            if element in (1, 2):
                return [self._byte() == 1 for _ in range(size)]
            return [self.value(element, nesting + 1) for _ in range(size)]
        if kind == 11:
            size = self._size(self.varint())
            if not size:
                return {}
            types = self._byte()
            return {
                self.value(types >> 4, nesting + 1): self.value(types & 0x0F, nesting + 1)
                for _ in range(size)
            }
        if kind == 12:
            return self.struct(nesting + 1)
        raise ValueError(f"unknown Thrift type {kind}")

    def struct(self, nesting: int = 0) -> dict[int, Any]:
        if nesting > _MAX_THRIFT_NESTING:
            raise ValueError("metadata nested too deep")
        fields: dict[int, Any] = {}
        last = 0
        while (header := self._byte()) != 0:
            delta, kind = header >> 4, header & 0x0F
            field_id = last + delta if delta else self.zigzag()
            fields[field_id] = self.value(kind, nesting)
            last = field_id
        return fields


def parquet_footprint(path: Path) -> Footprint:
    """Rows, leaf columns, nesting depth and decoded bytes of a Parquet file, from its footer.

    Raises:
        UnreadableUpload: not a Parquet file, or a footer that does not parse.
        UploadTooLarge: a footer larger than Datagate reads.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        if size < 12 or fh.read(4) != b"PAR1":
            raise UnreadableUpload("not a Parquet file")
        fh.seek(size - 8)
        length_and_magic = fh.read(8)
        (length,) = struct.unpack("<I", length_and_magic[:4])
        if length_and_magic[4:] != b"PAR1" or length > size - 12:
            raise UnreadableUpload("the Parquet footer is missing or damaged")
        if length > _MAX_FOOTER:
            raise UploadTooLarge(
                f"the Parquet metadata is larger than {_MAX_FOOTER} bytes", limit=_MAX_FOOTER
            )
        fh.seek(size - 8 - length)
        footer = fh.read(length)
    try:
        meta = _Thrift(footer).struct()
        schema = meta.get(2) or []
        rows = int(meta.get(3) or 0)
        depth, leaves = _schema_shape([int(element.get(5) or 0) for element in schema])
        decoded = 0
        for group in meta.get(4) or []:
            for chunk in group.get(1) or []:
                column = chunk.get(3) or {}
                kind = int(column.get(1, 6))
                values = int(column.get(5) or 0)
                width = _PHYSICAL_WIDTH.get(kind, _VIEW_BYTES)
                plain = int(column.get(6) or 0)
                decoded += max(plain, values * width)
                if kind == _BYTE_ARRAY:
                    decoded += values * _VIEW_BYTES
    except (ValueError, TypeError, AttributeError) as exc:
        raise UnreadableUpload("the Parquet footer does not parse") from exc
    return Footprint(rows=rows, columns=leaves, depth=depth, decoded_bytes=decoded)


def _schema_shape(children: list[int]) -> tuple[int, int]:
    """(depth, leaves) of a schema given in depth-first order as child counts (root first)."""
    if not children:
        return 0, 0
    deepest = leaves = 0
    open_groups: list[int] = [children[0]]
    for count in children[1:]:
        while open_groups and open_groups[-1] == 0:
            open_groups.pop()
        if not open_groups:
            raise ValueError("schema has more elements than its groups hold")
        open_groups[-1] -= 1
        deepest = max(deepest, len(open_groups))
        if count > 0:
            open_groups.append(count)
        else:
            leaves += 1
    return deepest, leaves


# -- Arrow IPC messages ------------------------------------------------------------------


class _Flat:
    """Just enough of the FlatBuffers format to read Arrow IPC message headers."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _u32(self, pos: int) -> int:
        return int(struct.unpack_from("<I", self.data, pos)[0])

    def root(self) -> int:
        return self._u32(0)

    def field(self, table: int, index: int) -> int | None:
        vtable = table - int(struct.unpack_from("<i", self.data, table)[0])
        vtable_size = int(struct.unpack_from("<H", self.data, vtable)[0])
        slot = 4 + 2 * index
        if slot + 2 > vtable_size:
            return None
        offset = int(struct.unpack_from("<H", self.data, vtable + slot)[0])
        return table + offset if offset else None

    def scalar(self, table: int, index: int, fmt: str, default: int = 0) -> int:
        pos = self.field(table, index)
        return default if pos is None else int(struct.unpack_from(fmt, self.data, pos)[0])

    def ref(self, table: int, index: int) -> int | None:
        pos = self.field(table, index)
        return None if pos is None else pos + self._u32(pos)

    def vector(self, table: int, index: int) -> tuple[int, int]:
        """(position of the first element, length) of a vector field; (0, 0) if absent."""
        pos = self.ref(table, index)
        if pos is None:
            return 0, 0
        return pos + 4, self._u32(pos)


_SCHEMA, _DICTIONARY_BATCH, _RECORD_BATCH = 1, 2, 3
_ARROW_MAGIC = b"ARROW1"


def _message_at(fh: IO[bytes], pos: int, size: int) -> tuple[_Flat, int, int] | None:
    """The encapsulated message at ``pos``: its header, where its body starts, and its length
    (None at the end-of-stream marker)."""
    fh.seek(pos)
    (marker,) = struct.unpack("<I", fh.read(4))
    if marker == 0xFFFFFFFF:
        (length,) = struct.unpack("<i", fh.read(4))
        pos += 8
    else:  # the pre-1.0 format had no continuation marker
        length, pos = int(marker), pos + 4
    if length <= 0:
        return None
    if length > _MAX_MESSAGE or pos + length > size:
        raise ValueError("message header out of bounds")
    flat = _Flat(fh.read(length))
    body_length = flat.scalar(flat.root(), 3, "<q")
    body = pos + length
    if body_length < 0 or body + body_length > size:
        raise ValueError("message body out of bounds")
    return flat, body, body_length


def _file_messages(fh: IO[bytes], size: int) -> tuple[_Flat, list[int]]:
    """The footer of an Arrow IPC file, and where each dictionary and record batch starts."""
    fh.seek(size - 10)
    (length,) = struct.unpack("<i", fh.read(4))
    if fh.read(6) != _ARROW_MAGIC or length <= 0 or length > min(size - 18, _MAX_MESSAGE):
        raise ValueError("no Arrow file footer")
    fh.seek(size - 10 - length)
    footer = _Flat(fh.read(length))
    table = footer.root()
    starts = []
    for index in (2, 3):
        start, count = footer.vector(table, index)
        starts += [
            int(struct.unpack_from("<q", footer.data, start + 24 * i)[0]) for i in range(count)
        ]
    return footer, starts


def _stream_messages(fh: IO[bytes], size: int) -> Iterator[tuple[_Flat, int, int]]:
    pos = 0
    while pos + 8 <= size and (found := _message_at(fh, pos, size)) is not None:
        yield found
        pos = found[1] + found[2]


def arrow_footprint(path: Path) -> Footprint:
    """Rows, columns, nesting depth and decoded bytes of an Arrow IPC file or stream, from its
    message headers (compressed buffers count at the length they declare uncompressed).

    Raises:
        UnreadableUpload: a message header that does not parse.
        UploadTooLarge: more messages than Datagate reads (``_MAX_MESSAGES``).
    """
    size = path.stat().st_size
    rows = columns = depth = decoded = 0
    with path.open("rb") as fh:
        is_file = fh.read(6) == _ARROW_MAGIC
        try:
            messages: Iterable[tuple[_Flat, int, int] | None]
            if is_file:
                footer, starts = _file_messages(fh, size)
                schema = footer.ref(footer.root(), 1)
                if schema is not None:
                    columns, depth = _arrow_schema_shape(footer, schema)
                messages = (_message_at(fh, start, size) for start in starts)
            else:
                messages = _stream_messages(fh, size)
            # Read one at a time and counted: millions of tiny messages must not pile up.
            for count, found in enumerate(messages, start=1):
                if count > _MAX_MESSAGES:
                    raise UploadTooLarge(
                        f"the Arrow upload holds more than {_MAX_MESSAGES:,} messages",
                        limit=_MAX_MESSAGES,
                        exceeded="messages",
                    )
                if found is None:
                    continue
                flat, body, _ = found
                message = flat.root()
                kind = flat.scalar(message, 1, "<B")
                header = flat.ref(message, 2)
                if header is None:
                    continue
                if kind == _SCHEMA:
                    columns, depth = _arrow_schema_shape(flat, header)
                elif kind in (_RECORD_BATCH, _DICTIONARY_BATCH):
                    batch = flat.ref(header, 1) if kind == _DICTIONARY_BATCH else header
                    if batch is not None:
                        length_rows, size_bytes = _arrow_batch(flat, batch, fh, body)
                        decoded += size_bytes
                        if kind == _RECORD_BATCH:
                            rows += length_rows
        except (ValueError, struct.error) as exc:
            raise UnreadableUpload("an Arrow IPC message header does not parse") from exc
    return Footprint(rows=rows, columns=columns, depth=depth, decoded_bytes=decoded)


def _arrow_batch(flat: _Flat, batch: int, fh: IO[bytes], body: int) -> tuple[int, int]:
    length = flat.scalar(batch, 0, "<q")
    start, count = flat.vector(batch, 2)
    compressed = flat.ref(batch, 3) is not None
    total = 0
    for i in range(count):
        offset, size = struct.unpack_from("<qq", flat.data, start + 16 * i)
        if offset < 0 or size < 0:
            raise ValueError("negative buffer")
        if compressed and size >= 8:
            fh.seek(body + offset)
            (declared,) = struct.unpack("<q", fh.read(8))
            total += size - 8 if declared == -1 else max(declared, 0)
        else:
            total += size
    return int(length), int(total)


def _arrow_schema_shape(flat: _Flat, schema: int) -> tuple[int, int]:
    start, count = flat.vector(schema, 1)
    deepest = 0
    stack = [(start + 4 * i + flat._u32(start + 4 * i), 1) for i in range(count)]
    seen = 0
    while stack:
        field, level = stack.pop()
        seen += 1
        if seen > 1_000_000:
            raise ValueError("schema too large")
        deepest = max(deepest, level)
        child_start, child_count = flat.vector(field, 5)
        stack.extend(
            (child_start + 4 * i + flat._u32(child_start + 4 * i), level + 1)
            for i in range(child_count)
        )
    return count, deepest


# -- frames and batches ------------------------------------------------------------------


def dtype_depth(dtype: pl.DataType) -> int:
    """Nesting levels of a polars dtype: 0 for a flat column, +1 per list, array or struct."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(dtype, 0)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(current, pl.Struct):
            stack.extend((f.dtype, level + 1) for f in current.fields)
        elif isinstance(current, pl.List | pl.Array):
            stack.append((current.inner, level + 1))
    return deepest


def check_schema(schema: pl.Schema, limits: DecodeLimits) -> None:
    """Columns and nesting depth of a schema within the limits.

    Raises:
        UploadTooLarge: names the limit passed.
    """
    limits.check(
        columns=len(schema), depth=max((dtype_depth(t) for t in schema.values()), default=0)
    )


def decoded_size(frame: pl.DataFrame) -> int:
    """Bytes the frame takes decoded, text counted at its full length (a dictionary-encoded
    value shared by a million rows counts a million times: that is what an export writes)."""
    total = 0
    for series in frame.get_columns():
        if series.dtype == pl.String:
            total += int(series.str.len_bytes().sum() or 0) + _VIEW_BYTES * series.len()
        elif series.dtype == pl.Binary:
            total += int(series.bin.size().sum() or 0) + _VIEW_BYTES * series.len()
        else:
            total += int(series.estimated_size())
    return total
