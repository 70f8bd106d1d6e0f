"""The Data page: training (and eval) files, a preview of the parsed rows, the detected format, the
editable column mapping, and the report of rows that cannot be used (file, line, reason).

The file is parsed in a child process (gui/data_preview_process.py); the preview is a model/view table
(gui/text_table.py), so showing 500 rows costs the window the rows in view, and the skipped-rows table
shows at most :data:`BAD_ROWS_SHOWN` rows."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from distill_gui.core import config as cfg
from distill_gui.core.data import FORMAT_FIELDS
from distill_gui.gui.fields import ConfigBinder, add_fields, make_field_widget
from distill_gui.gui.plain_text import plain_tooltip
from distill_gui.gui.text_table import TextTable, TextTableModel

DATA_FILTER = "Data files (*.jsonl *.ndjson *.json *.csv *.tsv *.parquet *.txt);;All files (*)"
PREVIEW_CELL_CHARS = 300
BAD_ROWS_SHOWN = 1000
"""Skipped rows listed in the table (the count above it says how many there are)."""
PREVIEW_COLUMNS = ["Row", "Prompt", "Completion", "Reference"]


def _shown(text: str) -> str:
    text = text or ""
    shown = text if len(text) <= PREVIEW_CELL_CHARS else text[:PREVIEW_CELL_CHARS] + "…"
    return shown.replace("\n", " ⏎ ")


def _cell(text: str) -> QTableWidgetItem:
    text = text or ""
    item = QTableWidgetItem(_shown(text))
    item.setToolTip(plain_tooltip(text))
    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
    return item


def format_fields(fmt: str) -> list[str]:
    """The fields of a data format (required first), [] for auto or an unknown name."""
    required, optional = FORMAT_FIELDS.get(fmt, ((), ()))
    return [*required, *optional]


class ColumnsEditor(QTableWidget):
    """``data.columns``: which of your columns holds each field of the format (edit the right column)."""

    # ---- Signals
    sig_config_edited = Signal()
    """The user changed a column name."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, 2, parent)
        self.setObjectName("data.columns")
        self.setProperty("configKey", "data.columns")
        self.setToolTip(cfg.field_doc(cfg.DataConfig, "columns"))
        self.setHorizontalHeaderLabels(["Field", "Your column"])
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.verticalHeader().hide()
        self.setTabKeyNavigation(False)  # Tab moves on; arrows move between cells, Enter or F2 edits
        self.setMaximumHeight(110)
        self._mapping: dict[str, str] = {}
        self.itemChanged.connect(self.on_item_changed)

    # ---- Config value protocol (see fields.widget_value)
    def config_value(self) -> dict[str, str]:
        return {k: v for k, v in self._mapping.items() if v}

    def set_config_value(self, value: dict | None) -> None:
        self._mapping = {str(k): str(v) for k, v in (value or {}).items()}
        self._fill(list(self._fields_shown()))

    # ---- Public API
    def show_fields(self, fields: list[str], read: dict[str, str] | None = None) -> None:
        """Show ``fields`` of the format; ``read`` is the mapping the loader actually used."""
        for field, column in (read or {}).items():
            if field != column and field not in self._mapping:
                self._mapping[field] = column
        self._fill(fields)

    # ---- Slots
    @Slot(object)
    def on_item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() != 1:
            return
        field = self.item(item.row(), 0).text()
        column = item.text().strip()
        if column == field:
            column = ""
        if self._mapping.get(field, "") != column:
            self._mapping[field] = column
            self.sig_config_edited.emit()

    # ---- Internals
    def _fields_shown(self):
        for row in range(self.rowCount()):
            yield self.item(row, 0).text()

    def _fill(self, fields: list[str]) -> None:
        blocked = self.blockSignals(True)
        try:
            fields = list(dict.fromkeys([*fields, *self._mapping]))
            self.setRowCount(len(fields))
            for row, field in enumerate(fields):
                name = QTableWidgetItem(field)
                name.setFlags(name.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.setItem(row, 0, name)
                self.setItem(row, 1, QTableWidgetItem(self._mapping.get(field) or field))
        finally:
            self.blockSignals(blocked)


class DataPage(QWidget):
    """Files and settings of the data, with a live parse of the training file."""

    # ---- Signals
    sig_preview_requested = Signal()
    """The file, format or column mapping changed: parse the file again (the window debounces)."""

    def __init__(self, binder: ConfigBinder, parent: QWidget | None = None):
        super().__init__(parent)
        self.train_edit: QLineEdit = binder.add(make_field_widget(cfg.DataConfig, "train", "data.train"))
        self.train_edit.setPlaceholderText("A .jsonl/.json/.csv/.parquet/.txt file, a saved datasets folder, or a hub id")
        self.eval_edit: QLineEdit = binder.add(make_field_widget(cfg.DataConfig, "eval", "data.eval"))
        self.eval_edit.setPlaceholderText("(optional) evaluation file; otherwise a share of the training rows")
        train_button = QPushButton("Browse…")
        eval_button = QPushButton("Browse…")
        train_button.clicked.connect(self.on_browse_train)
        eval_button.clicked.connect(self.on_browse_eval)

        files = QFormLayout()
        row = QHBoxLayout()
        row.addWidget(self.train_edit, 1)
        row.addWidget(train_button)
        files.addRow("Training data", row)
        row = QHBoxLayout()
        row.addWidget(self.eval_edit, 1)
        row.addWidget(eval_button)
        files.addRow("Eval data", row)

        settings_box = QGroupBox("Reading and tokenizing")
        left, right = QFormLayout(), QFormLayout()
        add_fields(left, binder, cfg.DataConfig, "data", ["format", "eval_fraction", "max_length", "max_bad_fraction"])
        add_fields(right, binder, cfg.DataConfig, "data", ["chat_template", "system_prompt", "seed"])
        settings_row = QHBoxLayout(settings_box)
        settings_row.addLayout(left, 1)
        settings_row.addLayout(right, 1)

        self.format_combo = binder.widget("data.format")
        self.detected = QLabel("No data chosen.")
        self.detected.setObjectName("detected_format")
        self.detected.setWordWrap(True)
        self.columns = binder.add(ColumnsEditor())
        mapping_box = QGroupBox("Format and columns")
        mapping = QVBoxLayout(mapping_box)
        mapping.addWidget(self.detected)
        mapping.addWidget(self.columns)

        self.preview_model = TextTableModel(PREVIEW_COLUMNS, tip_format=plain_tooltip, parent=self)
        self.preview = TextTable(self.preview_model)  # Tab moves on; arrows move between cells
        self.preview.setObjectName("preview")
        header = self.preview.horizontalHeader()
        # Row and Reference are sized to their longest text per file (fit_columns), Prompt and Completion share the
        # rest: ResizeToContents would measure every row on every change.
        for column, mode in enumerate((QHeaderView.ResizeMode.Interactive, QHeaderView.ResizeMode.Stretch,
                                       QHeaderView.ResizeMode.Stretch, QHeaderView.ResizeMode.Interactive)):
            header.setSectionResizeMode(column, mode)
        self.bad_rows = QTableWidget(0, 3)
        self.bad_rows.setObjectName("bad_rows")
        self.bad_rows.setHorizontalHeaderLabels(["File", "Line", "Reason"])
        self.bad_rows.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.bad_rows.horizontalHeader().setStretchLastSection(True)
        self.bad_rows.verticalHeader().hide()
        self.bad_rows.setTabKeyNavigation(False)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.preview, "Preview")
        self.tabs.addTab(self.bad_rows, "Skipped rows")

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addLayout(files)
        top_layout.addWidget(settings_box)
        top_layout.addWidget(mapping_box)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(top)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        binder.sig_edited.connect(self.on_config_edited)

    # ---- Results of the background parse
    def loading(self, path: str) -> None:
        self.detected.setText(f"Reading {Path(path).name}…")

    def show_loaded(self, examples: list, report, count: int) -> None:
        self.columns.show_fields(format_fields(report.format), report.columns)
        bad = len(report.bad_rows)
        text = (f"<b>Format: {report.format or '?'}</b> — {report.total:,} rows, {report.kept:,} usable"
                + (f", <b>{bad:,} skipped</b> ({report.bad_fraction:.0%}; see Skipped rows)" if bad else ""))
        if report.notes:
            text += "<br>" + "<br>".join(f"Note: {note}" for note in report.notes)
        self.detected.setText(text)
        texts = []
        for example in examples:
            prompt = example.prompt + (f"\n\n{example.input}" if getattr(example, "input", "") else "")
            texts.append([example.source, prompt, example.completion, example.reference or ""])
        self.preview_model.set_rows([[_shown(t) for t in row] for row in texts], texts)
        self.preview.fit_columns([0, 3])
        shown = report.bad_rows[:BAD_ROWS_SHOWN]
        self.bad_rows.setRowCount(len(shown) + (1 if bad > len(shown) else 0))
        for row, item in enumerate(shown):
            self.bad_rows.setItem(row, 0, _cell(item.file))
            self.bad_rows.setItem(row, 1, _cell(f"{item.unit} {item.line}"))
            self.bad_rows.setItem(row, 2, _cell(item.reason))
        if bad > len(shown):
            self.bad_rows.setItem(len(shown), 2, _cell(f"… and {bad - len(shown):,} more skipped rows (not listed here)"))
        self.bad_rows.resizeColumnsToContents()
        self.tabs.setTabText(1, f"Skipped rows ({bad})")

    def show_failed(self, message: str) -> None:
        self.detected.setText(f"<b>Cannot use this data:</b> {message}")
        self.preview_model.set_rows([])
        self.bad_rows.setRowCount(0)
        self.tabs.setTabText(1, "Skipped rows")

    def show_empty(self) -> None:
        self.detected.setText("No data chosen.")
        self.preview_model.set_rows([])
        self.bad_rows.setRowCount(0)

    # ---- Slots
    @Slot()
    def on_browse_train(self) -> None:
        self._browse(self.train_edit, "Choose the training data")

    @Slot()
    def on_browse_eval(self) -> None:
        self._browse(self.eval_edit, "Choose the evaluation data")

    @Slot(str)
    def on_config_edited(self, key: str) -> None:
        if key == "data.format":
            self.columns.show_fields(format_fields(self.format_combo.currentText()))
        if key in ("data.train", "data.format", "data.columns"):
            self.sig_preview_requested.emit()

    def _browse(self, edit: QLineEdit, title: str) -> None:
        start = str(Path(edit.text()).parent) if edit.text() else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, title, start, DATA_FILTER)
        if path:
            edit.setText(path)
            edit.textEdited.emit(path)
