"""The Generations page's "Ask both models" in a child process (:mod:`distill_gui.core.ask_service`):
the models load and generate there, so the window never waits, and Cancel ends the child at once."""

from __future__ import annotations

import json
import sys

from PySide6.QtCore import QObject, QProcess, Signal, Slot

STDERR_TAIL_CHARS = 2000


class AskProcess(QObject):
    """Sends questions to the ask child and re-emits its answers; one question at a time."""

    # ---- Signals
    sig_status = Signal(str)
    """What the child is doing (loading a model, writing)."""
    sig_answered = Signal(str, object, object)
    """(prompt, teacher answer or None, student answer or None)."""
    sig_failed = Signal(str)
    """A message saying why there is no answer (also after Cancel)."""
    sig_disagreement = Signal(object, object)
    """(per-answer lists of TokenScore, hardest tokens [(token, mean KL, count)]) for a disagreement request."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.command = [sys.executable, "-m", "distill_gui.core.ask_service"]
        self._process: QProcess | None = None
        self._buffer = b""
        self._stderr = b""
        self._next_id = 0
        self._prompts: dict[int, str] = {}

    # ---- Public API
    @Slot(object)
    def ask(self, request: dict) -> None:
        """Ask both models ``request["prompt"]`` (the child starts on the first question and stays)."""
        self._next_id += 1
        self._prompts[self._next_id] = str(request.get("prompt", ""))
        line = json.dumps({**request, "id": self._next_id}) + "\n"
        self._ensure_started().write(line.encode("utf-8"))

    @Slot(object)
    def explain(self, request: dict) -> None:
        """Score ``request["samples"]`` ([{prompt, answer}]) token by token with both models."""
        self.ask({**request, "kind": "disagreement", "prompt": ""})

    @Slot()
    def cancel(self) -> None:
        """End the child now (the models load again on the next question)."""
        if self._prompts:
            self._prompts.clear()
            self.shutdown(timeout_ms=0)
            self.sig_failed.emit("cancelled (the models load again on the next question)")

    def busy(self) -> bool:
        return bool(self._prompts)

    def pid(self) -> int | None:
        if self._process is None or self._process.state() == QProcess.ProcessState.NotRunning:
            return None
        return int(self._process.processId())

    def shutdown(self, timeout_ms: int = 500) -> None:
        """Close the child's stdin and end it if it does not end on its own within ``timeout_ms``."""
        process, self._process = self._process, None
        if process is None:
            return
        process.finished.disconnect(self.on_finished)
        if process.state() != QProcess.ProcessState.NotRunning:
            process.closeWriteChannel()
            if timeout_ms <= 0 or not process.waitForFinished(timeout_ms):
                process.kill()
                process.waitForFinished(3000)

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
        self._process = None
        if self._prompts:
            self._prompts.clear()
            tail = self._stderr.decode("utf-8", "replace").strip().splitlines()
            self.sig_failed.emit(f"the models' process ended unexpectedly ({tail[-1] if tail else f'exit code {code}'})")

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
        try:
            answer = json.loads(line)
            request_id, kind = int(answer["id"]), answer["kind"]
        except (ValueError, KeyError, TypeError):
            return
        if request_id not in self._prompts:
            return  # an answer to a cancelled question
        if kind == "status":
            self.sig_status.emit(str(answer.get("text", "")))
        elif kind == "answered":
            self.sig_answered.emit(self._prompts.pop(request_id), answer.get("teacher"), answer.get("student"))
        elif kind == "disagreement":
            from distill_gui.core.token_disagreement import TokenScore

            self._prompts.pop(request_id, None)
            answers = [[TokenScore(**{**t, "teacher_top": tuple(map(tuple, t["teacher_top"])),
                                      "student_top": tuple(map(tuple, t["student_top"]))}) for t in a] for a in answer["answers"]]
            self.sig_disagreement.emit(answers, [tuple(h) for h in answer["hardest"]])
        elif kind == "failed":
            self._prompts.pop(request_id, None)
            self.sig_failed.emit(str(answer.get("message", "")))
