"""Which process owns a run: a pid, the time that process started and the host it runs on.

A pid alone names a process only while it lives; after a crash the number can be handed to an
unrelated process. A record of (pid, start time, host) names one process for good: a live process
matches it only when its own start time is the recorded one. Nothing here ever signals a pid that
is not a positive number, and :func:`signal_process` refuses a process whose identity does not match.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

MAX_PID = 2**31 - 1
"""pid_t is a signed 32-bit number everywhere we run; anything above is not a pid."""
START_TIME_TOLERANCE_S = 1.0
"""Start times of one process read twice can differ by clock ticks; a reused pid starts much later."""


class IdentityMismatch(RuntimeError):
    """The process named by a record is not the one running under that pid (or is gone)."""


def valid_pid(value: Any) -> int | None:
    """``value`` as a pid when it is a whole number in 1..2**31-1 (not a bool, not text), else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 < value <= MAX_PID else None


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None when there is no such process."""
    import psutil

    if valid_pid(pid) is None:
        return None
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except (psutil.AccessDenied, OSError, ValueError):
        return None


def this_host() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class ProcessIdentity:
    """One process for good: its pid, when it started and on which host."""

    pid: int
    started_at: float
    host: str

    @classmethod
    def current(cls) -> "ProcessIdentity":
        """The identity of the calling process."""
        pid = os.getpid()
        started = process_start_time(pid)
        return cls(pid=pid, started_at=started if started is not None else 0.0, host=this_host())

    @classmethod
    def from_record(cls, record: Any) -> "ProcessIdentity | None":
        """Read ``{pid, pid_started_at, host}`` from a mapping; None when any part is missing or malformed."""
        if not isinstance(record, dict):
            return None
        pid = valid_pid(record.get("pid"))
        started = record.get("pid_started_at")
        host = record.get("host")
        if pid is None or isinstance(started, bool) or not isinstance(started, (int, float)) or not isinstance(host, str):
            return None
        if not (started > 0 and started == started and started != float("inf")):
            return None
        return cls(pid=pid, started_at=float(started), host=host)

    def to_record(self) -> dict[str, Any]:
        return {"pid": self.pid, "pid_started_at": self.started_at, "host": self.host}

    def is_local(self) -> bool:
        return self.host == this_host()

    def is_alive(self) -> bool:
        """True only when this host runs a process with this pid that started at the recorded time."""
        if not self.is_local():
            return False
        started = process_start_time(self.pid)
        return started is not None and abs(started - self.started_at) <= START_TIME_TOLERANCE_S

    def describe(self) -> str:
        import time

        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at)) if self.started_at else "?"
        where = "" if self.is_local() else f" on host {self.host}"
        return f"process {self.pid}{where} (started {when})"


def signal_process(identity: ProcessIdentity, sig: int) -> None:
    """Send ``sig`` to the process named by ``identity``, only when it is still that very process.

    Raises :class:`IdentityMismatch` when the pid is gone, belongs to a process that started at
    another time, or lives on another host; never signals a pid of 0 or below.
    """
    if valid_pid(identity.pid) is None:
        raise IdentityMismatch(f"{identity.pid!r} is not a process id; no signal sent")
    if not identity.is_local():
        raise IdentityMismatch(f"{identity.describe()} runs on another machine; no signal sent")
    if not identity.is_alive():
        raise IdentityMismatch(f"{identity.describe()} is gone (its pid is free or now belongs to another process); no signal sent")
    os.kill(identity.pid, sig)
