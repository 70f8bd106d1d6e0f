"""A read-only table of text for listings that can be long (runs, previewed data rows).

A QTableWidget makes one item per cell, on the GUI thread, and a column in ResizeToContents mode
re-measures every row on every cell set: refilling a 500-row preview took seconds. :class:`TextTableModel`
holds plain lists and answers only for the cells the view draws; :meth:`TextTable.fit_columns` sizes
columns from the longest text (by characters) instead of asking the view to measure each cell.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, Qt
from PySide6.QtWidgets import QAbstractItemView, QTableView, QWidget

_DISPLAY, _TOOLTIP = int(Qt.ItemDataRole.DisplayRole.value), int(Qt.ItemDataRole.ToolTipRole.value)
MAX_COLUMN_PX = 420


class TextTableModel(QAbstractTableModel):
    """Rows of text cells; a cell's tooltip is its own text, or made on demand from ``tips`` by ``tip_format``."""

    def __init__(self, headers: list[str], tip_format: Callable[[str], str] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.headers = list(headers)
        self.cells: list[list[str]] = []
        self.tips: list[list[str]] | None = None
        self._tip_format = tip_format

    def set_rows(self, cells: list[list[str]], tips: list[list[str]] | None = None) -> None:
        """Show these rows (each a list of one text per column); ``tips`` the full texts behind the tooltips."""
        self.beginResetModel()
        self.cells, self.tips = cells, tips
        self.endResetModel()

    # ---- QAbstractTableModel
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.cells)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.headers)

    def data(self, index: QModelIndex, role: int = _DISPLAY):
        # Called for every role of every cell drawn: kept to two comparisons and a lookup.
        if role == _DISPLAY:
            return self.cells[index.row()][index.column()]
        if role == _TOOLTIP:
            text = (self.tips or self.cells)[index.row()][index.column()]
            return self._tip_format(text) if self._tip_format is not None else text
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = _DISPLAY):  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == _DISPLAY and 0 <= section < len(self.headers):
            return self.headers[section]
        return None


class TextTable(QTableView):
    """A read-only view of a :class:`TextTableModel`: rows selected whole, Tab moves on (arrows move inside)."""

    def __init__(self, model: TextTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setModel(model)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setWordWrap(False)
        self.setTabKeyNavigation(False)
        self.verticalHeader().hide()

    def rowCount(self) -> int:  # noqa: N802 - as QTableWidget names it
        return self.model().rowCount()

    def fit_columns(self, columns: list[int], max_px: int = MAX_COLUMN_PX) -> None:
        """Each of ``columns`` as wide as its longest text (by characters, measured once) and its title."""
        model = self.model()
        assert isinstance(model, TextTableModel)
        metrics = self.fontMetrics()
        header = self.horizontalHeader()
        padding = 2 * metrics.averageCharWidth() + 8  # the cell's margins (QStyle's metrics cost a first use of ~80 ms)
        for col in columns:
            longest = max((row[col] for row in model.cells), key=len, default="")
            width = max(metrics.horizontalAdvance(longest), header.fontMetrics().horizontalAdvance(model.headers[col]) + 8)
            header.resizeSection(col, min(max_px, width + padding))
