"""Making the demo student in a child process (:mod:`distill_gui.demo.demo_student`): importing torch and
building the model never hold the app's interpreter lock on first launch."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, Signal, Slot

STDERR_TAIL_CHARS = 4000


class DemoStudentProcess(QObject):
    """Starts the child and says when the student is ready or why it could not be made."""

    # ---- Signals
    sig_built = Signal(str)
    """The student folder is ready."""
    sig_failed = Signal(str)
    """Why it could not be made."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._process: QProcess | None = None
        self._out = ""
        self._stderr = b""

    @Slot(str, str)
    def build(self, teacher: str, out: str) -> None:
        """Make the student in ``out`` from ``teacher`` (at once when it is already there)."""
        if (Path(out) / "config.json").is_file():
            self.sig_built.emit(out)
            return
        if self._process is not None:
            return  # already being made
        self._out, self._stderr = out, b""
        process = QProcess(self)
        process.setProgram(sys.executable)
        process.setArguments(["-m", "distill_gui.demo.demo_student", teacher, out])
        process.readyReadStandardError.connect(self.on_stderr)
        process.finished.connect(self.on_finished)
        self._process = process
        process.start()

    def shutdown(self) -> None:
        """End the child (the window closes): the staging folder it leaves is cleared on the next launch."""
        process, self._process = self._process, None
        if process is not None and process.state() != QProcess.ProcessState.NotRunning:
            process.finished.disconnect(self.on_finished)
            process.kill()
            process.waitForFinished(3000)

    @Slot()
    def on_stderr(self) -> None:
        if self._process is not None:
            self._stderr = (self._stderr + bytes(self._process.readAllStandardError()))[-STDERR_TAIL_CHARS:]

    @Slot(int, QProcess.ExitStatus)
    def on_finished(self, code: int, _status) -> None:
        self._process = None
        if code == 0 and (Path(self._out) / "config.json").is_file():
            self.sig_built.emit(self._out)
            return
        lines = [line for line in self._stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        self.sig_failed.emit(lines[-1] if lines else f"the process making it ended with code {code}")
