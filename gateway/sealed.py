"""Files sealed at rest: a raw upload waiting for a worker holds personal data, so it is stored
encrypted and authenticated (AES-256-GCM, in segments, so files of any size stream through in
bounded memory).

Each segment's nonce is a random per-file prefix, the segment's index and a flag for the last
segment, so segments cannot be reordered, repeated or dropped, and the file cannot be cut short,
without the opening failing. The key is derived from the PII key for one purpose and one run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privacy import RedactionKey

MAGIC = b"DGSEAL1\n"
SEGMENT = 1 << 20
_TAG = 16
_PREFIX = 7


class SealBroken(ValueError):
    """A sealed file was changed, cut short, or sealed under another key."""


def run_key(key: RedactionKey, run_id: str) -> bytes:
    """The 256-bit key that seals one run's staged upload."""
    return key.derive_raw(f"staged-upload:{run_id}")[:32]


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class SealingWriter:
    """``seal`` as a stream: bytes written in pieces of any size go out sealed, segment by
    segment, so a body being received is never on disk in the clear. One full segment is held
    back until more arrives, so the last one can be marked as last on ``close``."""

    def __init__(self, out: BinaryIO, key: bytes) -> None:
        self._out = out
        self._aead = AESGCM(key)
        self._prefix = os.urandom(_PREFIX)
        self._pending = bytearray()
        self._index = 0
        self._size = 0
        out.write(MAGIC + self._prefix)

    def write(self, data: bytes) -> int:
        """Take ``data``; every segment followed by more bytes is sealed and written."""
        self._pending += data
        self._size += len(data)
        done = 0
        while len(self._pending) - done > SEGMENT:  # one large write: every segment in it
            self._emit(bytes(self._pending[done : done + SEGMENT]), last=False)
            done += SEGMENT
        del self._pending[:done]
        return len(data)

    def tell(self) -> int:
        """Bytes taken so far (the plain size)."""
        return self._size

    def close(self) -> None:
        """Seal the last segment, then flush and fsync the file (it stays open)."""
        self._emit(bytes(self._pending), last=True)
        self._pending.clear()
        self._out.flush()
        os.fsync(self._out.fileno())

    def _emit(self, chunk: bytes, *, last: bool) -> None:
        self._out.write(self._aead.encrypt(_nonce(self._prefix, self._index, last), chunk, None))
        self._index += 1


def seal(source: Path, target: Path, key: bytes) -> None:
    """Write ``source`` sealed under ``key`` to ``target``."""
    with source.open("rb") as plain, target.open("wb") as out:
        writer = SealingWriter(out, key)
        while chunk := plain.read(SEGMENT):
            writer.write(chunk)
        writer.close()


def unseal(source: Path, target: Path, key: bytes) -> None:
    """Write the opened ``source`` to ``target``.

    Raises:
        SealBroken: the file is not one ``seal`` wrote under ``key``, or was changed.
    """
    with source.open("rb") as sealed, target.open("wb") as out:
        for plain in opened(sealed, key):
            out.write(plain)


def opened(sealed: BinaryIO, key: bytes) -> Iterator[bytes]:
    """The plain bytes of a sealed stream, segment by segment, each checked before it is
    given (the last one also proves nothing was cut off).

    Raises (while iterating):
        SealBroken: the stream is not one ``seal`` wrote under ``key``, or was changed.
    """
    aead = AESGCM(key)
    head = sealed.read(len(MAGIC) + _PREFIX)
    if len(head) != len(MAGIC) + _PREFIX or not head.startswith(MAGIC):
        raise SealBroken("not a sealed file")
    prefix = head[len(MAGIC) :]
    index = 0
    chunk = sealed.read(SEGMENT + _TAG)
    while True:
        following = sealed.read(SEGMENT + _TAG)
        last = not following
        try:
            yield aead.decrypt(_nonce(prefix, index, last), chunk, None)
        except InvalidTag:
            raise SealBroken(f"segment {index} does not open") from None
        if last:
            return
        chunk, index = following, index + 1
