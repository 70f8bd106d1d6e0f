"""Live training plots built from the metrics a method declares: growing buffers, curves redrawn by a timer."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QVBoxLayout, QWidget

from distill_gui.core import methods
from distill_gui.core.events import EvalLogged, RunStarted, StepLogged, step_metrics
from distill_gui.core.methods import STANDARD_METRICS, MetricSpec


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


def _known_specs() -> dict[str, MetricSpec]:
    """Every metric a registered method declares, by key (the standard ones first)."""
    specs = {spec.key: spec for spec in STANDARD_METRICS}
    for method in methods.all_methods():
        for spec in method.metrics:
            specs.setdefault(spec.key, spec)
    return specs


STEP_FIELDS = ("loss", "learning_rate", "grad_norm", "tokens_per_s")
"""StepLogged's own numeric fields that are plotted (method metrics come from its ``metrics`` mapping)."""


class StepAxis(pg.AxisItem):
    """The x axis of steps: ticks at whole steps only (a three-step run reads 1, 2, 3, not 1.5)."""

    def tickSpacing(self, minVal, maxVal, size):  # noqa: N802 - pyqtgraph's name
        levels = [(spacing, offset) for spacing, offset in super().tickSpacing(minVal, maxVal, size) if spacing >= 1]
        return levels or [(1.0, 0.0)]


