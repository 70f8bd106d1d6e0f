"""The Export dialog: a run's student as a Hugging Face folder, a GGUF file or an Ollama import.

The export runs as a child process (``distill-gui export ... --events json``) read by a QThread, so the
window never waits on it; its progress lines move the bar and the result folder is shown at the end.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from distill_gui.gui.supervisor import child_environment, trainer_command

KINDS = (("hf", "Hugging Face folder (merged safetensors)"), ("gguf", "GGUF file (llama.cpp, LM Studio)"),
         ("ollama", "Ollama (GGUF + Modelfile)"))
QUANTS = ("f16", "q8_0", "q4_k_m")
TAIL_LINES = 20


def export_command(source: str, kind: str, quant: str | None, out: str | None, force: bool) -> list[str]:
    """The command line the dialog runs (the same one a user could type)."""
    argv = [*trainer_command(), "export", source, "--to", kind, "--events", "json"]
    if quant and kind != "hf":
        argv += ["--quant", quant]
    if out:
        argv += ["--out", out]
    if force:
        argv.append("--force")
    return argv


class ExportProcess(QObject):
    """Runs one export child; lives in a QThread (``run`` blocks until the child ends)."""

    # ---- Signals
    sig_progress = Signal(float, str)
    """How far the export is (0..1) and what it does now."""
    sig_finished = Signal(dict)
    """The export's result (folder, files, verified, command, notes)."""
    sig_exited = Signal(int, str)
    """The child ended: its return code (127 when it could not start) and its last lines that were not events."""

    def __init__(self, argv: list[str]):
        super().__init__()
        self.argv = list(argv)
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    # ---- Public API (any thread)
    def kill(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()

    # ---- Thread body
    @Slot()
    def run(self) -> None:
        env = child_environment()
        kwargs: dict = {"start_new_session": True} if os.name == "posix" else {}
        try:
            with self._lock:
                self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                              env=env, text=True, encoding="utf-8", errors="replace", bufsize=1, **kwargs)
        except OSError as exc:
            self.sig_exited.emit(127, f"could not start the export process: {exc}")
            return
        proc = self._proc
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n").rsplit("\r", 1)[-1]
            if line.strip():
                self._handle(line)
        code = proc.wait()
        proc.stdout.close()
        self.sig_exited.emit(code, "\n".join(self._tail))

    def _handle(self, line: str) -> None:
        record = None
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
        if isinstance(record, dict) and record.get("event") == "ExportProgress":
            self.sig_progress.emit(float(record.get("fraction", 0.0)), str(record.get("message", "")))
        elif isinstance(record, dict) and record.get("event") == "ExportFinished":
            self.sig_finished.emit(record)
        else:
            self._tail.append(line)


