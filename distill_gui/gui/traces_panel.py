"""Trace distillation with a verifier: the teacher answers the training questions, the answers whose
final result matches the reference are kept, and the kept traces become SFT training data.

The work is ``distill-gui generate-data`` in a child process (the same code as the command line),
supervised like a training run; its progress is read from the child's log lines.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from PySide6.QtCore import QThread, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from distill_gui.gui.supervisor import ChildSupervisor, run_in_thread, trainer_command

PROGRESS = re.compile(r"(\d+)/(\d+)")
DATASET_LINE = re.compile(r"^dataset: (.+?)\s+\(log: ")
CHECKERS = ("numeric", "steps", "math")

EXPLANATION = (
    "<b>Trace distillation</b>: the teacher writes a worked answer for every training question; only "
    "answers whose final result matches the reference (the part after ####) are kept. Train the student on "
    "the kept traces with SFT — this works even when the tokenizers differ."
)


class TracesPanel(QGroupBox):
    """Settings, Generate/Stop, progress and the result of a teacher-traces job."""

    # ---- Signals
    sig_use_traces = Signal(str)
    """Train on this traces file with SFT (the window updates the config)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Trace distillation with a verifier", parent)
        self.command = trainer_command()
        self.teacher = ""
        self.data = ""
        self.data_format = "auto"
        self.chat_template = "auto"
        self.default_dir = Path(tempfile.gettempdir())
        self._worker: ChildSupervisor | None = None
        self._thread: QThread | None = None
        self._work: Path | None = None
        self._last_line = ""
        self._dataset = ""

        self.num_samples = QSpinBox()
        self.num_samples.setObjectName("traces.num_samples")
        self.num_samples.setRange(1, 64)
        self.num_samples.setToolTip("Completions the teacher writes per question (more than 1 needs a temperature above 0)")
        self.temperature = QDoubleSpinBox()
        self.temperature.setObjectName("traces.temperature")
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setToolTip("0 is greedy; rejection sampling usually uses 0.6-1.0 with several samples")
        self.max_new_tokens = QSpinBox()
        self.max_new_tokens.setObjectName("traces.max_new_tokens")
        self.max_new_tokens.setRange(1, 8192)
        self.max_new_tokens.setValue(256)
        self.max_new_tokens.setToolTip("Longest trace the teacher may write")
        self.checker = QComboBox()
        self.checker.setObjectName("traces.checker")
        self.checker.addItems(list(CHECKERS))
        self.checker.setToolTip("numeric compares the final numbers; math also understands fractions and LaTeX answers")
        self.limit = QSpinBox()
        self.limit.setObjectName("traces.limit")
        self.limit.setRange(0, 10_000_000)
        self.limit.setSpecialValueText("all rows")
        self.limit.setToolTip("Use only the first N training rows (0: all)")
        self.out_edit = QLineEdit()
        self.out_edit.setObjectName("traces.out")
        self.out_edit.setPlaceholderText("traces file to write (.jsonl); default beside the runs folder")
        self.out_edit.setToolTip("Generation resumes: running again with the same file continues where it stopped")
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose where the traces file goes")
        browse.clicked.connect(self.on_browse)

        self.generate_button = QPushButton("Generate traces")
        self.generate_button.setObjectName("traces_generate")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("traces_stop")
        self.stop_button.setEnabled(False)
        self.use_button = QPushButton("Train on them (SFT)")
        self.use_button.setObjectName("traces_use")
        self.use_button.setToolTip("Use the kept traces as the training data and switch the method to SFT")
        self.use_button.setEnabled(False)
        self.generate_button.clicked.connect(self.on_generate)
        self.stop_button.clicked.connect(self.on_stop)
        self.use_button.clicked.connect(self.on_use)
        self.progress = QProgressBar()
        self.progress.setObjectName("traces_progress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.progress.setVisible(False)
        self.state = QLabel("")
        self.state.setObjectName("traces_state")
        self.state.setWordWrap(True)

        explanation = QLabel(EXPLANATION)
        explanation.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Samples per question", self.num_samples)
        form.addRow("Temperature", self.temperature)
        form.addRow("Max new tokens", self.max_new_tokens)
        form.addRow("Answer checker", self.checker)
        form.addRow("Questions", self.limit)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        form.addRow("Traces file", out_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.progress, 1)
        buttons.addStretch(0)
        buttons.addWidget(self.use_button)
        right = QVBoxLayout()
        right.addWidget(explanation)
        right.addStretch(1)
        top = QHBoxLayout()
        top.addLayout(form, 1)
        top.addLayout(right, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(buttons)
        layout.addWidget(self.state)

    # ---- Public API
    def set_sources(self, teacher: str, data: str, data_format: str, chat_template: str, default_dir: Path) -> None:
        """The teacher and training data the traces are made from (the current config's)."""
        self.teacher, self.data = teacher, data
        self.data_format, self.chat_template = data_format, chat_template
        self.default_dir = Path(default_dir)

    def is_running(self) -> bool:
        return self._worker is not None

    def out_path(self) -> str:
        text = self.out_edit.text().strip()
        if text:
            return text
        stem = Path(self.data).stem or "data"
        return str(self.default_dir / "traces" / f"{stem}-traces.jsonl")

    def argv(self) -> list[str]:
        argv = [*self.command, "generate-data", "--teacher", self.teacher, "--data", self.data, "--out", self.out_path(),
                "--num-samples", str(self.num_samples.value()), "--temperature", f"{self.temperature.value():g}",
                "--max-new-tokens", str(self.max_new_tokens.value()), "--checker", self.checker.currentText(),
                "--chat-template", self.chat_template, "--format", self.data_format]
        if self.limit.value():
            argv += ["--limit", str(self.limit.value())]
        return argv

    def stop_and_wait(self, timeout_ms: int = 30000) -> None:
        """On close: interrupt a running job (it keeps every finished batch) and wait for it."""
        if self._worker is not None and self._thread is not None:
            self._worker.interrupt()
            thread = self._thread
            thread.wait(timeout_ms)

    # ---- Slots
    @Slot()
    def on_generate(self) -> None:
        if self.is_running():
            return
        if not self.teacher or not self.data:
            self.state.setText("Choose a teacher (Models page) and training data with reference answers (Data page) first.")
            return
        if self.num_samples.value() > 1 and self.temperature.value() == 0:
            self.state.setText("Several samples per question need a temperature above 0, or they are all the same.")
            return
        out = Path(self.out_path())
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="distill-gui-traces-"))
        worker = ChildSupervisor(self.argv(), work)
        worker.sig_log.connect(self.on_line)
        worker.sig_exited.connect(self.on_exited)
        thread = run_in_thread(worker, self, "traces-supervisor")
        self._worker, self._thread, self._work = worker, thread, work
        self._last_line, self._dataset = "", ""
        self.generate_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.use_button.setEnabled(False)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)  # busy until the first progress line
        self.state.setText(f"Loading the teacher and reading {Path(self.data).name}…")
        thread.start()

    @Slot()
    def on_stop(self) -> None:
        if self._worker is not None and self._worker.interrupt():
            self.state.setText("Stopping after the batch in flight (finished batches are kept; generate again to continue)…")

    @Slot()
    def on_use(self) -> None:
        if self._dataset:
            self.sig_use_traces.emit(self._dataset)

    @Slot()
    def on_browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Traces file", self.out_path(), "JSON lines (*.jsonl)")
        if path:
            self.out_edit.setText(path)

    @Slot(str)
    def on_line(self, text: str) -> None:
        dataset = DATASET_LINE.match(text)
        if dataset:
            self._dataset = dataset.group(1)
        if text.startswith("generating"):
            match = PROGRESS.search(text)
            if match:
                done, total = int(match.group(1)), int(match.group(2))
                self.progress.setRange(0, max(total, 1))
                self.progress.setValue(done)
                self.progress.setFormat(f"{done} / {total} questions")
            return
        self._last_line = text
        if "kept" in text and "completions" in text:
            self.state.setText(text)

    @Slot(int, str)
    def on_exited(self, returncode: int, stderr_tail: str) -> None:
        thread = self._thread
        self._worker, self._thread = None, None
        if thread is not None:
            thread.quit()
            thread.wait(5000)
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
        self.generate_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        if self._dataset and Path(self._dataset).is_file():
            with open(self._dataset, encoding="utf-8") as fh:
                kept = sum(1 for line in fh if line.strip())
            done = "" if returncode == 0 else " (stopped early; generate again to continue)"
            self.state.setText(f"{self.state.text()}<br>{kept:,} verified traces in {self._dataset}{done}")
            self.use_button.setEnabled(kept > 0)
        else:
            reason = self._last_line or (stderr_tail.splitlines()[-1] if stderr_tail.strip() else f"exit code {returncode}")
            self.state.setText(f"No traces: {reason}")

