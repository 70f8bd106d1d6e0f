"""The Arena page: two models answer the same prompt side by side, names hidden until the vote.

The prompt is typed or drawn from the eval file; two of the Compare page's models are picked at random
(and placed at random as A and B). A vote (A better, B better, tie, both bad) is stored in the local
votes file and the Bradley–Terry ratings table is redrawn. Models load and answer in a background
worker (:class:`ArenaWorker` in its own QThread); the window never waits on them.
"""

from __future__ import annotations

import random
import traceback

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from distill_gui.core.arena import OUTCOME_LABELS, OUTCOMES, ArenaError, ArenaStore, pick_pair
from distill_gui.core.model_refs import short_name
from distill_gui.gui.workers import start_in_thread, stop_thread

HIDDEN = "hidden until you vote"


class ArenaWorker(QObject):
    """Draws prompts from a data file and has two models answer; lives in its own QThread."""

    # ---- Signals
    sig_drawn = Signal(int, object)
    """(request id, Example) drawn at random from the data file."""
    sig_answered = Signal(int, str, str)
    """(request id, A's answer, B's answer)."""
    sig_failed = Signal(int, str)
    """(request id, one-line reason)."""

    def __init__(self, device: str = "auto") -> None:
        super().__init__()
        self.device = device
        self._players = None
        self._examples: dict[str, list] = {}
        self._rng = random.Random()

    @Slot(int, str)
    def draw(self, request_id: int, data: str) -> None:
        try:
            if data not in self._examples:
                from distill_gui.core.data import load_examples

                examples, _ = load_examples(data)
                self._examples[data] = [e for e in examples if e.prompt or e.messages]
            pool = self._examples[data]
            if not pool:
                raise ValueError(f"{data}: no rows with a prompt to draw")
            self.sig_drawn.emit(request_id, self._rng.choice(pool))
        except Exception as exc:  # noqa: BLE001 - shown as one line on the page
            self.sig_failed.emit(request_id, _short_error(exc))

    @Slot(int, object, str, str, int, float, str)
    def answer(self, request_id: int, example, model_a: str, model_b: str, max_new_tokens: int, temperature: float,
               api_key_env: str) -> None:
        try:
            if self._players is None:
                from distill_gui.core.arena_players import ArenaPlayers

                self._players = ArenaPlayers(device=self.device)
            a = self._players.answer(model_a, example, max_new_tokens=max_new_tokens, temperature=temperature, api_key_env=api_key_env)
            b = self._players.answer(model_b, example, max_new_tokens=max_new_tokens, temperature=temperature, api_key_env=api_key_env)
            self.sig_answered.emit(request_id, a, b)
        except Exception as exc:  # noqa: BLE001
            self.sig_failed.emit(request_id, _short_error(exc))


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    if isinstance(exc, (ValueError, OSError)):
        return message
    return f"{type(exc).__name__}: {message} ({traceback.extract_tb(exc.__traceback__)[-1].name})"