class ExportDialog(QDialog):
    """Choose what to export a run (or model folder) as; shows progress and the result folder."""

    # ---- Signals
    sig_exported = Signal(str)
    """An export finished; its folder."""

    def __init__(self, source: str, parent=None, teacher_notice: str | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Export — {Path(source).name}")
        self.setObjectName("export_dialog")
        self.source = source
        self.result: dict | None = None
        self._thread: QThread | None = None
        self._worker: ExportProcess | None = None

        self.kind = QComboBox(objectName="export_kind")
        for key, label in KINDS:
            self.kind.addItem(label, key)
        self.quant = QComboBox(objectName="export_quant")
        self.quant.addItems(list(QUANTS))
        self.out = QLineEdit(objectName="export_out")
        self.out.setPlaceholderText("default: RUN/exports/<kind>-<quant>")
        self.force = QCheckBox("Replace the folder if it exists", objectName="export_force")
        self.progress = QProgressBar(objectName="export_progress")
        self.progress.setRange(0, 100)
        self.status = QLabel("", objectName="export_status")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.export_button = QPushButton("Export", objectName="export_start")
        self.open_button = QPushButton("Open folder", objectName="export_open")
        self.open_button.setEnabled(False)
        close_button = QPushButton("Close")

        form = QFormLayout()
        form.addRow("Source", QLabel(source))
        form.addRow("Export as", self.kind)
        form.addRow("GGUF weights", self.quant)
        form.addRow("Folder", self.out)
        form.addRow("", self.force)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        if teacher_notice:
            notice = QLabel(teacher_notice, objectName="export_licence")
            notice.setWordWrap(True)
            layout.addWidget(notice)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for button in (self.export_button, self.open_button, close_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)

        self.kind.currentIndexChanged.connect(self.on_kind_changed)
        self.export_button.clicked.connect(self.on_export)
        self.open_button.clicked.connect(self.on_open)
        close_button.clicked.connect(self.close)
        self.on_kind_changed()

    # ---- Slots
    @Slot()
    def on_kind_changed(self) -> None:
        self.quant.setEnabled(self.kind.currentData() != "hf")

    @Slot()
    def on_export(self) -> None:
        kind = self.kind.currentData()
        argv = export_command(self.source, kind, self.quant.currentText(), self.out.text().strip() or None, self.force.isChecked())
        self.export_button.setEnabled(False)
        self.open_button.setEnabled(False)
        self.result = None
        self.progress.setValue(0)
        self.status.setText("starting…")
        self._thread = QThread(self)
        self._worker = ExportProcess(argv)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.sig_progress.connect(self.on_progress)
        self._worker.sig_finished.connect(self.on_finished)
        self._worker.sig_exited.connect(self.on_exited)
        self._thread.start()

    @Slot(float, str)
    def on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(round(100 * fraction)))
        self.status.setText(message)

    @Slot(dict)
    def on_finished(self, result: dict) -> None:
        self.result = result
        lines = [f"Exported to {result.get('folder')}"]
        lines += [f"note: {n}" for n in result.get("notes") or []]
        if result.get("verification"):
            lines.append(result["verification"])
        if result.get("command"):
            lines.append(f"Run it: {result['command']}")
        self.status.setText("\n".join(lines))
        self.progress.setValue(100)
        self.open_button.setEnabled(True)
        self.sig_exported.emit(str(result.get("folder")))

    @Slot(int, str)
    def on_exited(self, code: int, tail: str) -> None:
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()
            self._thread = None
        self._worker = None
        self.export_button.setEnabled(True)
        if self.result is None:
            last = [line for line in tail.splitlines() if line.strip()]
            message = last[-1] if last else f"the export process ended with code {code}"
            self.status.setText(message.removeprefix("distill-gui: error: "))
        elif code != 0:
            self.status.setText(self.status.text() + "\nThe GGUF file did not answer as the merged model did; see its .verify.json.")

    @Slot()
    def on_open(self) -> None:
        if self.result and self.result.get("folder"):
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.result["folder"])))

    # ---- Qt
    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if self._worker is not None:
            self._worker.kill()
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait(5000)
        super().closeEvent(event)


def teacher_notice_for(run_path: str) -> str | None:
    """What the run's teacher's licence asks of the student (read from the teacher's folder), or None."""
    from distill_gui.core.licences import detect_licence, teacher_notice
    from distill_gui.core.runs import RunDir

    run = RunDir(Path(run_path))
    if not run.is_run():
        return None
    try:
        teacher = run.load_config().teacher.path
    except Exception:  # noqa: BLE001 - a damaged config: the export itself will say what is wrong
        return None
    return teacher_notice(detect_licence(teacher)) if teacher else None


def open_export_dialog(source: str, parent=None) -> ExportDialog:
    """Open the Export dialog for a run folder or model folder (not modal: the window stays usable)."""
    dialog = ExportDialog(source, parent, teacher_notice=teacher_notice_for(source))
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.show()
    return dialog


if __name__ == "__main__":
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    dialog = ExportDialog(sys.argv[1] if len(sys.argv) > 1 else ".")
    dialog.show()
    sys.exit(app.exec())
