"""The Models page's pair check in a child process (:mod:`distill_gui.core.pair_check`): torch,
transformers, GGUF parsing and any model's own code run there, never in the app, so the window never
waits on them. The child starts on the first check and stays for the next ones (it keeps what it read)."""

from __future__ import annotations

import json
import sys

from PySide6.QtCore import QObject, QProcess, Signal, Slot

from distill_gui.core.config import RunConfig, config_to_dict

STDERR_TAIL_CHARS = 2000


class PairCheckProcess(QObject):
    """Sends check requests to the child and re-emits its answers (request ids let the window drop stale ones)."""

    # ---- Signals
    sig_described = Signal(int, str, object)
    """(request id, role, ModelInfo) for a model that could be read."""
    sig_licence = Signal(int, str, object)
    """(request id, role, DetectedLicence) for a model that could be read."""
    sig_failed = Signal(int, str, str)
    """(request id, role, message): role is teacher, student, pair or memory."""
    sig_compatibility = Signal(int, object)
    """(request id, TokenizerCompatibility) for the pair."""
    sig_memory = Signal(int, object)
    """(request id, MemoryEstimate) for the whole run."""
    sig_done = Signal(int)
    """The request is complete (or the child ended before it was)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.latest = 0
        self.command = [sys.executable, "-m", "distill_gui.core.pair_check"]
        self._process: QProcess | None = None
        self._buffer = b""
        self._stderr = b""
        self._pending: int | None = None

    # ---- Public API
    @Slot(int, object)
    def inspect(self, request_id: int, config: RunConfig) -> None:
        """Ask the child to check ``config``'s pair (started first if it is not running)."""
        if request_id != self.latest:
            return
        process = self._ensure_started()
        self._pending = request_id
        line = json.dumps({"id": request_id, "config": config_to_dict(config)}) + "\n"
        process.write(line.encode("utf-8"))

    def pid(self) -> int | None:
        """The child's process id while it runs."""
        if self._process is None or self._process.state() == QProcess.ProcessState.NotRunning:
            return None
        return int(self._process.processId())

    def shutdown(self, timeout_ms: int = 500) -> None:
        """Close the child's stdin (it ends on its own) and end it if it does not."""
        process, self._process = self._process, None
        if process is None:
            return
        process.finished.disconnect(self.on_finished)
        if process.state() != QProcess.ProcessState.NotRunning:
            process.closeWriteChannel()
            if not process.waitForFinished(timeout_ms):
                process.kill()
                process.waitForFinished(timeout_ms)

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
        """The child ended on its own (a crash): the open request ends with the reason; the next starts a new child."""
        self._process = None
        pending, self._pending = self._pending, None
        if pending is not None:
            tail = self._stderr.decode("utf-8", "replace").strip().splitlines()
            reason = tail[-1] if tail else f"exit code {code}"
            self.sig_failed.emit(pending, "pair", f"The model check stopped unexpectedly ({reason}); press Check again.")
            self.sig_done.emit(pending)

    # ---- Internals
    def _ensure_started(self) -> QProcess:
        if self._process is not None and self._process.state() != QProcess.ProcessState.NotRunning:
            return self._process
        process = QProcess(self)
        process.setProgram(self.command[0])
        process.setArguments(self.command[1:])
        process.readyReadStandardOutput.connect(self.on_stdout)
        process.readyReadStandardError.connect(self.on_stderr)
        process.finished.connect(self.on_finished)
        self._buffer = b""
        self._stderr = b""
        process.start()
        self._process = process
        return process

    def _answer(self, line: bytes) -> None:
        from distill_gui.core.pair_check import decode

        try:
            answer = json.loads(line)
            request_id, kind = int(answer["id"]), answer["kind"]
        except (ValueError, KeyError, TypeError):
            return
        if kind == "done":
            if self._pending == request_id:
                self._pending = None
            self.sig_done.emit(request_id)
        elif kind == "failed":
            self.sig_failed.emit(request_id, str(answer.get("role", "pair")), str(answer.get("message", "")))
        elif kind == "described":
            self.sig_described.emit(request_id, str(answer.get("role")), decode(kind, answer["data"]))
        elif kind == "licence":
            self.sig_licence.emit(request_id, str(answer.get("role")), decode(kind, answer["data"]))
        elif kind == "compatibility":
            self.sig_compatibility.emit(request_id, decode(kind, answer["data"]))
        elif kind == "memory":
            self.sig_memory.emit(request_id, decode(kind, answer["data"]))
