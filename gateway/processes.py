"""Whether a process still runs: used by recovery and by `datagate serve` (which must not import
prometheus_client before it has prepared the metrics folder, so this module imports nothing
of Datagate's)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

PARENT_CHECK_SECONDS = 0.5


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def exit_with_parent() -> None:
    """End this process as soon as its parent is gone: a worker of ``datagate serve
    --workers N`` whose supervisor was SIGKILLed must not live on as an orphan holding the port,
    its PII worker processes and its database connections."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
