"""A long-lived child process spoken to in JSON lines: the app writes one request a line to its stdin, the
child answers with ``{"id": N, "kind": ..., ...}`` lines on stdout. The pair check, the data preview and
"Ask both models" run this way, so torch, transformers, parsing and any model's code never hold the app's
interpreter. A subclass turns answers into its signals (:meth:`JsonLinesClient._answer`) and says what an
unexpected end means for its open requests (:meth:`JsonLinesClient._child_ended`)."""

from __future__ import annotations

import json

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Slot

STDERR_TAIL_CHARS = 2000
"""How much of the child's stderr is kept, for the reason of an unexpected end."""


def child_process_environment() -> QProcessEnvironment:
    """The app's environment, with this very package importable in the child wherever it was imported from."""
    from distill_gui.gui.supervisor import child_environment

    env = QProcessEnvironment()
    for key, value in child_environment().items():
        env.insert(key, value)
    return env


class JsonLinesClient(QObject):
    """Starts the child on the first request, keeps it for the next ones, and reads its answers line by line."""

    def __init__(self, command: list[str], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.command = command
        """The child's command line (tests replace it)."""
        self._process: QProcess | None = None
        self._buffer = b""
        self._stderr = b""

    # ---- Public API
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        if self._process is None or self._process.state() == QProcess.ProcessState.NotRunning:
            return None
        return int(self._process.processId())

    def shutdown(self, timeout_ms: int = 500) -> None:
        """Close the child's stdin (it ends on its own) and end it if it has not within ``timeout_ms`` (0: at once)."""
        self._end_child(timeout_ms, kill=False)

    # ---- For subclasses
    def _send(self, request: dict) -> None:
        """Write one request line (the child is started first when it is not running)."""
        self._ensure_started().write((json.dumps(request) + "\n").encode("utf-8"))

    def _end_child(self, timeout_ms: int = 500, kill: bool = False) -> None:
        """End the child without reporting it as unexpected: at once when ``kill`` (its answer is stale)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.finished.disconnect(self.on_finished)
        if process.state() != QProcess.ProcessState.NotRunning:
            if kill:
                process.kill()
            else:
                process.closeWriteChannel()
            if timeout_ms <= 0 or not process.waitForFinished(timeout_ms):
                process.kill()
                process.waitForFinished(max(timeout_ms, 3000))
        process.deleteLater()

    def _end_reason(self, code: int) -> str:
        """The last line the child wrote to stderr, else its exit code."""
        tail = self._stderr.decode("utf-8", "replace").strip().splitlines()
        return tail[-1] if tail else f"exit code {code}"

    def _answer(self, answer: dict) -> None:
        """One answer line, parsed, with an int ``id`` and a ``kind``."""
        raise TypeError(f"{type(self).__name__} is a JsonLinesClient without _answer(): say what its child's answers mean")

    def _child_ended(self, code: int) -> None:
        """The child ended on its own (a crash, killed for memory); the next request starts a new one."""

    # ---- Slots
    @Slot()
    def on_stdout(self) -> None:
        if self._process is None:
            return
        self._buffer += bytes(self._process.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            try:
                answer = json.loads(line)
                answer["id"] = int(answer["id"])
                str(answer["kind"])
            except (ValueError, KeyError, TypeError):
                continue  # not an answer line (a library's stray print)
            self._answer(answer)

    @Slot()
    def on_stderr(self) -> None:
        if self._process is not None:
            self._stderr = (self._stderr + bytes(self._process.readAllStandardError()))[-STDERR_TAIL_CHARS:]

    @Slot(int, QProcess.ExitStatus)
    def on_finished(self, code: int, _status) -> None:
        self._process = None
        self._child_ended(code)

    # ---- Internals
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
