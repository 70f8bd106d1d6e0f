"""Help menu windows: the guide (the README's sections), the keyboard shortcuts, and About (the version)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QListWidget,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

# Keys handled by one widget rather than by a menu action.
WIDGET_KEYS = (
    ("Ctrl+Return in “Ask both models”", "Ask both models the question (the Start shortcut does not fire there)"),
    ("Return on the runs list", "Open the selected run"),
    ("Tab / Shift+Tab", "Next / previous control (tables and text boxes pass it on; arrows move inside them)"),
)


def readme_text() -> str:
    """The README: the checkout's README.md (a source install), else the installed package's metadata."""
    import importlib.metadata

    path = Path(__file__).resolve().parents[2] / "README.md"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    try:
        meta = importlib.metadata.metadata("distill-gui")
        return str(meta.get("Description") or meta.get_payload() or "") or "The README is not installed with this copy."
    except importlib.metadata.PackageNotFoundError:
        return "The README is not installed with this copy."


def sections(markdown: str) -> list[tuple[str, str]]:
    """(title, text) for each level-2 section of ``markdown`` (the part before the first is "Overview")."""
    out: list[tuple[str, list[str]]] = [("Overview", [])]
    for line in markdown.splitlines():
        if line.startswith("## "):
            out.append((line[3:].strip(), [line]))
        else:
            out[-1][1].append(line)
    return [(title, "\n".join(lines)) for title, lines in out if "\n".join(lines).strip()]


class GuideDialog(QDialog):
    """Help → Guide: the README's sections, one at a time."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("distill-gui guide")
        self.setObjectName("guide")
        self.resize(900, 640)
        self.sections = sections(readme_text())
        self.index = QListWidget()
        self.index.setObjectName("guide_sections")
        self.index.addItems([title for title, _ in self.sections])
        self.text = QTextBrowser()
        self.text.setObjectName("guide_text")
        self.text.setOpenExternalLinks(True)
        self.index.currentRowChanged.connect(self.on_section)
        splitter = QSplitter()
        splitter.addWidget(self.index)
        splitter.addWidget(self.text)
        splitter.setSizes([220, 680])
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        layout.addWidget(buttons)
        self.index.setCurrentRow(0)

    def on_section(self, row: int) -> None:
        if 0 <= row < len(self.sections):
            self.text.setMarkdown(self.sections[row][1])


class ShortcutsDialog(QDialog):
    """Help → Keyboard shortcuts: every menu action with a shortcut, and the keys single widgets handle."""

    def __init__(self, actions: list[QAction], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.setObjectName("shortcuts")
        rows = [(a.shortcut().toString(), a.text().replace("&", "")) for a in actions if not a.shortcut().isEmpty()]
        rows += list(WIDGET_KEYS)
        self.table = QTableWidget(len(rows), 2)
        self.table.setObjectName("shortcuts_table")
        self.table.setHorizontalHeaderLabels(["Keys", "Does"])
        self.table.verticalHeader().hide()
        self.table.setTabKeyNavigation(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, (keys, does) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(keys))
            self.table.setItem(row, 1, QTableWidgetItem(does))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(620, 420)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
