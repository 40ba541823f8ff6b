"""Per-key limits on work that costs much CPU per request (a diff of two large versions): one
key cannot take every server thread, whatever it sends."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.errors import TooBusy


class PerKeyLimit:
    """At most ``limit`` calls at once per key in this process; the next is refused (429)."""

    def __init__(self, limit: int, what: str, retry_after: int = 5) -> None:
        self.limit = limit
        self.what = what
        self.retry_after = retry_after
        self._busy: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, key: str) -> Iterator[None]:
        """Hold one of ``key``'s slots while the block runs.

        Raises:
            TooBusy: ``key`` already holds every slot.
        """
        with self._lock:
            if self._busy[key] >= self.limit:
                raise TooBusy(
                    f"this key already has {self.limit} {self.what} running; ask again when one "
                    "has finished",
                    retry_after=self.retry_after,
                )
            self._busy[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy[key] -= 1
                if self._busy[key] <= 0:
                    del self._busy[key]
