"""A dialog that lists the runs with a trained or checkpointed student, to check the ones to compare."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from distill_gui.core.runs import list_runs


class RunPicker(QDialog):
    """A checkbox list of the runs that have a checkpoint to compare."""

    def __init__(self, root: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Add runs to the comparison")
        self.list = QListWidget()
        self.list.setObjectName("run_picker")
        for run in list_runs(root):
            point = run.final_model() or run.latest_checkpoint()
            if point is None:
                continue
            state = run.status().get("state", "?")
            item = QListWidgetItem(f"{run.name}  ({state}, {point.name})")
            item.setData(Qt.ItemDataRole.UserRole, str(run.path))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.list.addItem(item)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Runs in {root} with a trained or checkpointed student:"))
        layout.addWidget(self.list)
        layout.addWidget(buttons)

    def checked(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())
                if self.list.item(i).checkState() == Qt.CheckState.Checked]
