"""The recipe picker at the top of the Method page: the distillation playbook in plain words.

One choice per recipe of :mod:`distill_gui.core.recipes` (its title, and its one-line explanation under
it), plus "Custom" for a config that follows none. Under the choices: the chosen recipe's stages in
order, what it needs (✔ met, ✘ missing and what to do, … not known yet), and what to do before training
when the recipe takes a step outside the run (the command that makes synthetic data, ready to copy).

The picker only shows and asks; the Method page applies a chosen recipe to the config's widgets. It
also holds the two config values no other widget edits, ``stages`` and ``data.mix``
(:class:`HeldValue`), so they travel with the binder like every other key.
"""

from __future__ import annotations

import copy
import html
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from distill_gui.core import methods, recipes

CUSTOM = "custom"
MARKS = {True: "✔", False: "✘", None: "…"}
COLORS = {True: "#2e7d32", False: "#c62828", None: "#777777"}


class HeldValue(QWidget):
    """A config value no form field edits (``stages``, ``data.mix``), held for the binder as it was given."""

    def __init__(self, key: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(key)
        self.setProperty("configKey", key)
        self.setVisible(False)
        self._value: list = []

    def config_value(self) -> list:
        return copy.deepcopy(self._value)

    def set_config_value(self, value: Any) -> None:
        self._value = copy.deepcopy(list(value or []))


def stage_lines(stages: list) -> list[str]:
    """A config's stages in order, in words ("traces: Hard-label SFT")."""
    out = []
    for index, stage in enumerate(stages):
        if not isinstance(stage, dict):
            out.append(f"stage {index + 1}: {stage!r} (not a mapping of config keys)")
            continue
        kind = str((stage.get("method") or {}).get("kind") or "(the config's method)")
        try:
            words = methods.get(kind).title
        except Exception:  # noqa: BLE001 - an unknown method is named as it is written
            words = f"{kind} (not a method)"
        out.append(f"{stage.get('name') or f'stage{index + 1}'}: {words}")
    return out


class RecipePicker(QGroupBox):
    """The recipes as choices in words, and the chosen one's stages, needs and first steps."""

    # ---- Signals
    sig_recipe_chosen = Signal(str)
    """The user picked a recipe (its name): the Method page fills the config from it."""
    sig_adjust_requested = Signal()
    """The user wants the raw settings (the method's form below)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Recipe", parent)
        self.setObjectName("recipe_picker")
        self.stages_value = HeldValue("stages")
        self.mix_value = HeldValue("data.mix")
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QRadioButton] = {}
        grid = QGridLayout()
        grid.setHorizontalSpacing(18)
        entries = [(r.name, r.title, r.summary) for r in recipes.RECIPES]
        entries.append((CUSTOM, "Custom", "Settings that follow none of the recipes: set by hand below, or opened from a file."))
        for index, (name, title, summary) in enumerate(entries):
            button = QRadioButton(title)
            button.setObjectName(f"recipe.{name}")
            button.setToolTip(summary)
            self.group.addButton(button, index)
            self.buttons[name] = button
            words = QLabel(summary)
            words.setWordWrap(True)
            words.setTextFormat(Qt.TextFormat.PlainText)
            words.setStyleSheet("color: palette(mid); margin-left: 22px;")
            cell = QVBoxLayout()
            cell.setSpacing(0)
            cell.addWidget(button)
            cell.addWidget(words)
            grid.addLayout(cell, index // 2, index % 2)
        self.buttons[CUSTOM].setEnabled(False)  # a state, not a choice: editing settings by hand leads there
        self.group.idClicked.connect(self.on_clicked)
        self._names = [name for name, _, _ in entries]

        self.stages = QLabel()
        self.stages.setObjectName("recipe_stages")
        self.stages.setTextFormat(Qt.TextFormat.RichText)
        self.stages.setWordWrap(True)
        self.needs = QLabel()
        self.needs.setObjectName("recipe_needs")
        self.needs.setTextFormat(Qt.TextFormat.RichText)
        self.needs.setWordWrap(True)
        self.needs.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.how = QLabel()
        self.how.setObjectName("recipe_how")
        self.how.setTextFormat(Qt.TextFormat.PlainText)
        self.how.setWordWrap(True)
        self.command = QLineEdit()
        self.command.setObjectName("recipe_command")
        self.command.setReadOnly(True)
        self.command.setToolTip("Run this in a terminal; it can be stopped and run again to continue")
        self.copy_button = QPushButton("Copy")
        self.copy_button.setObjectName("recipe_copy_command")
        self.copy_button.setToolTip("Copy the command")
        self.copy_button.clicked.connect(self.on_copy_clicked)
        command_row = QHBoxLayout()
        command_row.addWidget(self.command, 1)
        command_row.addWidget(self.copy_button)
        self.command_box = QWidget()
        self.command_box.setLayout(command_row)
        command_row.setContentsMargins(0, 0, 0, 0)
        self.adjust_button = QPushButton("Adjust settings ↓")
        self.adjust_button.setObjectName("recipe_adjust")
        self.adjust_button.setToolTip("The method's own settings and the training settings, below")
        self.adjust_button.setFlat(True)
        self.adjust_button.clicked.connect(self.sig_adjust_requested)

        details = QVBoxLayout()
        details.addWidget(self.stages)
        details.addWidget(self.needs)
        details.addWidget(self.how)
        details.addWidget(self.command_box)
        bottom = QHBoxLayout()
        bottom.addLayout(details, 1)
        bottom.addWidget(self.adjust_button, 0, Qt.AlignmentFlag.AlignBottom)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addLayout(bottom)
        layout.addWidget(self.stages_value)
        layout.addWidget(self.mix_value)
        self.chosen: str = CUSTOM

    # ---- Public API
    def show_state(
        self,
        recipe: recipes.Recipe | None,
        stages: list,
        checks: list[recipes.NeedCheck],
        command: str = "",
        problem: str = "",
    ) -> None:
        """Show which recipe the config follows (None: custom), its stages in order, its needs and first steps."""
        self.chosen = recipe.name if recipe is not None else CUSTOM
        button = self.buttons[self.chosen]
        blocked = self.group.blockSignals(True)
        button.setChecked(True)
        self.group.blockSignals(blocked)

        lines = stage_lines(stages) if stages else (recipe.describe_stages() if recipe is not None else [])
        if len(lines) > 1 or stages:
            steps = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
            note = "each stage starts from the previous stage's result, all in one run folder"
            self.stages.setText(f"<b>Stages, in order</b> ({note}):<ol style='margin-top:0'>{steps}</ol>")
        elif lines:
            self.stages.setText(f"<b>One run:</b> {html.escape(lines[0])}")
        else:
            self.stages.setText("")
        self.stages.setVisible(bool(self.stages.text()))

        rows = []
        if problem:
            rows.append(self._line(False, f"The settings cannot be read: {problem}"))
        for check in checks:
            rows.append(self._line(check.met, check.text.split("\n")[0]))
        missing = sum(1 for c in checks if c.met is False)
        head = f"<b>Not ready:</b> {missing} thing{'s' if missing != 1 else ''} missing" if missing else "<b>Needs</b>"
        self.needs.setText(head + "<br>" + "<br>".join(rows) if rows else "")
        self.needs.setVisible(bool(rows))
        self.how.setText(recipe.how if recipe is not None else "")
        self.how.setVisible(bool(self.how.text()))
        self.command.setText(command)
        self.command.setCursorPosition(0)
        self.command_box.setVisible(bool(command))

    def missing(self) -> list[str]:
        """The shown lines of missing needs (plain text)."""
        text = self.needs.text()
        return [html.unescape(part.split("</span>", 1)[1]).strip() for part in text.split("<br>") if "✘" in part and "</span>" in part]

    # ---- Slots
    @Slot(int)
    def on_clicked(self, index: int) -> None:
        name = self._names[index]
        if name != CUSTOM:
            self.sig_recipe_chosen.emit(name)

    @Slot()
    def on_copy_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.command.text())

    # ---- Internals
    @staticmethod
    def _line(met: bool | None, text: str) -> str:
        return f"<span style='color:{COLORS[met]}'>{MARKS[met]}</span> {html.escape(text)}"
