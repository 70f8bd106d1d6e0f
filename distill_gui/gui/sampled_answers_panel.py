"""The answers the student sampled while training (rlvr, self_distill, on-policy KD), each with the verifier's mark.

A view of :class:`~distill_gui.core.events.SamplesScored` events: one table per step (the newest unless
the user picked an older one), a row per answer with ✔ (the verifier accepted it), ✘ (it did not, or the
verifier raised) or — (nothing to check against), the final answer the verifier read, the reference and
the reward. Every piece of model text is shown as text: table cells never interpret markup, tooltips are
escaped (:func:`~distill_gui.gui.plain_text.plain_tooltip`) and control characters are made visible.
The panel hides itself while it has nothing to show.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from distill_gui.core.chat_markup import has_markup, user_text
from distill_gui.core.events import Event, SamplesScored, ScoredSample
from distill_gui.gui.plain_text import plain_tooltip

COLUMNS = ["", "Prompt", "Student's answer", "Final answer", "Reference", "Reward"]
MARK, PROMPT, ANSWER, FINAL, REFERENCE, REWARD = range(len(COLUMNS))
CORRECT, WRONG, UNCHECKED = "✔", "✘", "—"
METHOD_WORDS = {"rlvr": "RL with verifiable rewards", "self_distill": "self-distillation", "kd": "on-policy KD"}


def shown_text(text: str | None) -> str:
    """Model text for a cell: control characters (but line breaks and tabs) as their visible symbols (␃),
    an empty answer said in words."""
    if text is None:
        return UNCHECKED
    if not text.strip():
        return "(empty: the model stopped at once)" if not text else f"(blank: {len(text)} whitespace characters)"
    return "".join(chr(0x2400 + ord(c)) if ord(c) < 32 and c not in "\n\t" else "␡" if c == "\x7f" else c for c in text)


def mark_of(item: ScoredSample) -> str:
    """✔ when the verifier accepted the answer, ✘ when it did not (or raised), — when it had nothing to check against."""
    if item.correct is None:
        return UNCHECKED
    return CORRECT if item.correct else WRONG


def _mark_tip(item: ScoredSample) -> str:
    if item.error:
        return f"Counted as wrong: the verifier raised on this answer ({item.error})."
    if item.correct is None:
        return "Not checked: the row has no reference answer to check against."
    seen = f"it read the final answer {item.answer!r}" if item.answer is not None else "it found no final answer"
    verdict = "accepted" if item.correct else "rejected"
    return f"The verifier {verdict} this answer: {seen}, the reference is {item.reference!r}."


class SampledAnswersPanel(QWidget):
    """The sampled answers of a training run, by step, with the verifier's marks."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("sampled_answers")
        self._history: dict[int, SamplesScored] = {}
        self._shown_step: int | None = None

        self.caption = QLabel("")
        self.caption.setObjectName("sampled_answers_caption")
        self.caption.setTextFormat(Qt.TextFormat.PlainText)
        self.caption.setWordWrap(True)
        self.step_combo = QComboBox()
        self.step_combo.setObjectName("sampled_answers_step")
        self.step_combo.setToolTip("Which step's sampled answers to show (the newest follows the run)")
        self.step_combo.setMinimumContentsLength(8)
        self.step_combo.currentIndexChanged.connect(self.on_step_chosen)
        header = QHBoxLayout()
        title = QLabel("<b>The student's own answers, marked by the verifier</b>")
        header.addWidget(title)
        header.addWidget(self.caption, 1)
        header.addWidget(QLabel("Step"))
        header.addWidget(self.step_combo)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("sampled_answers_table")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeaderItem(MARK).setToolTip("✔ the verifier accepted the answer, ✘ it did not, — nothing to check against")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setTabKeyNavigation(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        heads = self.table.horizontalHeader()
        for col in (MARK, FINAL, REFERENCE, REWARD):
            heads.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        for col in (PROMPT, ANSWER):
            heads.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.table)
        self.setVisible(False)

    # ---- Public API
    def clear(self) -> None:
        self._history.clear()
        self._shown_step = None
        blocked = self.step_combo.blockSignals(True)
        self.step_combo.clear()
        self.step_combo.blockSignals(blocked)
        self.table.setRowCount(0)
        self.caption.setText("")
        self.setVisible(False)

    def add(self, event: SamplesScored) -> None:
        """Record a step's sampled answers (a step reported again replaces its answers); show them unless the
        user is looking at an older step."""
        following = self.step_combo.currentIndex() <= 0
        self._history[event.step] = event
        blocked = self.step_combo.blockSignals(True)
        self.step_combo.clear()
        for step in sorted(self._history, reverse=True):
            self.step_combo.addItem(str(step), step)
        self.step_combo.setCurrentIndex(0 if following else max(self.step_combo.findData(self._shown_step), 0))
        self.step_combo.blockSignals(blocked)
        self.setVisible(True)
        if following:
            self._show(event.step)

    def show_events(self, events: list[Event]) -> None:
        """Rebuild from a run's events (a run folder's events.jsonl)."""
        self.clear()
        for event in events:
            if isinstance(event, SamplesScored):
                self.add(event)

    def steps(self) -> list[int]:
        return sorted(self._history)

    def row_count(self) -> int:
        return self.table.rowCount()

    def cell(self, row: int, col: int) -> str:
        item = self.table.item(row, col)
        return item.text() if item is not None else ""

    # ---- Slots
    @Slot(object)
    def on_event(self, event: Event) -> None:
        if isinstance(event, SamplesScored):
            self.add(event)

    @Slot(int)
    def on_step_chosen(self, index: int) -> None:
        step = self.step_combo.itemData(index)
        if step is not None:
            self._show(int(step))

    # ---- Internals
    def _show(self, step: int) -> None:
        self._shown_step = step
        event = self._history[step]
        items = event.items
        self.table.setRowCount(len(items))
        has_reward = any(item.reward is not None for item in items)
        self.table.setColumnHidden(REWARD, not has_reward)
        for row, item in enumerate(items):
            mark = mark_of(item)
            prompt = shown_text(user_text(item.prompt))
            values = {
                MARK: (mark, _mark_tip(item)),
                PROMPT: (prompt, ("As the model saw it (with the chat template):\n\n" + item.prompt) if has_markup(item.prompt) else item.prompt),
                ANSWER: (shown_text(item.completion), item.completion),
                FINAL: (shown_text(item.answer), item.answer or "The verifier found no final answer in this answer."),
                REFERENCE: (shown_text(item.reference), item.reference or ""),
                REWARD: ("" if item.reward is None else f"{item.reward:g}", "The answer's total reward (its group's mean is its baseline)"),
            }
            for col, (text, tip) in values.items():
                cell = QTableWidgetItem(text)
                cell.setToolTip(plain_tooltip(tip))
                cell.setTextAlignment(Qt.AlignmentFlag.AlignTop | (Qt.AlignmentFlag.AlignHCenter if col == MARK else Qt.AlignmentFlag.AlignLeft))
                if col == MARK and mark != UNCHECKED:
                    cell.setForeground(QBrush(QColor("#2e7d32" if mark == CORRECT else "#c62828")))
                self.table.setItem(row, col, cell)
        checked = [item.correct for item in items if item.correct is not None]
        method = METHOD_WORDS.get(event.method, event.method)
        parts = [f"step {step}", method] if method else [f"step {step}"]
        if checked:
            parts.append(f"{sum(checked)} of {len(checked)} answers correct")
        else:
            parts.append("no reference answers to check against")
        if has_reward:
            rewards = [item.reward for item in items if item.reward is not None]
            parts.append(f"mean reward {sum(rewards) / len(rewards):.2f}")
        latest = max(self._history)
        if step != latest:
            parts.append(f"latest: step {latest}")
        self.caption.setText(" — ".join(parts))


if __name__ == "__main__":  # a preview of the panel alone
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    panel = SampledAnswersPanel()
    panel.add(SamplesScored(step=1, method="rlvr", items=(
        ScoredSample("<|user|>What is 3 plus 4?<|assistant|>", "3 + 4 = 7. #### 7", True, 1.0, "7", "7"),
        ScoredSample("<|user|>What is 3 plus 4?<|assistant|>", "<s>#### 8\x03", False, 0.0, "8", "7"),
    )))
    panel.resize(900, 300)
    panel.show()
    sys.exit(app.exec())
