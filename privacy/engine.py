"""The PII engine the gateway talks to: detection runs in worker processes that hold the models.

Presidio and spaCy (with its model) weigh about 300 MB per process. Keeping them in a small pool
of spawned workers keeps the ingest process lean, lets a large column be analysed by several
workers at once, and loads the model once per worker, not per request. ``workers=0`` runs the
detector in this process instead (tests, scripts).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import polars as pl

from privacy.detection import DetectionConfig, Span, may_hold_pii

if TYPE_CHECKING:
    from privacy.detector import Detector

CHUNK = 1_000
PARENT_CHECK_SECONDS = 0.5
WORKER_START_SECONDS = 300
WARM_UP_TEXT = (
    "Jane Doe (jane.doe@example.com, +1 212 555 0199) paid with 4111 1111 1111 1111, "
    "SSN 536-22-8726, IBAN DE89370400440532013000, from 192.168.0.1"
)

_worker_detector: Detector | None = None


def _exit_with_parent() -> None:
    """End this worker as soon as the process that started it is gone (SIGKILL, OOM): an
    orphaned worker would hold its ~300 MB model for nothing. Polling the parent pid is used
    rather than PR_SET_PDEATHSIG, which fires when the *thread* that spawned the worker ends."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(spacy_model: str | None) -> None:
    global _worker_detector
    _exit_with_parent()
    from privacy.detector import Detector

    _worker_detector = Detector(spacy_model)
    # Recognizers load their data on first use (phone metadata, the public-suffix list, the
    # NER pipeline): do it now, not inside the first upload.
    _worker_detector.detect([WARM_UP_TEXT], DetectionConfig())


def _worker_status() -> dict[str, Any]:
    assert _worker_detector is not None
    return _worker_detector.status


def _worker_pid() -> int:
    # Busy for a moment, so that the next call goes to another worker once that one is ready.
    time.sleep(0.05)
    return os.getpid()


def _worker_detect(texts: list[str], config: DetectionConfig) -> list[list[Span]]:
    assert _worker_detector is not None
    return _worker_detector.detect(texts, config)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a container's cpuset, taskset),
    not every CPU of the machine."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class PiiEngine:
    """Finds PII spans in texts; the models live in ``workers`` processes (0: in this one)."""

    def __init__(self, spacy_model: str | None, workers: int | None = None) -> None:
        self.model_name = spacy_model
        self.workers = usable_cpus() if workers is None else workers
        self._local: Detector | None = None
        self._pool: ProcessPoolExecutor | None = None
        if self.workers == 0:
            from privacy.detector import Detector

            self._local = Detector(spacy_model)
            self._status = self._local.status
        else:
            # The pool starts workers on demand; start them all now and wait until each has
            # answered (its model loaded and warmed), so the first upload finds them ready.
            executor = self._executor()
            self._status = executor.submit(_worker_status).result()
            answered: set[int] = set()
            deadline = time.monotonic() + WORKER_START_SECONDS
            while len(answered) < self.workers and time.monotonic() < deadline:
                calls = [executor.submit(_worker_pid) for _ in range(self.workers)]
                answered |= {call.result() for call in calls}

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the parent runs polars and server threads that must not be
            # copied mid-lock.
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.model_name,),
            )
        return self._pool

    @property
    def has_model(self) -> bool:
        """True when the NER model is loaded (PERSON and other NER entities are found)."""
        return bool(self._status["mode"] != "patterns-only")

    @property
    def status(self) -> dict[str, Any]:
        """Mode, model and (pattern-only) the reason, for start-up logs and ``/readyz``."""
        return dict(self._status)

    @property
    def model_label(self) -> str:
        """The model as recorded in PII reports."""
        return str(self._status["model"] or "patterns-only")

    def detect(self, texts: pl.Series, config: DetectionConfig) -> list[list[Span]]:
        """Spans of the configured entities in each text (nulls count as empty texts).

        Only texts that could hold an entity (``may_hold_pii``) reach a detector: a column of
        ids or codes costs a few regular expressions here, not a trip to the workers.
        """
        text = texts.cast(pl.String).fill_null("")
        rows = may_hold_pii(text, config).arg_true().to_list()
        found: list[list[Span]] = [[] for _ in range(text.len())]
        if not rows:
            return found
        values: list[str] = text.gather(rows).to_list()
        if self._local is not None:
            spans = self._local.detect(values, config)
        else:
            chunks = [values[i : i + CHUNK] for i in range(0, len(values), CHUNK)]
            spans = []
            for part in self._executor().map(_worker_detect, chunks, [config] * len(chunks)):
                spans.extend(part)
        for row, row_spans in zip(rows, spans, strict=True):
            found[row] = row_spans
        return found

    def close(self) -> None:
        """Stop the worker processes (started again on the next use)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DetectionMemo(PiiEngine):
    """An engine's detection with memory: each distinct text is analysed once for as long as
    the memo lives (one upload read in parts: a value repeated across parts costs nothing
    more). Holds up to ``limit`` texts, then forgets the oldest half; meant to live only as
    long as the upload it serves, since it holds that upload's texts."""

    def __init__(self, engine: PiiEngine, limit: int = 200_000) -> None:
        # No worker pool of its own: every detection goes through ``engine``.
        self._engine = engine
        self._limit = limit
        self._seen: dict[tuple[DetectionConfig, str], list[Span]] = {}
        self.model_name = engine.model_name
        self.workers = engine.workers
        self._local = None
        self._pool = None
        self._status = engine._status

    def detect(self, texts: pl.Series, config: DetectionConfig) -> list[list[Span]]:
        """As ``PiiEngine.detect``, each text not seen before analysed, in one batch."""
        text = texts.cast(pl.String).fill_null("")
        values: list[str] = text.to_list()
        new = list(dict.fromkeys(v for v in values if (config, v) not in self._seen))
        if new:
            found = self._engine.detect(pl.Series(new, dtype=pl.String), config)
            if len(self._seen) + len(new) > self._limit:
                for key in list(self._seen)[: len(self._seen) // 2 + len(new)]:
                    del self._seen[key]
            self._seen.update(((config, v), spans) for v, spans in zip(new, found, strict=True))
        return [self._seen[(config, v)] for v in values]

    def close(self) -> None:
        """Forget every text (the engine itself is not the memo's to stop)."""
        self._seen.clear()
