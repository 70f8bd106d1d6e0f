"""Live training plots: growing buffers and pyqtgraph curves redrawn by a timer, not per event."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QVBoxLayout, QWidget

from distill_gui.core.events import EvalLogged, StepLogged


class SeriesBuffer:
    """x/y points in numpy arrays that double when full (appending stays O(1) amortised)."""

    def __init__(self, capacity: int = 1024):
        self._x = np.empty(capacity, dtype=np.float64)
        self._y = np.empty(capacity, dtype=np.float64)
        self.size = 0

    def append(self, x: float, y: float) -> None:
        if self.size == len(self._x):
            self._x = np.resize(self._x, 2 * len(self._x))
            self._y = np.resize(self._y, 2 * len(self._y))
        self._x[self.size] = x
        self._y[self.size] = y
        self.size += 1

    def clear(self) -> None:
        self.size = 0

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.size]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.size]


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


# (plot title, [(series key, legend name)])
PLOTS = [
    ("Loss", [("loss", "total"), ("kd_loss", "KD"), ("ce_loss", "CE"), ("eval_loss", "eval")]),
    ("Learning rate", [("learning_rate", "lr")]),
    ("Grad norm", [("grad_norm", "grad norm")]),
    ("Tokens/s", [("tokens_per_s", "tokens/s")]),
]


class MetricsPlots(QWidget):
    """Four plots (loss, learning rate, grad norm, tokens/s) fed with StepLogged / EvalLogged events.

    ``add_event`` only appends to buffers; ``refresh`` (called by the page's ~10 Hz timer) pushes the
    buffers that changed into their curves. Curves downsample by peak and clip to the view, so
    hundreds of thousands of points stay readable and fast.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.buffers: dict[str, SeriesBuffer] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.plots: dict[str, pg.PlotItem] = {}
        self._dirty: set[str] = set()
        self._turn = 0
        self.graphics = pg.GraphicsLayoutWidget(self)
        self.graphics.setObjectName("plots")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        for i, (title, series) in enumerate(PLOTS):
            plot = self.graphics.addPlot(row=i // 2, col=i % 2, title=title)
            plot.setDownsampling(auto=True, mode="peak")
            plot.setClipToView(True)
            plot.setLabel("bottom", "step")
            if len(series) > 1:
                plot.addLegend(offset=(-10, 10))
            self.plots[title] = plot
            for key, name in series:
                curve = plot.plot(name=name)
                if key == "eval_loss":
                    curve.setSymbol("o")
                    curve.setSymbolSize(6)
                self.curves[key] = curve
                self.buffers[key] = SeriesBuffer()
        self.apply_palette()

    # ---- Public API
    def add_event(self, event) -> None:
        """Append the values of a StepLogged or EvalLogged event (others are ignored)."""
        if isinstance(event, StepLogged):
            for key in ("loss", "kd_loss", "ce_loss", "learning_rate", "grad_norm", "tokens_per_s"):
                self._add(key, event.step, getattr(event, key))
        elif isinstance(event, EvalLogged):
            self._add("eval_loss", event.step, event.metrics.get("eval_loss", event.metrics.get("loss")))

    def add_record(self, record: dict) -> None:
        """Append a metrics.jsonl record (the dict form of StepLogged / EvalLogged)."""
        kind = record.get("event")
        step = record.get("step")
        if step is None:
            return
        if kind == "StepLogged":
            for key in ("loss", "kd_loss", "ce_loss", "learning_rate", "grad_norm", "tokens_per_s"):
                self._add(key, step, record.get(key))
        elif kind == "EvalLogged":
            metrics = record.get("metrics") or {}
            self._add("eval_loss", step, metrics.get("eval_loss", metrics.get("loss")))

    def clear(self) -> None:
        for key, buffer in self.buffers.items():
            buffer.clear()
            self._dirty.add(key)
        self.refresh()
        for plot in self.plots.values():
            plot.enableAutoRange()

    def refresh(self) -> None:
        """Push every changed buffer into its curve (cheap when nothing changed)."""
        for key in self._dirty:
            buffer = self.buffers[key]
            self.curves[key].setData(buffer.x, buffer.y)
        self._dirty.clear()

    def refresh_next(self) -> None:
        """Push the changed buffers of one plot, the next in turn that has any (for the live timer).

        Redrawing one plot per tick keeps each repaint (axes, text, curves) short, so the event
        loop never stalls for the time of redrawing all four at once.
        """
        titles = [title for title, _ in PLOTS]
        for offset in range(len(titles)):
            index = (self._turn + offset) % len(titles)
            keys = [key for key, _ in PLOTS[index][1] if key in self._dirty]
            if keys:
                for key in keys:
                    buffer = self.buffers[key]
                    self.curves[key].setData(buffer.x, buffer.y)
                    self._dirty.discard(key)
                self._turn = (index + 1) % len(titles)
                return

    def point_count(self, key: str) -> int:
        """Points a curve holds (what was last drawn)."""
        x, _ = self.curves[key].getOriginalDataset()
        return 0 if x is None else len(x)

    def apply_palette(self) -> None:
        """Colours from the application palette (light or dark), none hard-coded."""
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Base)
        foreground = palette.color(QPalette.ColorRole.Text)
        accent = palette.color(QPalette.ColorRole.Highlight)
        self.graphics.setBackground(background)
        for plot in self.plots.values():
            plot.setTitle(plot.titleLabel.text, color=foreground)
            for name in ("left", "bottom"):
                axis = plot.getAxis(name)
                axis.setPen(pg.mkPen(foreground))
                axis.setTextPen(pg.mkPen(foreground))
            if plot.legend is not None:
                plot.legend.setLabelTextColor(foreground)
        hue, sat, val, _ = accent.getHsv()
        sat = max(sat, 120)
        val = max(val, 160)
        shifts = {"loss": 0, "kd_loss": 120, "ce_loss": 240, "eval_loss": 60, "learning_rate": 0, "grad_norm": 0, "tokens_per_s": 0}
        for key, curve in self.curves.items():
            color = QColor.fromHsv((max(hue, 0) + shifts[key]) % 360, sat, val)
            curve.setPen(pg.mkPen(color, width=2 if key == "loss" else 1.5))
            if key == "eval_loss":
                curve.setSymbolBrush(pg.mkBrush(color))
                curve.setSymbolPen(pg.mkPen(color))

    # ---- Qt events
    def changeEvent(self, event: QEvent) -> None:  # noqa: N802
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self.apply_palette()
        super().changeEvent(event)

    # ---- Internals
    def _add(self, key: str, step, value) -> None:
        if _finite(value):
            self.buffers[key].append(float(step), float(value))
            self._dirty.add(key)