class MetricsPlots(QWidget):
    """One plot per metric group (loss, learning rate, grad norm, tokens/s, and any group a method declares).

    Curves are made from the metric specs a run's method declares (``RunStarted.metric_specs``, or the
    registry for runs opened from disk), so a method's new metric is plotted without a change here.
    ``add_event`` only appends to buffers; ``refresh`` (called by the page's ~10 Hz timer) pushes the
    buffers that changed into their curves. Curves downsample by peak and clip to the view, so
    hundreds of thousands of points stay readable and fast.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.buffers: dict[str, SeriesBuffer] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.plots: dict[str, pg.PlotItem] = {}
        self.specs: dict[str, MetricSpec] = {}
        self._dirty: set[str] = set()
        self._pinned: set[str] = set()
        """Plot groups whose x range is held around a single point (auto range again from the second)."""
        self._turn = 0
        self._known = _known_specs()
        self.graphics = pg.GraphicsLayoutWidget(self)
        self.graphics.setObjectName("plots")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)
        for spec in STANDARD_METRICS:
            self._plot_for(spec.group)
        self.add_specs(STANDARD_METRICS)
        self.apply_palette()

    # ---- Public API
    def add_specs(self, specs) -> None:
        """Make curves for metric specs (MetricSpec or their dict form) not shown yet."""
        for spec in specs:
            if isinstance(spec, dict):
                spec = MetricSpec.from_dict(spec)
            if spec.key and spec.key not in self.curves:
                self._add_curve(spec)

    def add_event(self, event) -> None:
        """Append the values of a StepLogged or EvalLogged event (others: RunStarted declares curves)."""
        if isinstance(event, RunStarted):
            self.add_specs(event.metric_specs)
        elif isinstance(event, StepLogged):
            for key in STEP_FIELDS:
                self._add(key, event.step, getattr(event, key))
            for key, value in event.metrics.items():
                self._add(key, event.step, value)
        elif isinstance(event, EvalLogged):
            self._add("eval_loss", event.step, event.metrics.get("eval_loss", event.metrics.get("loss")))

    def add_record(self, record: dict) -> None:
        """Append a metrics.jsonl record (the dict form of StepLogged / EvalLogged, of any version)."""
        kind = record.get("event")
        step = record.get("step")
        if not isinstance(step, (int, float)) or isinstance(step, bool):
            return
        if kind == "StepLogged":
            for key in STEP_FIELDS:
                self._add(key, step, record.get(key))
            for key, value in step_metrics(record).items():
                self._add(key, step, value)
        elif kind == "EvalLogged":
            metrics = record.get("metrics") or {}
            if isinstance(metrics, dict):
                self._add("eval_loss", step, metrics.get("eval_loss", metrics.get("loss")))

    def clear(self) -> None:
        """Forget every point; the next run's axes start from its own data."""
        for key, buffer in self.buffers.items():
            buffer.clear()
            self._dirty.add(key)
        self.refresh()
        for plot in self.plots.values():
            plot.enableAutoRange()
        self._pinned.clear()

    def refresh(self) -> None:
        """Push every changed buffer into its curve (cheap when nothing changed)."""
        for key in self._dirty:
            self._draw(key)
        self._dirty.clear()

    def refresh_next(self) -> None:
        """Push the changed buffers of one plot, the next in turn that has any (for the live timer).

        Redrawing one plot per tick keeps each repaint (axes, text, curves) short, so the event
        loop never stalls for the time of redrawing all of them at once.
        """
        groups = list(self.plots)
        for offset in range(len(groups)):
            index = (self._turn + offset) % len(groups)
            keys = [key for key in self._dirty if self.specs[key].group == groups[index]]
            if keys:
                for key in keys:
                    self._draw(key)
                    self._dirty.discard(key)
                self._turn = (index + 1) % len(groups)
                return

    def point_count(self, key: str) -> int:
        """Points a curve holds (what was last drawn; 0 for a metric not seen yet)."""
        if key not in self.curves:
            return 0
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
        for key, curve in self.curves.items():
            group = [k for k in self.curves if self.specs[k].group == self.specs[key].group]
            shift = 360 * group.index(key) // max(len(group), 1)
            color = QColor.fromHsv((max(hue, 0) + shift) % 360, sat, val)
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
    def _plot_for(self, group: str) -> pg.PlotItem:
        plot = self.plots.get(group)
        if plot is None:
            index = len(self.plots)
            plot = self.graphics.addPlot(row=index // 2, col=index % 2, title=group, axisItems={"bottom": StepAxis("bottom")})
            plot.setDownsampling(auto=True, mode="peak")
            plot.setClipToView(True)
            plot.setLabel("bottom", "step")
            self.plots[group] = plot
        return plot

    def _add_curve(self, spec: MetricSpec) -> None:
        plot = self._plot_for(spec.group)
        if plot.legend is None and any(s.group == spec.group for s in self.specs.values()):
            # Top right, see-through and small, so it never hides the curves' start (top left of a loss curve).
            plot.addLegend(offset=(-10, 10), brush=pg.mkBrush(128, 128, 128, 40), labelTextSize="8pt")
            for key, other in self.specs.items():  # the first curve, made before there was a legend
                if other.group == spec.group:
                    plot.legend.addItem(self.curves[key], other.label)
        curve = plot.plot(name=spec.label)
        if spec.unit:
            plot.setLabel("left", spec.unit)
        if spec.key.startswith("eval_"):
            curve.setSymbol("o")
            curve.setSymbolSize(6)
        self.curves[spec.key] = curve
        self.buffers[spec.key] = SeriesBuffer()
        self.specs[spec.key] = spec
        if len(self.specs) > len(STANDARD_METRICS):
            self.apply_palette()

    def _draw(self, key: str) -> None:
        buffer = self.buffers[key]
        self.curves[key].setData(buffer.x, buffer.y)
        group = self.specs[key].group
        if len(buffer.x) == 1:  # one point: a readable window around it, not a range of zero width
            self.plots[group].setXRange(buffer.x[0] - 1, buffer.x[0] + 1, padding=0)
            self._pinned.add(group)
        elif len(buffer.x) > 1 and group in self._pinned:
            self._pinned.discard(group)
            self.plots[group].enableAutoRange(axis="x")

    def _add(self, key: str, step, value) -> None:
        if not _finite(value):
            return
        if key not in self.curves:
            self._add_curve(self._known.get(key) or MetricSpec(key, key.replace("_", " "), "Metrics"))
        self.buffers[key].append(float(step), float(value))
        self._dirty.add(key)
