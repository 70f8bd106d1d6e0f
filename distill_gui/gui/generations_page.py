"""The Generations page: teacher and student answers to the probe prompts side by side, from the
step they were generated at, the answers the student sampled while training with the verifier's mark
(:mod:`~distill_gui.gui.sampled_answers_panel`), and a prompt box that asks both models anything (in a
worker thread)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal, Slot
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from distill_gui.core.chat_markup import has_markup, user_text
from distill_gui.core.events import Sample, SamplesGenerated, SamplesScored
from distill_gui.gui.plain_text import plain_tooltip
from distill_gui.gui.sampled_answers_panel import SampledAnswersPanel
from distill_gui.gui.token_view import TokenView


def visible_answer(text: str | None) -> str:
    """An answer as a cell shows it: blanks made visible, never an empty-looking cell."""
    if text is None:
        return "—"
    if not text.strip():
        if not text:
            return "(empty: the model stopped at once)"
        return f"(blank: {len(text)} whitespace character{'s' if len(text) != 1 else ''} {text.encode('unicode_escape').decode()!r})"
    return text


def _is_submit(event: QKeyEvent) -> bool:
    return (event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
            and bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier))


class PromptBox(QPlainTextEdit):
    """The question box: Ctrl+Enter asks (it takes the key before the window's Start shortcut sees it);
    Tab moves on to the next control."""

    # ---- Signals
    sig_submitted = Signal()
    """Ctrl+Enter was pressed in the box."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setTabChangesFocus(True)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) and _is_submit(event):
            event.accept()  # this widget handles the key: the window-wide shortcut does not fire
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if _is_submit(event):
            self.sig_submitted.emit()
            event.accept()
            return
        super().keyPressEvent(event)


class GenerationsPage(QWidget):
    """Probe samples as they arrive (newest shown unless the user picked an older step) and the prompt box."""

    # ---- Signals
    sig_ask = Signal(object)
    """A request for the ask worker: {prompt, teacher, student, device, chat_template, max_new_tokens}."""
    sig_cancel_ask = Signal()
    """The user cancelled the question being answered."""
    sig_explain = Signal(object)
    """Score the shown answers token by token: {samples: [{prompt, answer}], teacher, student, device}."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._history: dict[int, tuple[Sample, ...]] = {}
        self._shown_step: int | None = None
        self.teacher_path = ""
        self.student_path = ""
        self.run_dir = ""
        self.device = "auto"
        self.chat_template = "auto"
        self.data_format = "prompt_completion"
        self.system_prompt: str | None = None

        self.step_combo = QComboBox()
        self.step_combo.setObjectName("sample_step")
        self.step_combo.setToolTip("Which step's samples to show (the newest follows the run)")
        self.step_combo.setMinimumContentsLength(12)
        self.step_combo.currentIndexChanged.connect(self.on_step_chosen)
        self.caption = QLabel("No samples yet. Set training.sample_steps on the Method page to probe the models while training.")
        self.caption.setObjectName("samples_caption")
        self.caption.setWordWrap(True)
        header = QHBoxLayout()
        header.addWidget(self.caption, 1)
        header.addWidget(QLabel("Step"))
        header.addWidget(self.step_combo)

        self.table = QTableWidget(0, 3)
        self.table.setObjectName("generations")
        self.table.setHorizontalHeaderLabels(["Prompt", "Teacher", "Student"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().hide()
        self.table.setTabKeyNavigation(False)  # Tab moves on to the next control; arrows move between cells

        samples = QWidget()
        samples_layout = QVBoxLayout(samples)
        samples_layout.setContentsMargins(0, 0, 0, 0)
        samples_layout.addLayout(header)
        samples_layout.addWidget(self.table)

        # ---- The prompt box
        self.prompt = PromptBox()
        self.prompt.sig_submitted.connect(self.on_ask_clicked)
        self.prompt.setObjectName("ask_prompt")
        self.prompt.setPlaceholderText("Ask both models anything…")
        self.prompt.setMaximumHeight(70)
        self.max_new_tokens = QSpinBox()
        self.max_new_tokens.setObjectName("ask_max_new_tokens")
        self.max_new_tokens.setRange(1, 4096)
        self.max_new_tokens.setValue(64)
        self.max_new_tokens.setToolTip("Longest answer, in tokens")
        self.student_choice = QComboBox()
        self.student_choice.setObjectName("ask_student_source")
        self.student_choice.addItem("the student as configured", "configured")
        self.student_choice.addItem("the trained student of the shown run", "run")
        self.student_choice.setToolTip("The run's final model, or its latest checkpoint while it trains")
        self.ask_button = QPushButton("Ask both")
        self.ask_button.setObjectName("ask")
        self.ask_button.setToolTip("Generate an answer from the teacher and the student (Ctrl+Enter in the prompt)")
        self.ask_button.clicked.connect(self.on_ask_clicked)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancel_ask")
        self.cancel_button.setToolTip("Stop loading or answering (the models load again on the next question)")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.sig_cancel_ask)
        self.ask_state = QLabel("")
        self.ask_state.setObjectName("ask_state")
        self.ask_state.setTextFormat(Qt.TextFormat.PlainText)
        self.ask_state.setWordWrap(True)
        self.teacher_answer = QPlainTextEdit()
        self.teacher_answer.setObjectName("ask_teacher")
        self.teacher_answer.setReadOnly(True)
        self.student_answer = QPlainTextEdit()
        self.student_answer.setObjectName("ask_student")
        self.student_answer.setReadOnly(True)

        options = QFormLayout()
        options.addRow("Max new tokens", self.max_new_tokens)
        options.addRow("Student", self.student_choice)
        ask_row = QHBoxLayout()
        ask_row.addWidget(self.prompt, 1)
        ask_row.addLayout(options)
        ask_row.addWidget(self.ask_button)
        ask_row.addWidget(self.cancel_button)
        answers = QHBoxLayout()
        for title, box in (("Teacher", self.teacher_answer), ("Student", self.student_answer)):
            column = QVBoxLayout()
            column.addWidget(QLabel(f"<b>{title}</b>"))
            column.addWidget(box)
            answers.addLayout(column)
        ask_box = QWidget()
        ask_layout = QVBoxLayout(ask_box)
        ask_layout.addLayout(ask_row)
        ask_layout.addWidget(self.ask_state)
        ask_layout.addLayout(answers)

        # ---- What the student has not learned yet (token view)
        self.explain_button = QPushButton("Where does the student disagree?")
        self.explain_button.setObjectName("explain")
        self.explain_button.setToolTip("Read the shown teacher (or reference) answers with both models and shade each token "
                                       "by the student's disagreement (KL); the student is the shown run's, else the configured one")
        self.explain_button.clicked.connect(self.on_explain_clicked)
        self.explain_state = QLabel("")
        self.explain_state.setObjectName("explain_state")
        self.explain_state.setTextFormat(Qt.TextFormat.PlainText)
        self.explain_state.setWordWrap(True)
        self.token_view = TokenView()
        self._scores: list = []
        explain_box = QWidget()
        explain_layout = QVBoxLayout(explain_box)
        explain_row = QHBoxLayout()
        explain_row.addWidget(self.explain_button)
        explain_row.addWidget(self.explain_state, 1)
        explain_layout.addLayout(explain_row)
        explain_layout.addWidget(self.token_view, 1)
        self.table.itemSelectionChanged.connect(self.on_row_selected)

        self.tools = QTabWidget()
        self.tools.setObjectName("generation_tools")
        self.tools.addTab(ask_box, "Ask both models")
        self.tools.addTab(explain_box, "What the student has not learned")
        splitter = QSplitter(Qt.Orientation.Vertical)
        self.sampled = SampledAnswersPanel()  # rlvr, self_distill and on-policy KD runs; hidden otherwise
        splitter.addWidget(samples)
        splitter.addWidget(self.sampled)
        splitter.addWidget(self.tools)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 3)
        splitter.setStretchFactor(2, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    # ---- Public API
    def clear(self) -> None:
        self._history.clear()
        blocked = self.step_combo.blockSignals(True)
        self.step_combo.clear()
        self.step_combo.blockSignals(blocked)
        self.table.setRowCount(0)
        self.sampled.clear()
        self.caption.setText("No samples yet. Set training.sample_steps on the Method page to probe the models while training.")

    def set_models(self, teacher: str, student: str, device: str = "auto", chat_template: str = "auto",
                   data_format: str = "prompt_completion", system_prompt: str | None = None) -> None:
        """The pair the prompt box asks, and how prompts are rendered (as the training data is)."""
        self.teacher_path, self.student_path = teacher, student
        self.device, self.chat_template = device, chat_template
        self.data_format, self.system_prompt = data_format, system_prompt

    def set_run_dir(self, run_dir: str) -> None:
        self.run_dir = run_dir or ""

    def add_samples(self, step: int, samples: tuple[Sample, ...]) -> None:
        """Record the samples of ``step``; show them unless the user is looking at an older step."""
        following = self.step_combo.currentIndex() <= 0
        self._history[step] = tuple(samples)
        blocked = self.step_combo.blockSignals(True)
        self.step_combo.clear()
        for known in sorted(self._history, reverse=True):
            self.step_combo.addItem(f"{known}", known)
        if following:
            self.step_combo.setCurrentIndex(0)
        else:
            self.step_combo.setCurrentIndex(self.step_combo.findData(self._shown_step))
        self.step_combo.blockSignals(blocked)
        if following:
            self._show(step)

    def show_records(self, records: list[dict]) -> None:
        """Rebuild from a run folder's samples.jsonl records."""
        self.clear()
        for record in records:
            try:
                samples = tuple(Sample(**s) for s in record.get("samples", ()))
                self.add_samples(int(record["step"]), samples)
            except (KeyError, TypeError, ValueError):
                continue

    def row_count(self) -> int:
        return self.table.rowCount()

    # ---- Slots
    @Slot(object)
    def on_event(self, event) -> None:
        if isinstance(event, SamplesGenerated):
            self.add_samples(event.step, event.samples)
        elif isinstance(event, SamplesScored):
            self.sampled.add(event)

    @Slot(int)
    def on_step_chosen(self, index: int) -> None:
        step = self.step_combo.itemData(index)
        if step is not None:
            self._show(int(step))

    @Slot()
    def on_ask_clicked(self) -> None:
        prompt = self.prompt.toPlainText().strip()
        if not prompt:
            self.ask_state.setText("Type a prompt first.")
            return
        student = self.student_path
        if self.student_choice.currentData() == "run":
            if not self.run_dir:
                self.ask_state.setText("No run is shown; open one on the Runs page or ask the configured student.")
                return
            student = self.run_dir
        if not student and not self.teacher_path:
            self.ask_state.setText("Choose a teacher and a student on the Models page first.")
            return
        self.ask_button.setEnabled(False)
        self.cancel_button.setVisible(True)
        self.ask_state.setText("Asking… (the first question loads the models)")
        self.sig_ask.emit({
            "prompt": prompt,
            "teacher": self.teacher_path or None,
            "student": student or None,
            "device": self.device,
            "chat_template": self.chat_template,
            "data_format": self.data_format,
            "system_prompt": self.system_prompt,
            "max_new_tokens": self.max_new_tokens.value(),
        })

    @Slot()
    def on_explain_clicked(self) -> None:
        samples = self._history.get(self._shown_step, ()) if self._shown_step is not None else ()
        scored = [{"prompt": s.prompt, "answer": s.teacher if s.teacher else s.reference} for s in samples if s.teacher or s.reference]
        student = self.run_dir or self.student_path
        if not scored:
            self.explain_state.setText("No teacher or reference answers are shown: train with probe prompts first (Method page).")
            return
        if not self.teacher_path or not student:
            self.explain_state.setText("Needs both a teacher and a student (Models page).")
            return
        self.explain_button.setEnabled(False)
        self.explain_state.setText("Scoring… (the first time loads both models)")
        self.sig_explain.emit({"samples": scored, "teacher": self.teacher_path, "student": student, "device": self.device})

    @Slot(object, object)
    def on_disagreement(self, answers, hardest) -> None:
        self._scores = list(answers)
        self.explain_button.setEnabled(True)
        self.explain_state.setText(f"{len(answers)} answer{'s' if len(answers) != 1 else ''} scored; select a row above to see its tokens.")
        self.token_view.show_hardest(list(hardest))
        self.on_row_selected()

    @Slot()
    def on_row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        row = rows[0].row() if rows else 0
        if row < len(self._scores):
            self.token_view.show_scores(self._scores[row], f"Row {row + 1}")

    @Slot(str)
    def on_ask_status(self, text: str) -> None:
        self.ask_state.setText(text.capitalize())

    @Slot(str, object, object)
    def on_answered(self, prompt: str, teacher, student) -> None:
        for box, answer, role in ((self.teacher_answer, teacher, "teacher"), (self.student_answer, student, "student")):
            if answer is None:
                box.setPlainText(f"(no {role} model)")
            elif not answer.strip():
                box.setPlainText("(an empty answer: the model stopped at once)")
            else:
                box.setPlainText(answer)
        self.ask_state.setText(f"Answers to: {prompt[:120]}")
        self.ask_button.setEnabled(True)
        self.cancel_button.setVisible(False)

    @Slot(str)
    def on_ask_failed(self, message: str) -> None:
        if not self.explain_button.isEnabled():
            self.explain_button.setEnabled(True)
            self.explain_state.setText(f"No scores: {message}")
        self.ask_state.setText(f"No answer: {message}")
        self.ask_button.setEnabled(True)
        self.cancel_button.setVisible(False)

    # ---- Internals
    def _show(self, step: int) -> None:
        self._shown_step = step
        samples = self._history.get(step, ())
        has_reference = any(s.reference for s in samples)
        headers = ["Prompt", "Teacher", "Student"] + (["Reference"] if has_reference else [])
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(len(samples))
        for row, sample in enumerate(samples):
            values = [user_text(sample.prompt), visible_answer(sample.teacher), visible_answer(sample.student)]
            tips = [sample.prompt if has_markup(sample.prompt) else values[0], values[1], values[2]]
            if has_reference:
                values.append(sample.reference or "")
                tips.append(values[-1])
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                tip = tips[col]
                if col == 0 and tip != text:
                    tip = "As the model saw it (with the chat template):\n\n" + tip
                item.setToolTip(plain_tooltip(tip))
                item.setTextAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
                self.table.setItem(row, col, item)
        latest = max(self._history) if self._history else step
        note = "" if step == latest else f" (latest: step {latest})"
        self.caption.setText(f"<b>Samples from step {step}</b>{note} — {len(samples)} probe prompt{'s' if len(samples) != 1 else ''}")
