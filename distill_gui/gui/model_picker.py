"""The model picker: the models already on this machine (Hugging Face cache, Ollama, LM Studio, recent
folders, this app's runs), searchable, with architecture, parameters, size, quantization and licence;
and a file dialog that shows hidden folders. Listing runs in a worker thread (core.model_discovery)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from distill_gui.gui.plain_text import plain_tooltip
from distill_gui.gui.workers import start_in_thread, stop_thread

COLUMNS = ("Name", "Where", "Architecture", "Parameters", "Size", "Quantization", "Licence", "Revision")


class DiscoveryWorker(QObject):
    """Lists the models on this machine (file reads only) in its own thread."""

    # ---- Signals
    sig_found = Signal(list)
    """The FoundModel list."""

    @Slot(list, str)
    def discover(self, recent: list, runs_root: str) -> None:
        from distill_gui.core.model_discovery import discover_models

        self.sig_found.emit(discover_models([str(p) for p in recent], runs_root or None))


class ModelPicker(QDialog):
    """Choose a model found on this machine, or any folder / GGUF file (hidden folders shown)."""

    # ---- Signals
    sig_discover = Signal(list, str)
    """Ask the worker to list the models (recent paths, runs folder)."""

    def __init__(self, role: str, recent: list[str], runs_root: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Choose the {role}")
        self.setObjectName("model_picker")
        self.resize(1000, 520)
        self.models: list = []
        self.chosen: tuple[str, str] | None = None
        """(path, gguf_file) once the user chose a model."""

        self.search = QLineEdit()
        self.search.setObjectName("model_search")
        self.search.setPlaceholderText("Search by name, architecture, quantization, licence or path…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.on_search)
        self.state = QLabel("Looking for models on this machine…")
        self.state.setObjectName("model_picker_state")
        self.state.setTextFormat(Qt.TextFormat.PlainText)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("found_models")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setTabKeyNavigation(False)
        self.table.setSortingEnabled(True)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.cellDoubleClicked.connect(self.on_double_clicked)
        self.table.itemSelectionChanged.connect(self.on_selection_changed)

        folder_button = QPushButton("Other folder…")
        folder_button.setToolTip("Any model folder, hidden folders included")
        folder_button.clicked.connect(self.on_other_folder)
        gguf_button = QPushButton("Other GGUF file…")
        gguf_button.setToolTip("Any .gguf file, hidden folders included")
        gguf_button.clicked.connect(self.on_other_gguf)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Use this model")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
        self.buttons.accepted.connect(self.on_accept)
        self.buttons.rejected.connect(self.reject)
        bottom = QHBoxLayout()
        bottom.addWidget(folder_button)
        bottom.addWidget(gguf_button)
        bottom.addStretch(1)
        bottom.addWidget(self.buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(self.search)
        layout.addWidget(self.state)
        layout.addWidget(self.table, 1)
        layout.addLayout(bottom)

        self.worker = DiscoveryWorker()
        self.thread_ = start_in_thread(self.worker, self, "model-discovery")
        self.sig_discover.connect(self.worker.discover)
        self.worker.sig_found.connect(self.on_found)
        self.finished.connect(self.on_finished)
        self.sig_discover.emit(list(recent), str(runs_root))

    # ---- Slots
    @Slot(list)
    def on_found(self, models: list) -> None:
        self.models = models
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(models))
        for row, model in enumerate(models):
            values = (model.name, model.where, model.architecture, model.parameters, model.size, model.quantization,
                      model.licence, model.revision)
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, row)
                if col == 4:
                    item.setData(Qt.ItemDataRole.UserRole + 1, model.size_bytes)
                item.setToolTip(plain_tooltip(str(Path(model.path) / model.gguf_file) if model.gguf_file else model.path))
                self.table.setItem(row, col, item)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        places = sorted({m.where for m in models})
        self.state.setText(f"{len(models)} model{'s' if len(models) != 1 else ''} found" + (f" ({', '.join(places)})" if places else
                           ": none in the Hugging Face cache, Ollama, LM Studio, recent folders or this app's runs"))
        self.on_search(self.search.text())

    @Slot(str)
    def on_search(self, text: str) -> None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            model = self.models[item.data(Qt.ItemDataRole.UserRole)] if item is not None else None
            self.table.setRowHidden(row, model is None or not model.matches(text))

    @Slot()
    def on_selection_changed(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(self.selected() is not None)

    @Slot(int, int)
    def on_double_clicked(self, _row: int, _col: int) -> None:
        self.on_accept()

    @Slot()
    def on_accept(self) -> None:
        model = self.selected()
        if model is not None:
            self.chosen = (model.path, model.gguf_file)
            self.accept()

    @Slot()
    def on_other_folder(self) -> None:
        dialog = QFileDialog(self, "Choose a model folder", str(Path.home()))
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.setFilter(dialog.filter() | dialog.filter().Hidden)
        if dialog.exec() and dialog.selectedFiles():
            self.chosen = (dialog.selectedFiles()[0], "")
            self.accept()

    @Slot()
    def on_other_gguf(self) -> None:
        dialog = QFileDialog(self, "Choose a GGUF file", str(Path.home()), "GGUF models (*.gguf);;All files (*)")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.setFilter(dialog.filter() | dialog.filter().Hidden)
        if dialog.exec() and dialog.selectedFiles():
            self.chosen = (dialog.selectedFiles()[0], "")
            self.accept()

    @Slot(int)
    def on_finished(self, _result: int) -> None:
        stop_thread(self.thread_)

    # ---- Public API
    def selected(self):
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return self.models[item.data(Qt.ItemDataRole.UserRole)] if item is not None else None

    def select_by_name(self, name: str) -> bool:
        """Select the first visible row whose name is ``name`` (for tests and keyboard users)."""
        for row in range(self.table.rowCount()):
            if not self.table.isRowHidden(row) and self.table.item(row, 0).text() == name:
                self.table.selectRow(row)
                return True
        return False
