"""Help → Diagnostics…: the ``distill-gui doctor`` report in a window, with "Copy diagnostics".

The report imports torch and asks ``nvidia-smi``; it runs as a child process (``python -m distill_gui
doctor``) so the window never waits for it.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QProcess, QProcessEnvironment, Slot
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout

WAITING = "Collecting diagnostics (versions, GPU driver, disk)…"


class DiagnosticsDialog(QDialog):
    """Shows the doctor's report; the copy button puts it on the clipboard for a bug report."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("distill-gui diagnostics")
        self.setObjectName("diagnostics_dialog")
        self.resize(820, 560)
        self.summary = QLabel(WAITING)
        self.summary.setObjectName("diagnostics_summary")
        self.summary.setWordWrap(True)
        self.text = QPlainTextEdit()
        self.text.setObjectName("diagnostics_text")
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.copy_button = QPushButton("Copy diagnostics")
        self.copy_button.setObjectName("copy_diagnostics")
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)

        self.process = QProcess(self)
        environment = QProcessEnvironment.systemEnvironment()
        environment.insert("PYTHONIOENCODING", "utf-8")
        self.process.setProcessEnvironment(environment)
        self.process.finished.connect(self.on_finished)
        self.process.errorOccurred.connect(self.on_error)
        self.process.start(sys.executable, ["-m", "distill_gui", "doctor"])

    # ---- Slots
    @Slot(int, QProcess.ExitStatus)
    def on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        out = bytes(self.process.readAllStandardOutput()).decode("utf-8", errors="replace").rstrip()
        err = bytes(self.process.readAllStandardError()).decode("utf-8", errors="replace").strip()
        if status != QProcess.ExitStatus.NormalExit or not out:
            self.summary.setText(f"The diagnostics did not finish: {err.splitlines()[-1] if err else 'no output'}")
            self.text.setPlainText(err)
        else:
            self.summary.setText("No problems found." if code == 0 else "Problems found: see the end of the report.")
            self.text.setPlainText(out)
        self.copy_button.setEnabled(bool(self.text.toPlainText()))

    @Slot(QProcess.ProcessError)
    def on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.summary.setText(f"Could not start {sys.executable}: {self.process.errorString()}")

    @Slot()
    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text.toPlainText())
        self.summary.setText(self.summary.text().split(" (copied")[0] + " (copied to the clipboard)")

    # ---- Qt events
    def done(self, result: int) -> None:
        if self.process.state() != QProcess.ProcessState.NotRunning:
            self.process.kill()
            self.process.waitForFinished(2000)
        super().done(result)
