"""The Runs page: every run folder under the runs root with its state; open one to rebuild its plots
and generations from disk, or resume a stopped or crashed run from its latest checkpoint.

The folders are read by a worker thread (:class:`RunListWorker`, cached by modification time, reading only the
fields the list shows), so hundreds of runs never stall the window; the table is a view of
:class:`~distill_gui.gui.text_table.TextTableModel`, so a new listing costs the window the rows it shows, not one item per cell."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QModelIndex, QObject, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from distill_gui.core.run_listing import RunLister, RunSummary
from distill_gui.core.runs import RunDir
from distill_gui.gui.text_table import TextTable, TextTableModel
from distill_gui.gui.workers import start_in_thread, stop_thread

REFRESH_MS = 3000
COLUMNS = ["Run", "State", "Step", "Method", "Student", "Updated", "Message"]


class RunListWorker(QObject):
    """Lists run folders off the GUI thread (summaries cached by modification time)."""

    # ---- Signals
    sig_listed = Signal(int, str, list)
    """(request id, root, [RunSummary]) for a listing request."""

    def __init__(self) -> None:
        super().__init__()
        self.lister = RunLister()
        self.latest = 0

    @Slot(int, str)
    def list_runs(self, request_id: int, root: str) -> None:
        if request_id < self.latest:
            return  # a newer request is queued
        self.sig_listed.emit(request_id, root, self.lister.summaries(root))


def _cells(summary: RunSummary) -> list[str]:
    step = f"{summary.step}/{summary.total_steps}" if summary.total_steps else str(summary.step)
    return [summary.name, summary.state, step, summary.method, summary.student, summary.updated, summary.message]


class RunsPage(QWidget):
    """The run folders of the runs root, newest first."""

    # ---- Signals
    sig_open = Signal(str)
    """Show this run folder (plots, generations, log) from disk."""
    sig_resume = Signal(str)
    """Resume this run folder from its latest checkpoint."""
    sig_root_changed = Signal(str)
    """The user chose another runs folder."""
    sig_compare = Signal(list)
    """Compare these run folders (the selected rows) on the Compare page."""
    sig_list_requested = Signal(int, str)
    """(request id, root): asks the worker for a listing."""
    sig_listed = Signal()
    """The table shows a new listing."""

    def __init__(self, root: str | Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.root = Path(root)
        self._request = 0
        self._pending_select: Path | None = None
        self.worker = RunListWorker()
        self.sig_list_requested.connect(self.worker.list_runs)
        self.worker.sig_listed.connect(self.on_listed)
        self.worker_thread = start_in_thread(self.worker, self, "run-lister")
        self.root_label = QLabel()
        self.root_label.setObjectName("runs_root")
        self.root_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        change_button = QPushButton("Change…")
        change_button.setToolTip("Choose the folder new runs go to and runs are listed from")
        refresh_button = QPushButton("Refresh")
        change_button.clicked.connect(self.on_change_root)
        refresh_button.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(QLabel("Runs folder:"))
        top.addWidget(self.root_label, 1)
        top.addWidget(refresh_button)
        top.addWidget(change_button)

        self._runs: list[RunSummary] = []
        self.model = TextTableModel(COLUMNS, parent=self)
        self.table = TextTable(self.model)
        self.table.setObjectName("runs")
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        # Sized to the longest text of each column once per new listing (fit_columns): asking the view to
        # measure its cells would call the model for every cell and role, a stall that grows with the runs.
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.selectionModel().selectionChanged.connect(self.on_selection_changed)
        self.table.doubleClicked.connect(self.on_double_clicked)

        self.open_button = QPushButton("Open")
        self.open_button.setObjectName("open_run")
        self.open_button.setToolTip("Show this run's plots, generations and log")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setObjectName("resume_run")
        self.resume_button.setToolTip("Continue this stopped or crashed run from its latest checkpoint")
        self.folder_button = QPushButton("Show folder")
        self.folder_button.setToolTip("Open the run folder in the file manager")
        self.open_button.clicked.connect(self.on_open_clicked)
        self.resume_button.clicked.connect(self.on_resume_clicked)
        self.folder_button.clicked.connect(self.on_folder_clicked)
        self.detail = QLabel("")
        self.detail.setObjectName("run_detail")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.detail, 1)
        buttons.addWidget(self.folder_button)
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.open_button)
        self.compare_button = QPushButton("Compare selected")
        self.compare_button.setObjectName("compare_runs")
        self.compare_button.clicked.connect(self.on_compare_clicked)
        buttons.addWidget(self.compare_button)
        self.export_button = QPushButton("Export…")
        self.export_button.setObjectName("export_run")
        self.export_button.setToolTip("Export this run's student: Hugging Face folder, GGUF file or Ollama import")
        self.export_button.clicked.connect(self.on_export_clicked)
        buttons.addWidget(self.export_button)
        from distill_gui.gui.tensorboard_launcher import TensorBoardLauncher

        self.tensorboard = TensorBoardLauncher(self)
        self.tensorboard_button = QPushButton("TensorBoard")
        self.tensorboard_button.setObjectName("tensorboard_run")
        self.tensorboard_button.setToolTip("Open TensorBoard on this run (runs with training.report_to: [tensorboard])")
        self.tensorboard_button.setVisible(TensorBoardLauncher.available())
        self.tensorboard_button.clicked.connect(self.on_tensorboard_clicked)
        self.tensorboard.sig_failed.connect(self.on_tensorboard_failed)
        buttons.addWidget(self.tensorboard_button)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.set_root(self.root)

    # ---- Public API
    def set_root(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root_label.setText(str(self.root))
        self.refresh()

    def runs(self) -> list[RunDir]:
        return [RunDir(summary.path) for summary in self._runs]

    def select_run(self, run_dir: str | Path) -> bool:
        """Select a run's row; one not listed yet is selected when the listing that holds it arrives."""
        target = Path(run_dir).resolve()
        for row, summary in enumerate(self._runs):
            if Path(summary.path).resolve() == target:
                self.table.selectRow(row)
                self._pending_select = None
                return True
        self._pending_select = target
        return False

    def selected_summary(self) -> RunSummary | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        row = rows[0].row()
        return self._runs[row] if row < len(self._runs) else None

    def selected_run(self) -> RunDir | None:
        summary = self.selected_summary()
        return RunDir(summary.path) if summary is not None else None

    @Slot()
    def refresh(self) -> None:
        """Ask the worker for a fresh listing (the table updates when it arrives)."""
        self._request += 1
        self.worker.latest = self._request
        self.sig_list_requested.emit(self._request, str(self.root))

    def shutdown(self) -> None:
        """End the lister thread (the window closes)."""
        self.timer.stop()
        stop_thread(self.worker_thread)

    @Slot(int, str, list)
    def on_listed(self, request_id: int, root: str, summaries: list) -> None:
        if request_id != self._request or Path(root) != self.root:
            return  # an older listing, or another folder's
        selected = self.selected_summary()
        if summaries != self._runs:
            self._runs = list(summaries)
            cells = [_cells(summary) for summary in self._runs]
            self.model.set_rows(cells, [[summary.path, *row[1:]] for summary, row in zip(self._runs, cells)])
            self.table.fit_columns(list(range(len(COLUMNS) - 1)))
        target = self._pending_select or (Path(selected.path) if selected is not None else None)
        if target is not None:
            self.select_run(target)
        self.on_selection_changed()
        self.sig_listed.emit()

    # ---- Slots
    @Slot()
    def on_selection_changed(self) -> None:
        summary = self.selected_summary()
        self.open_button.setEnabled(summary is not None)
        self.folder_button.setEnabled(summary is not None)
        if summary is not None:
            self.detail.setText(summary.detail)
        else:
            self.detail.setText(f"{len(self._runs)} run{'s' if len(self._runs) != 1 else ''}")
        self.resume_button.setEnabled(summary is not None and summary.resumable)

    @Slot(QModelIndex)
    def on_double_clicked(self, index: QModelIndex) -> None:
        if index.isValid() and index.row() < len(self._runs):
            self.sig_open.emit(self._runs[index.row()].path)

    @Slot()
    def on_open_clicked(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.sig_open.emit(str(run.path))

    @Slot()
    def on_resume_clicked(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.sig_resume.emit(str(run.path))

    @Slot()
    def on_compare_clicked(self) -> None:
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        self.sig_compare.emit([self._runs[row].path for row in rows if row < len(self._runs)])

    @Slot()
    def on_export_clicked(self) -> None:
        run = self.selected_run()
        if run is not None:
            from distill_gui.gui.export_dialog import open_export_dialog

            open_export_dialog(str(run.path), self)

    @Slot()
    def on_tensorboard_clicked(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.tensorboard.open(str(run.path))

    @Slot(str, str)
    def on_tensorboard_failed(self, _run_path: str, reason: str) -> None:
        self.detail.setText(reason)

    @Slot()
    def on_folder_clicked(self) -> None:
        run = self.selected_run()
        if run is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(run.path)))

    @Slot()
    def on_change_root(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose the runs folder", str(self.root))
        if path:
            self.set_root(path)
            self.sig_root_changed.emit(path)

    # ---- Qt events
    def showEvent(self, event) -> None:  # noqa: N802
        self.refresh()
        self.timer.start()
        super().showEvent(event)

    def hideEvent(self, event) -> None:  # noqa: N802
        self.timer.stop()
        super().hideEvent(event)