class ArenaPage(QWidget):
    """A blind side-by-side of two models, votes and ratings."""

    # ---- Signals
    sig_draw = Signal(int, str)
    """Ask the worker for a random row of the data file (request id, path)."""
    sig_ask = Signal(int, object, str, str, int, float, str)
    """Ask the worker for both answers (request id, example, model A, model B, max new tokens, temperature, the served
    models' API key variable)."""
    sig_drawn = Signal()
    """A drawn prompt is in the prompt box."""
    sig_answered = Signal()
    """Both answers are shown and the vote buttons are on."""

    def __init__(self, store: ArenaStore | None = None, device: str = "auto", parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store or ArenaStore()
        self._models: list[str] = []
        self._data = ""
        self._request = 0
        self._example = None
        self._format = "prompt_completion"
        self._pair: tuple[str, str] | None = None
        self._answers = ("", "")
        self._prompt = ""
        self.api_key_env = ""
        self._rng = random.Random()

        self.models_label = QLabel("")
        self.models_label.setObjectName("arena_models")
        self.models_label.setWordWrap(True)
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setObjectName("arena_prompt")
        self.prompt_edit.setPlaceholderText("Type a prompt, or draw one from the eval file")
        self.prompt_edit.setMaximumHeight(90)
        self.draw_button = QPushButton("Draw from data")
        self.draw_button.setObjectName("arena_draw")
        self.ask_button = QPushButton("Ask two models")
        self.ask_button.setObjectName("arena_ask")
        self.draw_button.clicked.connect(self.draw_prompt)
        self.ask_button.clicked.connect(self.ask)
        self.max_new_tokens = QSpinBox()
        self.max_new_tokens.setRange(1, 4096)
        self.max_new_tokens.setValue(128)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setToolTip("0 is greedy")
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Max new tokens:"))
        controls.addWidget(self.max_new_tokens)
        controls.addWidget(QLabel("Temperature:"))
        controls.addWidget(self.temperature)
        controls.addStretch(1)
        controls.addWidget(self.draw_button)
        controls.addWidget(self.ask_button)

        self.name_a, self.name_b = QLabel(HIDDEN), QLabel(HIDDEN)
        self.name_a.setObjectName("arena_name_a")
        self.name_b.setObjectName("arena_name_b")
        self.answer_a, self.answer_b = QPlainTextEdit(), QPlainTextEdit()
        for edit, name in ((self.answer_a, "arena_answer_a"), (self.answer_b, "arena_answer_b")):
            edit.setReadOnly(True)
            edit.setObjectName(name)
        sides = QGridLayout()
        sides.addWidget(QLabel("<b>A</b>"), 0, 0)
        sides.addWidget(self.name_a, 0, 1)
        sides.addWidget(QLabel("<b>B</b>"), 0, 2)
        sides.addWidget(self.name_b, 0, 3)
        sides.addWidget(self.answer_a, 1, 0, 1, 2)
        sides.addWidget(self.answer_b, 1, 2, 1, 2)
        self.vote_buttons: dict[str, QPushButton] = {}
        votes = QHBoxLayout()
        votes.addStretch(1)
        for outcome in OUTCOMES:
            button = QPushButton(OUTCOME_LABELS[outcome])
            button.setObjectName(f"vote_{outcome}")
            button.setProperty("outcome", outcome)
            button.setEnabled(False)
            button.clicked.connect(self.on_vote_clicked)
            self.vote_buttons[outcome] = button
            votes.addWidget(button)
        votes.addStretch(1)
        self.state_label = QLabel("")
        self.state_label.setObjectName("arena_state")
        self.state_label.setWordWrap(True)

        self.ratings = QTableWidget(0, 4)
        self.ratings.setObjectName("arena_ratings")
        self.ratings.setHorizontalHeaderLabels(["Model", "Rating", "Votes", "Won / lost / tied"])
        self.ratings.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.ratings.verticalHeader().hide()
        self.ratings.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.ratings.horizontalHeader().setStretchLastSection(True)
        self.ratings.setMaximumHeight(180)

        layout = QVBoxLayout(self)
        layout.addWidget(self.models_label)
        layout.addWidget(self.prompt_edit)
        layout.addLayout(controls)
        layout.addLayout(sides, 1)
        layout.addLayout(votes)
        layout.addWidget(self.state_label)
        layout.addWidget(QLabel(f"Ratings (Bradley–Terry on the Elo scale; votes in {self.store.path}):"))
        layout.addWidget(self.ratings)

        # ---- Worker (started on first use: an unused arena costs no thread)
        self.device = device
        self.worker: ArenaWorker | None = None
        self.thread: QThread | None = None
        self.set_models([])
        self.refresh_ratings()

    # ---- Public API
    def set_models(self, models: list[str]) -> None:
        """The models the arena picks pairs from (the Compare page's list)."""
        self._models = list(dict.fromkeys(models))
        if len(self._models) < 2:
            self.models_label.setText("Add two or more models on the Compare page; the arena picks two of them at random.")
        else:
            self.models_label.setText(f"{len(self._models)} models in the arena (from the Compare page); two are picked at random "
                                      "for each prompt and their names stay hidden until you vote.")
        self._update_enabled()

    def current_pair(self) -> tuple[str, str] | None:
        """The (A, B) models of the answers on screen while the vote is open, else None."""
        return self._pair if any(button.isEnabled() for button in self.vote_buttons.values()) else None

    @Slot(str)
    def set_api_key_env(self, name: str) -> None:
        """The environment variable holding the served models' API key (the Compare page's field)."""
        self.api_key_env = name.strip()

    def set_data(self, path: str) -> None:
        """The file prompts are drawn from."""
        self._data = str(path or "")
        self._update_enabled()

    @Slot()
    def draw_prompt(self) -> bool:
        if not self._data:
            self.state_label.setText("Choose an eval file on the Compare page to draw prompts from.")
            return False
        self._ensure_worker()
        self._request += 1
        self.state_label.setText("Drawing a prompt…")
        self.sig_draw.emit(self._request, self._data)
        return True

    @Slot()
    def ask(self) -> bool:
        """Pick two models and have both answer the prompt (in the background)."""
        text = self.prompt_edit.toPlainText().strip()
        if not text:
            self.state_label.setText("Type a prompt or draw one from the data first.")
            return False
        try:
            self._pair = pick_pair(self._models, self._rng)
        except ArenaError as exc:
            self.state_label.setText(str(exc))
            return False
        from distill_gui.core.arena_players import typed_example

        example = self._example if self._example is not None and text == self._example.prompt.strip() else typed_example(text, self._format)
        self._prompt = text
        self._request += 1
        self._set_votable(False)
        for name, edit in ((self.name_a, self.answer_a), (self.name_b, self.answer_b)):
            name.setText(HIDDEN)
            edit.setPlainText("")
        self.ask_button.setEnabled(False)
        self.state_label.setText("Both models are answering (the first answer of a model loads it)…")
        self._ensure_worker()
        self.sig_ask.emit(self._request, example, self._pair[0], self._pair[1], self.max_new_tokens.value(), self.temperature.value(),
                          self.api_key_env)
        return True

    def refresh_ratings(self) -> None:
        try:
            table = self.store.ratings()
        except ArenaError as exc:
            self.state_label.setText(str(exc))
            return
        self.ratings.setRowCount(len(table))
        for row, rating in enumerate(table):
            name = QTableWidgetItem(short_name(rating.model))
            name.setToolTip(rating.model)
            self.ratings.setItem(row, 0, name)
            self.ratings.setItem(row, 1, QTableWidgetItem(f"{rating.rating:.0f}"))
            self.ratings.setItem(row, 2, QTableWidgetItem(str(rating.votes)))
            self.ratings.setItem(row, 3, QTableWidgetItem(f"{rating.wins} / {rating.losses} / {rating.ties}"))

    def shutdown(self) -> None:
        """End the worker thread (the window is closing)."""
        if self.thread is not None:
            stop_thread(self.thread)
            self.thread = None
            self.worker = None

    # ---- Slots
    @Slot(int, object)
    def on_drawn(self, request_id: int, example) -> None:
        if request_id != self._request:
            return
        self._example = example
        self._format = example.format
        self.prompt_edit.setPlainText(example.prompt)
        self.state_label.setText(f"Drawn from {example.source}.")
        self.sig_drawn.emit()

    @Slot(int, str, str)
    def on_answered(self, request_id: int, answer_a: str, answer_b: str) -> None:
        if request_id != self._request:
            return
        self._answers = (answer_a, answer_b)
        self.answer_a.setPlainText(answer_a)
        self.answer_b.setPlainText(answer_b)
        self._set_votable(True)
        self._update_enabled()
        self.state_label.setText("Which answer is better? The names show after your vote.")
        self.sig_answered.emit()

    @Slot(int, str)
    def on_failed(self, request_id: int, message: str) -> None:
        if request_id != self._request:
            return
        self._update_enabled()
        self.state_label.setText(f"Could not answer: {message}")

    @Slot()
    def on_vote_clicked(self) -> None:
        button = self.sender()
        if button is not None:
            self.vote(str(button.property("outcome")))

    def vote(self, outcome: str) -> bool:
        """Store the vote for the pair on screen, show the names and update the ratings."""
        if self._pair is None:
            return False
        a, b = self._pair
        try:
            self.store.add_vote(a, b, outcome, prompt=self._prompt, answer_a=self._answers[0], answer_b=self._answers[1])
        except ArenaError as exc:
            self.state_label.setText(str(exc))
            return False
        self.name_a.setText(short_name(a))
        self.name_b.setText(short_name(b))
        self.name_a.setToolTip(a)
        self.name_b.setToolTip(b)
        self._set_votable(False)
        self._pair = None
        self.state_label.setText(f"Vote stored: {OUTCOME_LABELS[outcome]}. A was {short_name(a)}, B was {short_name(b)}.")
        self.refresh_ratings()
        return True

    # ---- Internals
    def _ensure_worker(self) -> None:
        if self.thread is not None:
            return
        self.worker = ArenaWorker(self.device)
        self.sig_draw.connect(self.worker.draw)
        self.sig_ask.connect(self.worker.answer)
        self.worker.sig_drawn.connect(self.on_drawn)
        self.worker.sig_answered.connect(self.on_answered)
        self.worker.sig_failed.connect(self.on_failed)
        self.thread = start_in_thread(self.worker, self, "arena-worker")

    def _set_votable(self, on: bool) -> None:
        for button in self.vote_buttons.values():
            button.setEnabled(on)

    def _update_enabled(self) -> None:
        self.ask_button.setEnabled(len(self._models) >= 2)
        self.draw_button.setEnabled(bool(self._data))

    # ---- Qt events
    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)


if __name__ == "__main__":  # a preview of the page alone
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    page = ArenaPage()
    page.set_models(sys.argv[1:])
    page.resize(1000, 700)
    page.show()
    sys.exit(app.exec())
