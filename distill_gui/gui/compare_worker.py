"""``distill-gui compare --events json`` as a child process, its event lines turned into Qt signals.

The child does the heavy work (torch, every model load, generation), so the window never waits on
it; a QThread reads its stdout line by line. Stop is a ``stop`` line on the child's stdin: the child
finishes the batch in flight, keeps every finished model's score and writes its results folder.
"""

from __future__ import annotations

import collections
import os
import subprocess
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from distill_gui.core.compare import CompareSettings
from distill_gui.core.compare_events import compare_event_from_json
from distill_gui.gui.supervisor import child_environment, trainer_command

TAIL_LINES = 40


def compare_command(models: list[str], data: str, settings: CompareSettings, *, reference: str | None = None,
                    runs_root: str | Path | None = None, out: str | Path | None = None, name: str = "") -> list[str]:
    """The command line of a comparison run by the GUI (the same one a user could type)."""
    argv = [*trainer_command(), "compare", *models, "--data", data, "--events", "json",
            "--max-new-tokens", str(settings.max_new_tokens), "--batch-size", str(settings.batch_size),
            "--device", settings.device, "--chat-template", settings.chat_template, "--format", settings.data_format,
            "--max-length", str(settings.max_length)]
    if settings.limit:
        argv += ["--limit", str(settings.limit)]
    if settings.samples > 1:
        argv += ["--samples", str(settings.samples), "--temperature", str(settings.temperature), "--top-p", str(settings.top_p),
                 "--seed", str(settings.seed)]
    if reference:
        argv += ["--reference", reference]
    if runs_root is not None:
        argv += ["--runs-dir", str(runs_root)]
    if out is not None:
        argv += ["--out", str(out)]
    if name:
        argv += ["--name", name]
    if settings.api_key_env:
        argv += ["--api-key-env", settings.api_key_env]
    return argv


class CompareProcess(QObject):
    """Runs one comparison child; lives in a QThread (``run`` blocks until the child ends)."""

    # ---- Signals
    sig_event = Signal(object)
    """A :class:`distill_gui.core.compare.CompareEvent` from the child."""
    sig_log = Signal(str)
    """A line from the child that is not an event (warnings, errors)."""
    sig_exited = Signal(int, str)
    """The child ended: its return code (127 when it could not start) and its last lines."""

    def __init__(self, argv: list[str], env: dict | None = None):
        super().__init__()
        self.argv = list(argv)
        self.env = env
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    # ---- Public API (any thread)
    def stop(self) -> bool:
        """Ask the child to stop after the batch in flight; False when it is gone."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None or proc.poll() is not None:
                return False
            try:
                proc.stdin.write("stop\n")
                proc.stdin.flush()
                return True
            except (OSError, ValueError):
                return False

    def kill(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()

    # ---- Thread body
    @Slot()
    def run(self) -> None:
        env = child_environment(self.env)
        kwargs: dict = {"start_new_session": True} if os.name == "posix" else {}
        try:
            with self._lock:
                self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                              env=env, text=True, encoding="utf-8", errors="replace", bufsize=1, **kwargs)
        except OSError as exc:
            self.sig_exited.emit(127, f"could not start the comparison process: {exc}")
            return
        proc = self._proc
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n").rsplit("\r", 1)[-1]
            if not line.strip():
                continue
            event = compare_event_from_json(line) if line.startswith("{") else None
            if event is not None:
                self.sig_event.emit(event)
            else:
                self._tail.append(line)
                self.sig_log.emit(line)
        code = proc.wait()
        with self._lock:
            for stream in (proc.stdin, proc.stdout):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
        self.sig_exited.emit(code, "\n".join(self._tail))
