"""How the Compare page shows its numbers: each measure's cell text, cells that sort by number, short model names
and the ticks of the log-scaled parameter axis."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtWidgets import QTableWidgetItem

from distill_gui.core.compare_report import format_params, format_size
from distill_gui.core.model_refs import short_name


def format_cell(key: str, value) -> str:
    """A results-table cell's text for the measure ``key`` (missing: an en dash)."""
    if value is None or value == "":
        return "–"
    if key in ("accuracy", "pass_at_k", "majority_accuracy", "answer_agreement", "top1_agreement"):
        return f"{100 * value:.1f}%"
    if key == "recovery_pct":
        return f"{value:.1f}%"
    if key == "perplexity":
        return f"{value:.3f}"
    if key == "perplexity_ratio":
        return f"{value:.3g}"
    if key == "params":
        return format_params(int(value))
    if key == "disk_bytes":
        return format_size(int(value))
    if key == "peak_memory_mb":
        return f"{value:.0f} MB"
    if key in ("tokens_per_s",):
        return f"{value:.0f}"
    if key == "mean_answer_tokens":
        return f"{value:.1f}"
    return str(value)


def display_name(spec: str) -> str:
    """A short name for a model in the list: the folder or run name (a checkpoint keeps its run's name)."""
    name = short_name(spec)
    if name == "final" or name.startswith("step-"):
        parent = Path(str(spec).rstrip("/")).parent
        if parent.name == "checkpoints":
            return f"{short_name(str(parent.parent))}/{name}"
    return name


def log_ticks(low: float, high: float) -> list[tuple[float, str]]:
    """Ticks for a log10 axis of parameter counts: 1, 2 and 5 times each power of ten, as 100K, 2M, ..."""
    ticks = []
    for exponent in range(int(math.floor(low)) - 1, int(math.ceil(high)) + 1):
        for factor in (1, 2, 5):
            value = factor * 10**exponent
            where = math.log10(value)
            if low - 0.3 <= where <= high + 0.3:
                ticks.append((where, format_count_short(value)))
    return ticks


def format_count_short(n: float) -> str:
    """100K, 2M, 1.5B."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:g}{unit}"
    return f"{n:g}"


class SortItem(QTableWidgetItem):
    """A cell that sorts by its number (missing values last), not its text."""

    def __init__(self, text: str, key: float | str | None):
        super().__init__(text)
        self.key = key

    def __lt__(self, other) -> bool:  # noqa: D105
        mine, theirs = self.key, getattr(other, "key", None)
        if isinstance(mine, (int, float)) and isinstance(theirs, (int, float)):
            return mine < theirs
        if mine is None or theirs is None:
            return theirs is None and mine is not None
        return str(mine) < str(theirs)
