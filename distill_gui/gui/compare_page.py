"""The Compare page: several models on the same rows; which is best, how much of the reference each
keeps, at what size and speed.

Models come from the recent list, the Runs page's runs (a checkbox list), folders or GGUF files. Start
runs ``distill-gui compare --events json`` as a child process (:mod:`distill_gui.gui.compare_worker`);
the table (sortable) and the accuracy-against-size chart fill as each model is scored. The per-question
view shows each model's answer with a right/wrong mark and filters to the questions people look for
("reference right, a model wrong"). Past comparisons are listed and reopen from their folders.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt, QThread, Signal, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from distill_gui.core.compare import CompareSettings
from distill_gui.core.compare_events import CompareFinished, CompareStarted, ModelFailed, ModelProgress, ModelScored, ModelStarted
from distill_gui.core.compare_report import filter_questions, format_params, list_comparisons, load_questions, load_results
from distill_gui.gui.compare_cells import SortItem, display_name, format_cell, log_ticks
from distill_gui.gui.compare_worker import CompareProcess, compare_command
from distill_gui.gui.run_picker import RunPicker
from distill_gui.gui.supervisor import run_in_thread

COLUMNS = [("label", "Model"), ("status", "Status"), ("params", "Params"), ("accuracy", "Accuracy"), ("recovery_pct", "Recovery"),
           ("pass_at_k", "pass@k"), ("majority_accuracy", "Majority"), ("perplexity", "Perplexity"), ("perplexity_ratio", "PPL ratio"),
           ("answer_agreement", "Agreement"), ("top1_agreement", "Top-1 agr."), ("mean_answer_tokens", "Answer tokens"),
           ("tokens_per_s", "Tokens/s"), ("peak_memory_mb", "Memory"), ("disk_bytes", "Disk")]
FILTERS = [("all", "All questions"), ("ref_right_model_wrong", "Reference right, a model wrong"),
           ("ref_wrong_model_right", "Reference wrong, a model right"), ("disagree", "Answers differ"), ("all_wrong", "Every model wrong")]
AUTO_REFERENCE = "(first model, or a run's teacher)"


class ComparePage(QWidget):
    """Pick models and an eval file, run the comparison, read the table, chart and per-question view."""

    # ---- Signals
    sig_models_changed = Signal(list)
    """The model list changed (the arena offers the same models)."""
    sig_state_changed = Signal(str)
    """idle, running or stopping."""
    sig_message = Signal(str)
    """A line for the status bar."""

    def __init__(self, settings=None, runs_root: str | Path | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        from distill_gui.core.runs import default_runs_root

        self.settings = settings
        self.runs_root = Path(runs_root) if runs_root is not None else default_runs_root()
        self.process: CompareProcess | None = None
        self.thread: QThread | None = None
        self.state = "idle"
        self.folder: Path | None = None
        self.reference_label = ""
        self._rows: dict[str, dict] = {}
        self._order: list[str] = []
        self._questions: list[dict] = []
        self.log_lines: list[str] = []

        # ---- Models
        self.models_list = QListWidget()
        self.models_list.setObjectName("compare_models")
        self.models_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.models_list.setMaximumHeight(130)
        self.recent_button = QToolButton()
        self.recent_button.setText("Recent")
        self.recent_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.recent_menu = QMenu(self.recent_button)
        self.recent_menu.aboutToShow.connect(self.on_recent_menu)
        self.recent_button.setMenu(self.recent_menu)
        runs_button = QPushButton("Runs…")
        runs_button.setObjectName("add_runs")
        runs_button.setToolTip("Add finished (or checkpointed) runs from the runs folder")
        folder_button = QPushButton("Folder…")
        gguf_button = QPushButton("GGUF…")
        served_button = QPushButton("Served…")
        served_button.setObjectName("add_served")
        served_button.setToolTip("Add a model served by an OpenAI-compatible server (Ollama, vLLM, llama.cpp's server, ...): "
                                 "scored by its answers")
        remove_button = QPushButton("Remove")
        runs_button.clicked.connect(self.on_add_runs)
        folder_button.clicked.connect(self.on_add_folder)
        gguf_button.clicked.connect(self.on_add_gguf)
        served_button.clicked.connect(self.on_add_served)
        remove_button.clicked.connect(self.on_remove)
        add_row = QHBoxLayout()
        for widget in (self.recent_button, runs_button, folder_button, gguf_button, served_button, remove_button):
            add_row.addWidget(widget)
        self.reference = QComboBox()
        self.reference.setObjectName("compare_reference")
        self.reference.addItem(AUTO_REFERENCE, "")
        models_box = QVBoxLayout()
        models_box.addWidget(QLabel("Models (folders, .gguf files, hub ids, run folders or served models):"))
        models_box.addWidget(self.models_list, 1)
        models_box.addLayout(add_row)
        ref_row = QHBoxLayout()
        ref_row.addWidget(QLabel("Reference:"))
        ref_row.addWidget(self.reference, 1)
        models_box.addLayout(ref_row)

        # ---- Data and settings
        self.data_edit = QLineEdit()
        self.data_edit.setObjectName("compare_data")
        self.data_edit.setPlaceholderText("eval file with verifiable answers (.jsonl, .json, .csv, .parquet, …)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.on_browse_data)
        data_row = QHBoxLayout()
        data_row.addWidget(self.data_edit, 1)
        data_row.addWidget(browse)
        self.limit = QSpinBox()
        self.limit.setObjectName("compare_limit")
        self.limit.setRange(0, 1_000_000)
        self.limit.setSpecialValueText("all rows")
        self.limit.setValue(200)
        self.max_new_tokens = QSpinBox()
        self.max_new_tokens.setObjectName("compare_max_new_tokens")
        self.max_new_tokens.setRange(1, 8192)
        self.max_new_tokens.setValue(128)
        self.samples = QSpinBox()
        self.samples.setObjectName("compare_samples")
        self.samples.setRange(1, 64)
        self.samples.setToolTip("K sampled answers per question for pass@k and majority vote (1: greedy only)")
        self.temperature = QDoubleSpinBox()
        self.temperature.setObjectName("compare_temperature")
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setValue(0.8)
        self.device = QComboBox()
        self.device.setObjectName("compare_device")
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        self.api_key_env = QLineEdit()
        self.api_key_env.setObjectName("compare_api_key_env")
        self.api_key_env.setPlaceholderText("none (servers without a key)")
        self.api_key_env.setToolTip("The environment variable holding the API key of the served models, e.g. OPENAI_API_KEY "
                                    "(the key itself is never stored); the Arena uses it too")
        form = QFormLayout()
        form.addRow("Eval data:", data_row)
        form.addRow("Rows:", self.limit)
        form.addRow("Max new tokens:", self.max_new_tokens)
        form.addRow("Samples (pass@k):", self.samples)
        form.addRow("Temperature (samples):", self.temperature)
        form.addRow("Device:", self.device)
        form.addRow("API key variable:", self.api_key_env)
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("compare_start")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("compare_stop")
        self.stop_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.state_label = QLabel("Add two or more models and an eval file, then Start.")
        self.state_label.setObjectName("compare_state")
        self.state_label.setWordWrap(True)
        run_row = QHBoxLayout()
        run_row.addWidget(self.state_label, 1)
        run_row.addWidget(self.stop_button)
        run_row.addWidget(self.start_button)
        settings_box = QVBoxLayout()
        settings_box.addLayout(form)
        settings_box.addStretch(1)
        settings_box.addLayout(run_row)
        setup = QWidget()
        top = QHBoxLayout(setup)
        top.addLayout(models_box, 3)
        top.addLayout(settings_box, 2)

        # ---- Results: table and chart
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("compare_table")
        self.table.setHorizontalHeaderLabels([title for _, title in COLUMNS])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setSortingEnabled(True)
        self.chart = pg.PlotWidget()
        self.chart.setObjectName("compare_chart")
        self.chart.setLabel("bottom", "parameters")
        self.chart.setLabel("left", "accuracy (%)")
        self.chart.setYRange(0, 105)
        self.chart.showGrid(x=True, y=True, alpha=0.3)
        self.chart.setBackground(self.palette().color(QPalette.ColorRole.Base))
        text_color = self.palette().color(QPalette.ColorRole.Text)
        for axis in ("left", "bottom"):
            self.chart.getAxis(axis).setPen(text_color)
            self.chart.getAxis(axis).setTextPen(text_color)
        self.chart.getViewBox().setDefaultPadding(0.12)
        self.scatter = pg.ScatterPlotItem(size=11, hoverable=True, hoverSize=15, tip=self._tip)
        self.chart.addItem(self.scatter)
        self.reference_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#888", style=Qt.PenStyle.DashLine))
        self.reference_line.setVisible(False)
        self.chart.addItem(self.reference_line)
        self._labels: list[pg.TextItem] = []
        results = QSplitter(Qt.Orientation.Horizontal)
        results.addWidget(self.table)
        results.addWidget(self.chart)
        results.setStretchFactor(0, 3)
        results.setStretchFactor(1, 2)
        results.setSizes([720, 480])

        # ---- Per-question view
        self.filter = QComboBox()
        self.filter.setObjectName("question_filter")
        for key, title in FILTERS:
            self.filter.addItem(title, key)
        self.filter_model = QComboBox()
        self.filter_model.setObjectName("question_model")
        self.filter_model.addItem("any model", "")
        self.filter.currentIndexChanged.connect(self.refresh_questions)
        self.filter_model.currentIndexChanged.connect(self.refresh_questions)
        self.questions_count = QLabel("")
        filter_row = QHBoxLayout()
        filter_row.addWidget(QLabel("Show:"))
        filter_row.addWidget(self.filter)
        filter_row.addWidget(self.filter_model)
        filter_row.addWidget(self.questions_count, 1)
        self.questions = QTableWidget(0, 3)
        self.questions.setObjectName("question_table")
        self.questions.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.questions.setWordWrap(True)
        self.questions.verticalHeader().hide()
        questions_page = QWidget()
        questions_layout = QVBoxLayout(questions_page)
        questions_layout.addLayout(filter_row)
        questions_layout.addWidget(self.questions, 1)

        # ---- Past comparisons
        self.history = QListWidget()
        self.history.setObjectName("compare_history")
        self.history.itemDoubleClicked.connect(self.on_history_open)
        open_button = QPushButton("Open")
        open_button.clicked.connect(self.on_history_open)
        refresh_button = QPushButton("Refresh")
        refresh_button.clicked.connect(self.refresh_history)
        history_page = QWidget()
        history_layout = QVBoxLayout(history_page)
        history_layout.addWidget(self.history, 1)
        history_buttons = QHBoxLayout()
        history_buttons.addStretch(1)
        history_buttons.addWidget(refresh_button)
        history_buttons.addWidget(open_button)
        history_layout.addLayout(history_buttons)

        self.tabs = QTabWidget()
        self.tabs.setObjectName("compare_tabs")
        self.tabs.addTab(results, "Results")
        self.tabs.addTab(questions_page, "Per question")
        self.tabs.addTab(history_page, "Past comparisons")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(setup)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([230, 570])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self.refresh_history()

    # ---- Public API
    def models(self) -> list[str]:
        return [self.models_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.models_list.count())]

    def add_models(self, specs: list[str]) -> int:
        """Add models (paths, hub ids or run folders) that are not listed yet; returns how many were added."""
        present = set(self.models())
        added = 0
        for spec in specs:
            spec = str(spec).strip()
            if not spec or spec in present:
                continue
            item = QListWidgetItem(display_name(spec))
            item.setData(Qt.ItemDataRole.UserRole, spec)
            item.setToolTip(spec)
            self.models_list.addItem(item)
            present.add(spec)
            added += 1
        if added:
            self._models_changed()
        return added

    def set_data(self, path: str) -> None:
        self.data_edit.setText(str(path))

    def set_default_data(self, path: str | None) -> None:
        """The Data page's eval file, used when the user has not chosen one here."""
        if path and not self.data_edit.text().strip():
            self.data_edit.setText(str(path))

    def set_runs_root(self, root: str | Path) -> None:
        self.runs_root = Path(root)
        self.refresh_history()

    def current_settings(self) -> CompareSettings:
        samples = self.samples.value()
        return CompareSettings(max_new_tokens=self.max_new_tokens.value(), limit=self.limit.value() or None,
                               device=self.device.currentText(), samples=samples,
                               temperature=self.temperature.value() if samples > 1 else 0.0,
                               api_key_env=self.api_key_env.text().strip())

    def model_rows(self) -> list[dict]:
        """The table's rows (label, status and measures), in the comparison's order."""
        return [dict(self._rows[label]) for label in self._order]

    def is_running(self) -> bool:
        return self.state in ("running", "stopping")

    @Slot()
    def start(self) -> bool:
        """Start the comparison child process; False (with the reason shown) when it cannot start."""
        if self.is_running():
            return False
        models = self.models()
        data = self.data_edit.text().strip()
        if not models:
            return self._refuse("Add at least one model.")
        if not data:
            return self._refuse("Choose an eval file (rows with verifiable answers give accuracy).")
        if not Path(data).expanduser().exists() and (data.startswith(("/", ".", "~")) or Path(data).suffix):
            return self._refuse(f"{data}: no such file")
        try:
            settings = self.current_settings()
        except ValueError as exc:
            return self._refuse(str(exc))
        reference = self.reference.currentData() or None
        self._clear_results()
        argv = compare_command(models, data, settings, reference=reference, runs_root=self.runs_root)
        self.process = CompareProcess(argv)
        self.process.sig_event.connect(self.on_event)
        self.process.sig_log.connect(self.on_log)
        self.process.sig_exited.connect(self.on_exited)
        self.thread = run_in_thread(self.process, self, "compare-process")
        self.thread.start()
        self._set_state("running")
        self.state_label.setText(f"Starting: {len(models)} model{'s' if len(models) != 1 else ''} on {Path(data).name}…")
        return True

    @Slot()
    def stop(self) -> bool:
        """Ask the comparison to stop after the batch in flight (finished models are kept)."""
        if self.process is None or not self.is_running():
            return False
        if self.process.stop():
            self._set_state("stopping")
            self.state_label.setText("Stopping after this batch; the models already scored are kept.")
            return True
        return False

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Stop a running comparison and wait for its thread (the window is closing)."""
        if self.process is not None and self.is_running():
            self.process.stop()
            if self.thread is not None and not self.thread.wait(timeout_ms):
                self.process.kill()
                self.thread.wait(5000)

    def open_comparison(self, folder: str | Path) -> bool:
        """Show a past comparison from its folder (results.json and predictions.jsonl)."""
        try:
            results = load_results(folder)
        except ValueError as exc:
            self.state_label.setText(str(exc))
            return False
        self._clear_results()
        self.folder = Path(folder)
        self.reference_label = results.get("reference", "")
        for row in results.get("models", []):
            row = dict(row)
            row["status"] = f"failed: {row['error']}" if row.get("error") else ("cached" if row.get("cached") else "done")
            self._order.append(row["label"])
            self._rows[row["label"]] = row
        self._questions = load_questions(folder)
        self._fill_table()
        self._fill_chart()
        self._fill_model_filter()
        self.refresh_questions()
        state = results.get("state", "?")
        self.state_label.setText(f"{Path(folder).name}: {len(self._order)} models on {results.get('rows', '?')} rows "
                                 f"of {Path(results.get('data', '')).name} ({state}).")
        return True

    # ---- Slots: the child
    @Slot(object)
    def on_event(self, event) -> None:
        if isinstance(event, CompareStarted):
            self.folder = Path(event.folder)
            self.reference_label = event.reference
            for label in event.labels:
                self._order.append(label)
                self._rows[label] = {"label": label, "status": "waiting"}
            self.state_label.setText(f"Comparing {len(event.labels)} models on {event.rows} rows; reference: {event.reference}.")
            self._fill_table()
        elif isinstance(event, ModelStarted):
            self._row(event.label)["status"] = "from the cache" if event.cached else "loading"
            self._fill_table()
        elif isinstance(event, ModelProgress):
            label = self._order[event.index] if event.index < len(self._order) else ""
            if label:
                self._row(label)["status"] = event.phase if event.phase == "loading" else f"{event.phase} {event.done}/{event.total}"
                self._update_status(label)
        elif isinstance(event, ModelScored):
            row = dict(event.row)
            row["status"] = "cached" if row.get("cached") else "done"
            self._rows[event.label] = row
            self._fill_table()
            self._fill_chart()
        elif isinstance(event, ModelFailed):
            self._row(event.label).update(status=f"failed: {event.reason}", error=event.reason)
            self._fill_table()
        elif isinstance(event, CompareFinished):
            self.folder = Path(event.folder)
            self._questions = load_questions(event.folder)
            try:
                results = load_results(event.folder)
                for row in results.get("models", []):  # the final measures against the reference
                    status = self._rows.get(row["label"], {}).get("status", "done")
                    self._rows[row["label"]] = {**row, "status": status}
            except ValueError:
                pass
            self._fill_table()
            self._fill_chart()
            self._fill_model_filter()
            self.refresh_questions()
            self.state_label.setText(f"{event.state.capitalize()}: {event.scored} scored, {event.failed} failed. Results in {event.folder}")

    @Slot(str)
    def on_log(self, text: str) -> None:
        self.log_lines.append(text)
        del self.log_lines[:-200]

    @Slot(int, str)
    def on_exited(self, code: int, tail: str) -> None:
        self.process = None
        self.thread = None
        self._set_state("idle")
        if code not in (0, 3):
            last = next((line for line in reversed(tail.splitlines()) if line.strip()), f"exit code {code}")
            self.state_label.setText(f"The comparison failed: {last.removeprefix('distill-gui: error: ')}")
        self.refresh_history()
        self.sig_message.emit(self.state_label.text())

    # ---- Slots: adding models
    @Slot()
    def on_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent_models() if self.settings is not None else []
        if not recent:
            action = self.recent_menu.addAction("(no recent models)")
            action.setEnabled(False)
        for path in recent:
            action = self.recent_menu.addAction(path)
            action.setData(path)
            action.triggered.connect(self.on_recent_chosen)

    @Slot()
    def on_recent_chosen(self) -> None:
        action = self.sender()
        if action is not None and action.data():
            self.add_models([action.data()])

    @Slot()
    def on_add_runs(self) -> None:
        picker = RunPicker(self.runs_root, self)
        if picker.exec() == QDialog.DialogCode.Accepted:
            self.add_models(picker.checked())

    @Slot()
    def on_add_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a model or run folder", str(self.runs_root))
        if path:
            self.add_models([path])

    @Slot()
    def on_add_gguf(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a GGUF model", str(Path.home()), "GGUF model (*.gguf)")
        if path:
            self.add_models([path])

    @Slot()
    def on_add_served(self) -> None:
        text, ok = QInputDialog.getText(
            self, "Add a served model",
            "URL of an OpenAI-compatible server, and #MODEL for one of its models (left out: its first model):",
            QLineEdit.EchoMode.Normal, "http://localhost:11434/v1#",
        )
        if ok:
            self.add_served(text)

    def add_served(self, spec: str) -> bool:
        """Add a served model (``http(s)://host:port/v1#MODEL``); a spec that is not a URL is refused on the page."""
        from distill_gui.core.served_teacher_config import is_served_spec

        spec = spec.strip().rstrip("#")
        if not is_served_spec(spec):
            self.state_label.setText(f"{spec or 'An empty address'} is not a served model: give http://host:port/v1#MODEL")
            return False
        return self.add_models([spec]) > 0

    @Slot()
    def on_remove(self) -> None:
        for item in self.models_list.selectedItems():
            self.models_list.takeItem(self.models_list.row(item))
        self._models_changed()

    @Slot()
    def on_browse_data(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose the eval file", str(Path.home()),
                                              "Data (*.jsonl *.json *.csv *.parquet *.txt);;All files (*)")
        if path:
            self.data_edit.setText(path)

    # ---- Slots: views
    @Slot()
    def refresh_history(self) -> None:
        self.history.clear()
        for folder in list_comparisons(self.runs_root):
            try:
                results = load_results(folder)
            except ValueError:
                continue
            labels = ", ".join(m["label"] for m in results.get("models", [])[:4])
            item = QListWidgetItem(f"{folder.name}  —  {labels}  ({results.get('state', '?')})")
            item.setData(Qt.ItemDataRole.UserRole, str(folder))
            item.setToolTip(str(folder))
            self.history.addItem(item)

    @Slot()
    def on_history_open(self, *_args) -> None:
        item = self.history.currentItem()
        if item is not None:
            self.open_comparison(item.data(Qt.ItemDataRole.UserRole))
            self.tabs.setCurrentIndex(0)

    @Slot()
    def refresh_questions(self) -> None:
        labels = [label for label in self._order if any(label in q.get("answers", {}) for q in self._questions)]
        kind = self.filter.currentData() or "all"
        model = self.filter_model.currentData() or None
        shown = filter_questions(self._questions, kind, self.reference_label, model)
        headers = ["Question", "Reference"] + labels
        self.questions.setSortingEnabled(False)
        self.questions.clear()
        self.questions.setColumnCount(len(headers))
        self.questions.setHorizontalHeaderLabels(headers)
        self.questions.setRowCount(len(shown))
        for row, q in enumerate(shown):
            question = QTableWidgetItem(q.get("question", ""))
            question.setToolTip(f"{q.get('source', '')}\n{q.get('question', '')}")
            self.questions.setItem(row, 0, question)
            self.questions.setItem(row, 1, QTableWidgetItem(str(q.get("reference") or "–")))
            for col, label in enumerate(labels, start=2):
                answer = q.get("answers", {}).get(label)
                if answer is None:
                    self.questions.setItem(row, col, QTableWidgetItem(""))
                    continue
                mark = "✓" if answer.get("correct") else "✗"
                item = QTableWidgetItem(f"{mark} {answer.get('prediction') or '(no answer)'}")
                item.setToolTip(answer.get("output", ""))
                item.setForeground(pg.mkColor("#15803d" if answer.get("correct") else "#b91c1c"))
                self.questions.setItem(row, col, item)
        header = self.questions.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.questions_count.setText(f"{len(shown)} of {len(self._questions)} questions")

    # ---- Internals
    def _refuse(self, text: str) -> bool:
        self.state_label.setText(text)
        self.sig_message.emit(text)
        return False

    def _set_state(self, state: str) -> None:
        self.state = state
        self.start_button.setEnabled(state == "idle")
        self.stop_button.setEnabled(state == "running")
        self.sig_state_changed.emit(state)

    def _models_changed(self) -> None:
        current = self.reference.currentData()
        self.reference.blockSignals(True)
        self.reference.clear()
        self.reference.addItem(AUTO_REFERENCE, "")
        for spec in self.models():
            self.reference.addItem(spec, spec)
        index = self.reference.findData(current)
        self.reference.setCurrentIndex(max(index, 0))
        self.reference.blockSignals(False)
        self.sig_models_changed.emit(self.models())

    def _clear_results(self) -> None:
        self._rows.clear()
        self._order.clear()
        self._questions = []
        self.reference_label = ""
        self._fill_table()
        self._fill_chart()
        self._fill_model_filter()
        self.refresh_questions()

    def _row(self, label: str) -> dict:
        if label not in self._rows:
            self._order.append(label)
            self._rows[label] = {"label": label}
        return self._rows[label]

    def _fill_table(self) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(self._order))
        for r, label in enumerate(self._order):
            row = self._rows[label]
            for c, (key, _) in enumerate(COLUMNS):
                value = row.get(key)
                text = format_cell(key, value) if key not in ("label", "status") else str(value or "")
                if key == "label" and row.get("reference"):
                    text += " (reference)"
                item = SortItem(text, value if key != "label" else label)
                if key == "status" and row.get("error"):
                    item.setToolTip(str(row["error"]))
                self.table.setItem(r, c, item)
        sampled = any(self._rows[label].get("pass_at_k") is not None for label in self._order)
        for c, (key, _) in enumerate(COLUMNS):
            if key in ("pass_at_k", "majority_accuracy"):
                self.table.setColumnHidden(c, not sampled)
        self.table.setSortingEnabled(True)

    def _update_status(self, label: str) -> None:
        status_col = [key for key, _ in COLUMNS].index("status")
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if item is not None and getattr(item, "key", None) == label:
                cell = self.table.item(r, status_col)
                if cell is not None:
                    cell.setText(self._rows[label].get("status", ""))
                return

    def _points(self) -> list[dict]:
        return [r for r in (self._rows[label] for label in self._order)
                if not r.get("error") and r.get("accuracy") is not None and r.get("params")]

    def _tip(self, x: float, y: float, data) -> str:
        return str(data)

    def _fill_chart(self) -> None:
        for label in self._labels:
            self.chart.removeItem(label)
        self._labels = []
        points = self._points()
        spots = []
        for r in points:
            x = math.log10(r["params"])
            color = "#f59e0b" if r.get("reference") or r["label"] == self.reference_label else "#3b82f6"
            tip = f"{r['label']}\n{format_params(int(r['params']))} parameters, accuracy {100 * r['accuracy']:.1f}%"
            spots.append({"pos": (x, 100 * r["accuracy"]), "data": tip, "brush": pg.mkBrush(color)})
            text = pg.TextItem(r["label"], anchor=(0, 1), color=self.palette().color(QPalette.ColorRole.Text))
            text.setPos(x, 100 * r["accuracy"])
            self.chart.addItem(text)
            self._labels.append(text)
        self.scatter.setData(spots)
        if points:
            xs = [math.log10(r["params"]) for r in points]
            self.chart.getAxis("bottom").setTicks([log_ticks(min(xs), max(xs)), []])
            self.chart.setXRange(min(xs) - 0.15, max(xs) + 0.35)
        reference = next((r for r in points if r.get("reference") or r["label"] == self.reference_label), None)
        self.reference_line.setVisible(reference is not None)
        if reference is not None:
            self.reference_line.setValue(100 * reference["accuracy"])

    def _fill_model_filter(self) -> None:
        current = self.filter_model.currentData()
        self.filter_model.blockSignals(True)
        self.filter_model.clear()
        self.filter_model.addItem("any model", "")
        for label in self._order:
            if label != self.reference_label:
                self.filter_model.addItem(label, label)
        self.filter_model.setCurrentIndex(max(self.filter_model.findData(current), 0))
        self.filter_model.blockSignals(False)

    def chart_points(self) -> list[tuple[str, float, float]]:
        """(label, parameters, accuracy %) of each point on the chart (for tests and screenshots)."""
        return [(r["label"], float(r["params"]), 100 * r["accuracy"]) for r in self._points()]


if __name__ == "__main__":  # a preview of the page alone
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    page = ComparePage()
    page.add_models(sys.argv[1:])
    page.resize(1200, 800)
    page.show()
    sys.exit(app.exec())
