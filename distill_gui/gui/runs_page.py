"""The Runs page: every run folder under the runs root with its state; open one to rebuild its plots
and generations from disk, or resume a stopped or crashed run from its latest checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from distill_gui.core.runs import RunDir, list_runs

REFRESH_MS = 3000
COLUMNS = ["Run", "State", "Step", "Method", "Student", "Updated", "Message"]


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

    def __init__(self, root: str | Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.root = Path(root)
        self._runs: list[RunDir] = []
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

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("runs")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self.on_selection_changed)
        self.table.cellDoubleClicked.connect(self.on_double_clicked)

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
        return list(self._runs)

    def select_run(self, run_dir: str | Path) -> bool:
        target = Path(run_dir).resolve()
        for row, run in enumerate(self._runs):
            if run.path.resolve() == target:
                self.table.selectRow(row)
                return True
        return False

    def selected_run(self) -> RunDir | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        row = rows[0].row()
        return self._runs[row] if row < len(self._runs) else None

    @Slot()
    def refresh(self) -> None:
        selected = self.selected_run()
        self._runs = list_runs(self.root)
        self.table.setRowCount(len(self._runs))
        for row, run in enumerate(self._runs):
            status = run.status()
            method, student = "", ""
            try:
                config = run.load_config()
                method, student = config.method.kind, Path(config.student.path).name or config.student.path
            except Exception:  # noqa: BLE001 - a damaged config still lists the run
                method = "?"
            step = status.get("step") or 0
            total = status.get("total_steps")
            updated = status.get("updated_at")
            values = [
                run.name,
                status.get("state", "?"),
                f"{step}/{total}" if total else str(step),
                method,
                student,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(updated)) if updated else "",
                status.get("message") or "",
            ]
            for col, value in enumerate(values):
                item = QTableWidgetItem(str(value))
                item.setToolTip(str(run.path) if col == 0 else str(value))
                self.table.setItem(row, col, item)
        if selected is not None:
            self.select_run(selected.path)
        self.on_selection_changed()

    # ---- Slots
    @Slot()
    def on_selection_changed(self) -> None:
        run = self.selected_run()
        self.open_button.setEnabled(run is not None)
        self.folder_button.setEnabled(run is not None)
        resumable = False
        if run is not None:
            status = run.status()
            resumable = status.get("state") not in ("running", "paused", "finished") and run.can_resume()
            checkpoint = run.latest_checkpoint()
            final = run.final_model()
            parts = [f"{run.path}"]
            if final is not None:
                parts.append(f"trained student: {final}")
            elif checkpoint is not None:
                parts.append(f"latest checkpoint: {checkpoint.name}")
            self.detail.setText(" — ".join(parts))
        else:
            self.detail.setText(f"{len(self._runs)} run{'s' if len(self._runs) != 1 else ''}")
        self.resume_button.setEnabled(resumable)

    @Slot(int, int)
    def on_double_clicked(self, row: int, _column: int) -> None:
        if row < len(self._runs):
            self.sig_open.emit(str(self._runs[row].path))

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
        self.sig_compare.emit([str(self._runs[row].path) for row in rows if row < len(self._runs)])

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
