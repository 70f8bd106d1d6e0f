"""The Data page's preview parsed in a child process (:mod:`distill_gui.core.data_preview`): a large or slow
file is read there, never in the app, so the window never waits on the interpreter lock while it is. The
child starts on the first preview and stays for the next ones; a newer request makes older ones stale."""

from __future__ import annotations

import json
import sys

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal, Slot

STDERR_TAIL_CHARS = 2000


def child_process_environment() -> QProcessEnvironment:
    """The app's environment, with this very package importable in the child wherever it was imported from."""
    from distill_gui.gui.supervisor import child_environment

    env = QProcessEnvironment()
    for key, value in child_environment().items():
        env.insert(key, value)
    return env


class DataPreviewProcess(QObject):
    """Sends preview requests to the child and re-emits its answers (the interface of the old thread worker)."""

    # ---- Signals
    sig_loaded = Signal(int, object, object, int)
    """(request id, first examples, DataReport, number of usable examples)."""
    sig_failed = Signal(int, str)
    """(request id, message) when the file cannot be used at all (or the child ended)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.latest = 0
        """The newest request id; answers to others are dropped."""
        self.command = [sys.executable, "-m", "distill_gui.core.data_preview"]
        self._process: QProcess | None = None
        self._buffer = b""
        self._stderr = b""
        self._pending: int | None = None

    # ---- Public API
    @Slot(int, str, str, object)
    def load(self, request_id: int, path: str, fmt: str, columns: dict) -> None:
        """Ask the child to parse ``path`` (started first if it is not running)."""
        if request_id != self.latest:
            return
        if self._pending is not None:
            self._stop()  # still reading an older file (a large one, or a pipe that never ends): start afresh
        process = self._ensure_started()
        self._pending = request_id
        request = {"id": request_id, "path": path, "format": fmt, "columns": dict(columns or {})}
        process.write((json.dumps(request) + "\n").encode("utf-8"))

    def pid(self) -> int | None:
        """The child's process id while it runs."""
        if self._process is None or self._process.state() == QProcess.ProcessState.NotRunning:
            return None
        return int(self._process.processId())

    def shutdown(self, timeout_ms: int = 500) -> None:
        """Close the child's stdin (it ends on its own) and end it if it does not."""
        self._stop(timeout_ms)

    # ---- Internals
    def _stop(self, timeout_ms: int = 500) -> None:
        """End the child: an idle one by closing its stdin, a busy one at once (its answer is stale)."""
        busy, self._pending = self._pending is not None, None
        process, self._process = self._process, None
        if process is None:
            return
        process.finished.disconnect(self.on_finished)
        if process.state() != QProcess.ProcessState.NotRunning:
            if busy:
                process.kill()
            else:
                process.closeWriteChannel()
            if not process.waitForFinished(timeout_ms):
                process.kill()
                process.waitForFinished(timeout_ms)
        process.deleteLater()

    # ---- Slots
    @Slot()
    def on_stdout(self) -> None:
        if self._process is None:
            return
        self._buffer += bytes(self._process.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._answer(line)

    @Slot()
    def on_stderr(self) -> None:
        if self._process is not None:
            self._stderr = (self._stderr + bytes(self._process.readAllStandardError()))[-STDERR_TAIL_CHARS:]

    @Slot(int, QProcess.ExitStatus)
    def on_finished(self, code: int, _status) -> None:
        """The child ended on its own (a crash, or killed for memory): the open request fails with the reason."""
        self._process = None
        pending, self._pending = self._pending, None
        if pending is not None and pending == self.latest:
            tail = self._stderr.decode("utf-8", "replace").strip().splitlines()
            reason = tail[-1] if tail else f"exit code {code}"
            self.sig_failed.emit(pending, f"reading the file stopped unexpectedly ({reason}); edit the path to try again")

    def _ensure_started(self) -> QProcess:
        if self._process is not None and self._process.state() != QProcess.ProcessState.NotRunning:
            return self._process
        process = QProcess(self)
        process.setProgram(self.command[0])
        process.setArguments(self.command[1:])
        process.setProcessEnvironment(child_process_environment())
        process.readyReadStandardOutput.connect(self.on_stdout)
        process.readyReadStandardError.connect(self.on_stderr)
        process.finished.connect(self.on_finished)
        self._buffer = b""
        self._stderr = b""
        process.start()
        self._process = process
        return process

    def _answer(self, line: bytes) -> None:
        try:
            answer = json.loads(line)
            request_id, kind = int(answer["id"]), answer["kind"]
        except (ValueError, KeyError, TypeError):
            return
        if self._pending == request_id:
            self._pending = None
        if request_id != self.latest:
            return  # stale: a newer file or setting was asked for
        if kind == "loaded":
            from distill_gui.core.data_preview import decode_examples, decode_report

            examples = decode_examples(answer.get("examples") or [])
            self.sig_loaded.emit(request_id, examples, decode_report(answer["report"]), int(answer.get("count", len(examples))))
        elif kind == "failed":
            self.sig_failed.emit(request_id, str(answer.get("message", "")))
