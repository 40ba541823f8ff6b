"""Staged uploads sealed at rest: they open only as written, under their own run's key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway import sealed
from gateway.sealed import SealBroken, run_key, seal, unseal
from privacy import RedactionKey

KEY = RedactionKey(b"sealing-test-secret-" + b"k" * 32)


@pytest.mark.parametrize("size", [0, 1, sealed.SEGMENT - 1, sealed.SEGMENT, 2 * sealed.SEGMENT + 5])
def test_what_is_sealed_opens_as_it_was(tmp_path: Path, size: int) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(size))
    seal(plain, tmp_path / "sealed", run_key(KEY, "run-1"))
    unseal(tmp_path / "sealed", tmp_path / "opened", run_key(KEY, "run-1"))
    assert (tmp_path / "opened").read_bytes() == plain.read_bytes()


@pytest.mark.parametrize(
    ("size", "piece"),
    [
        (0, 1),
        (1, 1),
        (sealed.SEGMENT, 4096),
        (sealed.SEGMENT + 1, 65_536),
        (3 * sealed.SEGMENT, 7),
        (5 * sealed.SEGMENT + 3, 5 * sealed.SEGMENT + 3),  # all at once
    ],
)
def test_sealing_a_stream_of_any_pieces_opens_as_it_was(
    tmp_path: Path, size: int, piece: int
) -> None:
    # A body sealed as it arrives, in pieces of any size, is a file unseal opens as sent.
    data = os.urandom(size)
    with (tmp_path / "sealed").open("wb") as out:
        writer = sealed.SealingWriter(out, run_key(KEY, "run-1"))
        for start in range(0, size, max(piece, 1)):
            writer.write(data[start : start + piece])
        assert writer.tell() == size
        writer.close()
    unseal(tmp_path / "sealed", tmp_path / "opened", run_key(KEY, "run-1"))
    assert (tmp_path / "opened").read_bytes() == data


def _sealed(tmp_path: Path) -> bytes:
    plain = tmp_path / "plain"
    plain.write_bytes(b"alice@example.com," * 200_000)  # three segments
    seal(plain, tmp_path / "sealed", run_key(KEY, "run-1"))
    data = (tmp_path / "sealed").read_bytes()
    assert b"alice@example.com" not in data
    return data


def _segments(data: bytes) -> tuple[bytes, list[bytes]]:
    head = len(sealed.MAGIC) + 7
    size = sealed.SEGMENT + 16
    return data[:head], [data[i : i + size] for i in range(head, len(data), size)]


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d[:100] + bytes([d[100] ^ 1]) + d[101:],  # a flipped bit
        lambda d: _segments(d)[0] + b"".join(_segments(d)[1][:-1]),  # the last segment cut off
        lambda d: _segments(d)[0] + b"".join(reversed(_segments(d)[1][:2])) + _segments(d)[1][2],
        lambda d: b"NOTSEAL\n" + d[8:],
    ],
    ids=["flipped bit", "truncated", "reordered", "not sealed"],
)
def test_a_changed_file_does_not_open(tmp_path: Path, change: object) -> None:
    data = _sealed(tmp_path)
    (tmp_path / "changed").write_bytes(change(data))  # type: ignore[operator]
    with pytest.raises(SealBroken):
        unseal(tmp_path / "changed", tmp_path / "opened", run_key(KEY, "run-1"))


def test_another_runs_key_does_not_open_it(tmp_path: Path) -> None:
    _sealed(tmp_path)
    with pytest.raises(SealBroken):
        unseal(tmp_path / "sealed", tmp_path / "opened", run_key(KEY, "run-2"))
