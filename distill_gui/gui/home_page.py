"""The Home page for the first minutes: what the app does, the demo in one button, "Distill my own model"
as a guided list of steps (teacher → student → data → recipe → Start), and the recent runs."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

INTRO = ("<h2>Make a small model behave like a big one</h2>"
         "<p>distill-gui trains a small <b>student</b> model on the answers of a large <b>teacher</b> (knowledge "
         "distillation), on your own computer. You watch it learn, ask both models questions, and export the "
         "student for llama.cpp, Ollama or Hugging Face.</p>")

# (step key, title, page it opens, what to do there)
STEPS = (
    ("teacher", "1. Teacher", "Models", "the large model to learn from: a folder, a .gguf file or a cached hub model"),
    ("student", "2. Student", "Models", "the small model to train (same tokenizer as the teacher for token-level KD)"),
    ("data", "3. Data", "Data", "prompts (and answers) to train on: JSONL, CSV or Parquet"),
    ("recipe", "4. Recipe", "Method", "how the student learns, and for how long"),
    ("start", "5. Start", "Train", "train, watch the curves, pause or stop at any time"),
)
DONE, WAITING, PROBLEM = "done", "waiting", "problem"
MARKS = {DONE: "✔", WAITING: "…", PROBLEM: "✘"}
RECENT_RUNS = 6


class HomePage(QWidget):
    """Entry points for a new user; the other pages stay for people who know them."""

    # ---- Signals
    sig_demo_requested = Signal()
    """Start the demo (the demo pair, its data and recipe)."""
    sig_page_requested = Signal(str)
    """Open a page by name (a step of the guided flow)."""
    sig_open_run = Signal(str)
    """Open a recent run (its folder)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        intro = QLabel(INTRO)
        intro.setObjectName("home_intro")
        intro.setWordWrap(True)
        intro.setTextFormat(Qt.TextFormat.RichText)

        self.demo_button = QPushButton("Start the demo")
        self.demo_button.setObjectName("start_demo")
        self.demo_button.setToolTip("Train the built-in tiny student on the demo teacher's arithmetic answers (a few minutes on a CPU)")
        self.demo_button.clicked.connect(self.sig_demo_requested)
        self.demo_state = QLabel("")
        self.demo_state.setObjectName("demo_state")
        self.demo_state.setTextFormat(Qt.TextFormat.PlainText)
        self.demo_state.setWordWrap(True)
        demo_box = QGroupBox("Try it")
        demo_layout = QHBoxLayout(demo_box)
        demo_layout.addWidget(self.demo_button)
        demo_layout.addWidget(self.demo_state, 1)

        flow_box = QGroupBox("Distill my own model")
        flow = QGridLayout(flow_box)
        self.step_marks: dict[str, QLabel] = {}
        self.step_notes: dict[str, QLabel] = {}
        self.step_buttons: dict[str, QPushButton] = {}
        for row, (key, title, page, doc) in enumerate(STEPS):
            mark = QLabel(MARKS[WAITING])
            mark.setObjectName(f"home_step_{key}_mark")
            button = QPushButton(title)
            button.setObjectName(f"home_step_{key}")
            button.setToolTip(f"Open the {page} page: {doc}")
            button.setProperty("page", page)
            button.clicked.connect(self.on_step_clicked)
            note = QLabel(doc)
            note.setObjectName(f"home_step_{key}_note")
            note.setTextFormat(Qt.TextFormat.PlainText)
            note.setWordWrap(True)
            flow.addWidget(mark, row, 0)
            flow.addWidget(button, row, 1)
            flow.addWidget(note, row, 2)
            self.step_marks[key], self.step_buttons[key], self.step_notes[key] = mark, button, note
        flow.setColumnStretch(2, 1)

        runs_box = QGroupBox("Recent runs")
        self.recent = QListWidget()
        self.recent.setObjectName("home_recent_runs")
        self.recent.itemActivated.connect(self.on_recent_activated)
        runs_layout = QVBoxLayout(runs_box)
        runs_layout.addWidget(self.recent)
        self.set_recent_runs([])

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(demo_box)
        layout.addWidget(flow_box)
        layout.addWidget(runs_box, 1)

    # ---- Public API
    def set_demo_available(self, reason: str) -> None:
        """"" when the demo can start, else why not."""
        self.demo_button.setEnabled(not reason)
        self.demo_state.setText(reason)

    def set_step(self, key: str, state: str, note: str) -> None:
        """Show one step's state (done, waiting or problem) and a line about it."""
        self.step_marks[key].setText(MARKS[state])
        self.step_marks[key].setProperty("state", state)
        self.step_notes[key].setText(note)

    def step_state(self, key: str) -> str:
        return str(self.step_marks[key].property("state") or WAITING)

    def set_recent_runs(self, runs: list[tuple[str, str]]) -> None:
        """(label, run folder) pairs, newest first."""
        self.recent.clear()
        for label, path in runs[:RECENT_RUNS]:
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, path)
            self.recent.addItem(item)
        if not runs:
            item = QListWidgetItem("No runs yet: start the demo, or follow the steps above.")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.recent.addItem(item)

    # ---- Slots
    @Slot()
    def on_step_clicked(self) -> None:
        button = self.sender()
        if button is not None:
            self.sig_page_requested.emit(str(button.property("page")))

    @Slot(QListWidgetItem)
    def on_recent_activated(self, item: QListWidgetItem) -> None:
        path = item.data(Qt.ItemDataRole.UserRole)
        if path:
            self.sig_open_run.emit(str(path))
