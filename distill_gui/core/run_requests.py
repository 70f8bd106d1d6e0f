"""Pause, resume and stop requests to a training process, through its run folder.

The one control channel from the app (or a script) to a run, whoever started it: the requester writes
``control.json`` in the run folder (atomically, with a sequence number); the training process polls it
between steps with :class:`RequestWatcher` and carries out each new request once. It works the same
for a run the app started, a run it found already training after a restart, and a run started from a
terminal; it needs no pipe and no signal, so it works on every platform.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from distill_gui.core import atomic_files
from distill_gui.core.errors import UserError

CONTROL_NAME = "control.json"
COMMANDS = ("pause", "resume", "stop")
POLL_S = 0.2


class RequestError(UserError):
    """A request could not be made (an unknown command, or the folder is not writable)."""


def control_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CONTROL_NAME


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def request(run_dir: str | Path, command: str) -> int:
    """Ask the run's process to ``pause``, ``resume`` or ``stop``; returns the request's number."""
    command = command.strip().lower()
    if command not in COMMANDS:
        raise RequestError(f"{command!r} is not a request; use one of {', '.join(COMMANDS)}")
    path = control_path(run_dir)
    previous = _read(path).get("seq")
    seq = (previous if isinstance(previous, int) and not isinstance(previous, bool) and previous >= 0 else 0) + 1
    try:
        atomic_files.write_json(path, {"seq": seq, "command": command, "at": time.time()}, indent=None)
    except OSError as exc:
        raise RequestError(f"{path}: cannot write the request ({exc.strerror or exc})") from None
    return seq


class RequestWatcher:
    """Polls a run folder's control.json in a thread and applies new requests to a :class:`RunControl`.

    Requests written before the watcher started are ignored (they were meant for an earlier process).
    """

    def __init__(self, run_dir: str | Path, control: Any, poll_s: float = POLL_S):
        self.path = control_path(run_dir)
        self.control = control
        self.poll_s = poll_s
        seen = _read(self.path).get("seq")
        self.seen = seen if isinstance(seen, int) and not isinstance(seen, bool) else 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> str | None:
        """Apply a new request if there is one; returns its command."""
        data = _read(self.path)
        seq, command = data.get("seq"), data.get("command")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= self.seen or command not in COMMANDS:
            return None
        self.seen = seq
        self.control.apply(command)
        return command

    def start(self) -> "RequestWatcher":
        def loop() -> None:
            while not self._stop.wait(self.poll_s):
                self.check()

        self._thread = threading.Thread(target=loop, name="distill-gui-requests", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> "RequestWatcher":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
