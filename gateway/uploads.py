"""Receive an upload body into a temporary file, enforcing the size limit while streaming.

The body may be raw (any format) or ``multipart/form-data`` with the file in field ``file``.
Temporary files live in one ``UploadSpool`` whose ``close`` removes them on every path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.errors import EmptyUpload, InvalidRequest, UnreadableUpload, UploadTooLarge
from gateway.sealed import SealingWriter

MULTIPART_FIELD = "file"


@dataclass
class UploadSpool:
    """Owns the temporary files of one upload and deletes them all on ``close``."""

    folder: Path
    paths: list[Path] = field(default_factory=list)

    def new_file(self, suffix: str = "") -> tuple[Path, Any]:
        """A fresh temporary file (path and open binary handle) that ``close`` will remove."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=self.folder)
        path = Path(name)
        self.paths.append(path)
        return path, os.fdopen(fd, "wb")

    def close(self) -> None:
        """Remove every file this spool created."""
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.paths.clear()


@dataclass(frozen=True)
class ReceivedUpload:
    """The uploaded file on disk, as sent (possibly compressed), with what the client said of it."""

    path: Path
    size: int
    filename: str | None
    content_type: str | None
    # The file is sealed (``gateway.sealed``) under the key it was received with: a body taken
    # for asynchronous ingest is never on disk in the clear.
    sealed: bool = False


def _too_large(limit: int) -> UploadTooLarge:
    return UploadTooLarge(f"upload exceeds the limit of {limit} bytes", limit=limit)


def _media_type(header: str | bytes | None) -> str | None:
    if not header:
        return None
    media, _ = parse_options_header(header)
    return media.decode("latin-1").lower() or None


class _MultipartFileSink:
    """python-multipart callbacks that copy the ``file`` field into an open file."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.found = False
        self.filename: str | None = None
        self.content_type: str | None = None
        self._in_file = False
        self._headers: dict[str, bytes] = {}
        self._field = b""
        self._value = b""

    def on_part_begin(self) -> None:
        self._headers = {}
        self._in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        # Kept as bytes: part headers may carry any bytes, and parse_options_header would fail
        # to re-encode non-Latin-1 text.
        self._headers[self._field.decode("latin-1").lower()] = self._value
        self._field = self._value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == MULTIPART_FIELD and not self.found:
            self.found = self._in_file = True
            raw_filename = options.get(b"filename")
            self.filename = raw_filename.decode("utf-8", "replace") if raw_filename else None
            self.content_type = _media_type(self._headers.get("content-type"))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.out.write(data[start:end])

    def on_part_end(self) -> None:
        self._in_file = False

    def callbacks(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in dir(self) if name.startswith("on_")}


async def receive_upload(
    chunks: AsyncIterator[bytes],
    headers: dict[str, str],
    spool: UploadSpool,
    limit: int,
    *,
    seal_key: bytes | None = None,
) -> ReceivedUpload:
    """Stream the request body to disk, unwrapping multipart, and stop at ``limit`` bytes;
    with ``seal_key``, sealed as it arrives.

    Raises:
        UploadTooLarge: the body is longer than ``limit``.
        EmptyUpload: the body (or its ``file`` field) is empty.
        InvalidRequest: a multipart body without a ``file`` field or without a boundary.
    """
    declared_length = headers.get("content-length")
    if declared_length and declared_length.isdigit() and int(declared_length) > limit:
        raise _too_large(limit)
    content_type_header = headers.get("content-type")
    media_type = _media_type(content_type_header)
    path, handle = spool.new_file()
    out = handle if seal_key is None else SealingWriter(handle, seal_key)
    received = 0
    with handle:
        if media_type == "multipart/form-data":
            _, options = parse_options_header(content_type_header)
            boundary = options.get(b"boundary")
            if not boundary:
                raise InvalidRequest("multipart body without a boundary")
            sink = _MultipartFileSink(out)
            parser = MultipartParser(boundary, sink.callbacks())  # type: ignore[arg-type]
            async for chunk in chunks:
                received += len(chunk)
                if received > limit:
                    raise _too_large(limit)
                try:
                    parser.write(chunk)
                except MultipartParseError as exc:
                    raise UnreadableUpload("malformed multipart body") from exc
            try:
                parser.finalize()
            except MultipartParseError as exc:
                raise UnreadableUpload("malformed multipart body") from exc
            if not sink.found:
                raise InvalidRequest(f"multipart body has no field named {MULTIPART_FIELD!r}")
            filename, content_type = sink.filename, sink.content_type
        else:
            async for chunk in chunks:
                received += len(chunk)
                if received > limit:
                    raise _too_large(limit)
                out.write(chunk)
            filename, content_type = None, media_type
        size = out.tell()
        if isinstance(out, SealingWriter):
            out.close()
    if size == 0:
        raise EmptyUpload("the upload is empty")
    return ReceivedUpload(
        path=path,
        size=size,
        filename=filename,
        content_type=content_type,
        sealed=seal_key is not None,
    )
