"""The Models page: teacher and student (folder, GGUF file or hub id), what they are, whether their
tokenizers allow soft-label KD, the memory the run needs, and quantization / LoRA settings."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from distill_gui.core import config as cfg
from distill_gui.gui.fields import ConfigBinder, add_fields, make_field_widget
from distill_gui.gui.served_teacher_panel import ServedTeacherPanel
from distill_gui.gui.settings import Settings

MODEL_FIELDS = ["dtype", "device", "quantization", "attn_implementation", "gguf_file", "tokenizer", "revision", "trust_remote_code", "allow_pickle"]


def _local_path_of(event: QDropEvent | QDragEnterEvent) -> str | None:
    mime = event.mimeData()
    if mime is None or not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.is_dir() or path.suffix.lower() == ".gguf":
                return str(path)
    return None


class ModelChooser(QGroupBox):
    """One model: its path (folder, .gguf file or hub id), load settings and a one-line description.

    Folders and .gguf files can be dropped on it.
    """

    # ---- Signals
    sig_path_chosen = Signal(str)
    """A path was picked with a dialog, dropped, or taken from the recent list."""

    def __init__(self, role: str, binder: ConfigBinder, settings: Settings, parent: QWidget | None = None):
        super().__init__(role.capitalize(), parent)
        self.role = role
        self.settings = settings
        self.setAcceptDrops(True)
        model_cls = cfg.StudentConfig if role == "student" else cfg.ModelConfig

        self.path_edit: QLineEdit = make_field_widget(model_cls, "path", f"{role}.path")
        self.path_edit.setPlaceholderText("Model folder, .gguf file or hub id (org/name) — or drop a folder here")
        binder.add(self.path_edit)
        folder_button = QPushButton("Folder…")
        folder_button.setToolTip(f"Choose the {role}'s Hugging Face model folder")
        gguf_button = QPushButton("GGUF…")
        gguf_button.setToolTip(f"Choose a .gguf file for the {role}")
        browse_button = QPushButton("Browse models…")
        browse_button.setObjectName(f"{role}_browse_models")
        browse_button.setToolTip("Models already on this machine: Hugging Face cache, Ollama, LM Studio, recent folders, "
                                 "this app's runs — searchable")
        browse_button.clicked.connect(self.on_browse_models)
        self.runs_root = ""
        """This app's runs folder (the picker lists their trained students)."""
        self.recent_button = QToolButton()
        self.recent_button.setText("Recent")
        self.recent_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.recent_menu = QMenu(self.recent_button)
        self.recent_button.setMenu(self.recent_menu)
        self.recent_menu.aboutToShow.connect(self.on_recent_menu)
        self.recent_menu.triggered.connect(self.on_recent_chosen)

        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse_button)
        path_row.addWidget(folder_button)
        path_row.addWidget(gguf_button)
        path_row.addWidget(self.recent_button)

        self.summary = QLabel("No model chosen.")
        self.summary.setObjectName(f"{role}_summary")
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        fields = add_fields(form, binder, model_cls, role, MODEL_FIELDS)
        self.trust_box: QCheckBox = fields[f"{role}.trust_remote_code"]
        self.gguf_edit: QLineEdit = fields[f"{role}.gguf_file"]
        self.trust_box.clicked.connect(self.on_trust_clicked)
        self.confirm_remote_code = self.ask_remote_code
        """Asks whether to run the model's Python files (role, files) -> bool; tests replace it."""

        layout = QVBoxLayout(self)
        self.local_parts = QWidget()
        """What only a model on this machine has (hidden for a served teacher)."""
        local = QVBoxLayout(self.local_parts)
        local.setContentsMargins(0, 0, 0, 0)
        local.addLayout(path_row)
        local.addWidget(self.summary)
        self.licence = QLabel("")
        self.licence.setObjectName(f"{role}_licence")
        self.licence.setWordWrap(True)
        self.licence.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        local.addWidget(self.licence)
        local.addLayout(form)
        layout.addWidget(self.local_parts)

        if role == "student":
            lora_box = QGroupBox("LoRA adapters (QLoRA with 4-bit quantization)")
            lora_form = QFormLayout(lora_box)
            add_fields(lora_form, binder, cfg.LoraConfig, "student.lora")
            layout.addWidget(lora_box)
        layout.addStretch(1)

        folder_button.clicked.connect(self.on_choose_folder)
        gguf_button.clicked.connect(self.on_choose_gguf)

    # ---- Public API
    def set_path(self, path: str) -> None:
        """Put ``path`` in the path field as if the user typed it."""
        self.path_edit.setText(path)
        self.path_edit.textEdited.emit(path)
        self.sig_path_chosen.emit(path)

    def show_summary(self, text: str, error: bool = False) -> None:
        self.summary.setText(text)
        self.summary.setProperty("error", error)
        font = self.summary.font()
        font.setItalic(error)
        self.summary.setFont(font)

    def show_licence(self, path: str) -> None:
        """The model's licence (model card, config.json, GGUF metadata or LICENSE); for a teacher, its terms in plain words."""
        from distill_gui.core.licences import detect_licence

        self.show_found_licence(detect_licence(path))

    def show_found_licence(self, found) -> None:
        """Show a DetectedLicence (read by the pair check's child process: a GGUF file's metadata is parsed there)."""
        from distill_gui.core.licences import teacher_notice

        lines = [f"Licence: {found.label() if found.known else 'none found on disk'}"]
        notice = teacher_notice(found) if self.role == "teacher" else None
        if notice:
            lines.append(notice)
        self.licence.setText("\n".join(lines))

    def ask_remote_code(self, role: str, files: list[str]) -> bool:
        """Ask before the model's own Python code may run (it runs in the checking and training processes)."""
        listed = "\n".join(files[:20]) if files else "(none found yet: a hub model's files are named once downloaded)"
        answer = QMessageBox.warning(
            self, "Run the model's own code?",
            f"With “Trust remote code” the {role} model's Python files run on this computer each time the model is "
            f"checked or loaded (in a separate process, never in this window):\n\n{listed}\n\n"
            "Allow this only for a source you trust.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def set_model(self, path: str, gguf_file: str = "") -> None:
        """Put a model found by the picker in the fields: a folder, a .gguf file, or a folder and its GGUF
        file when the file's name does not end in .gguf (Ollama's blobs)."""
        if gguf_file and gguf_file.lower().endswith(".gguf"):
            path, gguf_file = str(Path(path) / gguf_file), ""
        self.gguf_edit.setText(gguf_file)
        self.gguf_edit.textEdited.emit(gguf_file)
        self.set_path(path)

    def open_picker(self):
        """The model picker dialog for this role (not yet shown)."""
        from distill_gui.gui.model_picker import ModelPicker

        return ModelPicker(self.role, self.settings.recent_models(), self.runs_root, self)

    # ---- Slots
    @Slot()
    def on_browse_models(self) -> None:
        picker = self.open_picker()
        if picker.exec() and picker.chosen is not None:
            self.set_model(*picker.chosen)

    @Slot(bool)
    def on_trust_clicked(self, checked: bool) -> None:
        """Ticking "Trust remote code" asks first, naming the files; a "no" leaves it unticked."""
        if not checked:
            return
        from distill_gui.core.remote_code import remote_code_files

        self.trust_box.setChecked(False)  # unticked while the question is open: nothing checks the model with it
        if self.confirm_remote_code(self.role, remote_code_files(self.path_edit.text().strip())):
            self.trust_box.setChecked(True)

    @Slot()
    def on_choose_folder(self) -> None:
        start = self.path_edit.text() or str(Path.home())
        path = QFileDialog.getExistingDirectory(self, f"Choose the {self.role} model folder", start)
        if path:
            self.set_path(path)

    @Slot()
    def on_choose_gguf(self) -> None:
        start = str(Path(self.path_edit.text()).parent) if self.path_edit.text() else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, f"Choose a GGUF file for the {self.role}", start, "GGUF models (*.gguf);;All files (*)")
        if path:
            self.set_path(path)

    @Slot()
    def on_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent_models()
        if not recent:
            action = self.recent_menu.addAction("(no recent models)")
            action.setEnabled(False)
        for path in recent:
            self.recent_menu.addAction(path).setData(path)

    @Slot(object)
    def on_recent_chosen(self, action) -> None:
        path = action.data()
        if path:
            self.set_path(str(path))

    # ---- Qt events
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if _local_path_of(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        path = _local_path_of(event)
        if path:
            self.set_path(path)
            event.acceptProposedAction()


class ModelsPage(QWidget):
    """Teacher and student side by side, then the pair check (tokenizers and memory)."""

    # ---- Signals
    sig_check_requested = Signal()
    """The user asked to check the pair again."""

    def __init__(self, binder: ConfigBinder, settings: Settings, parent: QWidget | None = None):
        super().__init__(parent)
        self.teacher = ModelChooser("teacher", binder, settings)
        self.student = ModelChooser("student", binder, settings)
        self.served_teacher = ServedTeacherPanel(binder)
        self.teacher.layout().insertWidget(0, self.served_teacher)
        self.served_teacher.sig_mode_changed.connect(self.on_teacher_served)

        self.compatibility = QLabel("Choose a teacher and a student to compare their tokenizers.")
        self.compatibility.setObjectName("compatibility")
        self.compatibility.setTextFormat(Qt.TextFormat.RichText)
        self.compatibility.setWordWrap(True)
        self.compatibility.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.memory = QLabel("The memory estimate appears once the student is known.")
        self.memory.setObjectName("memory_estimate")
        self.memory.setTextFormat(Qt.TextFormat.RichText)
        self._failed: dict[str, str] = {}
        self.memory.setWordWrap(True)
        self.memory.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.check_state = QLabel("")
        self.check_state.setObjectName("check_state")
        check_button = QPushButton("Check again")
        check_button.setToolTip("Read both models again and redo the tokenizer check and memory estimate")
        check_button.clicked.connect(self.sig_check_requested)

        pair_box = QGroupBox("Pair check")
        pair = QGridLayout(pair_box)
        pair.addWidget(QLabel("<b>Tokenizers</b>"), 0, 0, Qt.AlignmentFlag.AlignTop)
        pair.addWidget(self.compatibility, 0, 1)
        self.served_note = QLabel(
            "The teacher is served: its tokenizer is checked when a KD run starts (the server must return log-probs of "
            "given text and cut it into the student's tokens; otherwise soft-label KD is refused, and SFT on text the "
            "server writes still works). The memory estimate counts no teacher weights for KD from its cache."
        )
        self.served_note.setObjectName("served_teacher_note")
        self.served_note.setWordWrap(True)
        self.served_note.setVisible(False)
        pair.addWidget(self.served_note, 0, 1)
        pair.addWidget(QLabel("<b>Memory</b>"), 1, 0, Qt.AlignmentFlag.AlignTop)
        pair.addWidget(self.memory, 1, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.check_state, 1)
        buttons.addWidget(check_button)
        pair.addLayout(buttons, 2, 0, 1, 2)
        pair.setColumnStretch(1, 1)

        models = QHBoxLayout()
        models.addWidget(self.teacher, 1)
        models.addWidget(self.student, 1)

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addLayout(models)
        layout.addWidget(pair_box)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    @Slot(bool)
    def on_teacher_served(self, served: bool) -> None:
        """A served teacher has no local path, load settings or tokenizer verdict here: hidden, and the note says why."""
        self.teacher.local_parts.setVisible(not served)
        self.compatibility.setVisible(not served)
        self.served_note.setVisible(served)

    def set_runs_root(self, root: str) -> None:
        self.teacher.runs_root = self.student.runs_root = str(root)

    def chooser(self, role: str) -> ModelChooser:
        return self.teacher if role == "teacher" else self.student

    # ---- Results of the background check
    def checking(self, pair: bool = True) -> None:
        """A check started: the previous verdicts are cleared at once (``pair``: the models themselves changed)."""
        self.check_state.setText("Checking the models…")
        self._failed.clear()
        if pair:
            self.compatibility.setText("<i>checking…</i>")
            for chooser in (self.teacher, self.student):
                chooser.licence.setText("")
        self.memory.setText("<i>checking…</i>")
        self.memory.setToolTip("")

    def show_described(self, role: str, info) -> None:
        self.chooser(role).show_summary(info.summary())

    def show_failed(self, role: str, message: str) -> None:
        if role in ("teacher", "student"):
            self._failed[role] = message
            self.chooser(role).show_summary(message, error=True)
        elif role == "pair":
            self.compatibility.setText(html.escape(message))
        else:
            self.memory.setText(html.escape(message))

    def show_compatibility(self, compat) -> None:
        verdicts = {"identical": "✔ Identical", "padded": "✔ Compatible (padded)", "different": "✘ Different"}
        self.compatibility.setText(f"<b>{verdicts.get(compat.verdict, compat.verdict)}</b> — {html.escape(compat.message)}")

    def show_memory(self, estimate) -> None:
        text = "<br>".join(line.replace(" ", "&nbsp;") for line in estimate.lines())
        self.memory.setText(f"<span style='font-family: monospace'>{text}</span>")
        self.memory.setToolTip(estimate.summary())

    def show_not_comparable(self, reason: str) -> None:
        self.compatibility.setText(html.escape(reason))
        self.memory.setText(html.escape(reason))

    def done(self) -> None:
        """The check ended: a verdict still "checking…" says why there is none."""
        self.check_state.setText("")
        failed = [role for role in ("teacher", "student") if role in self._failed]
        why = (f"the {' and the '.join(failed)} could not be read (see {'their' if len(failed) > 1 else 'its'} box above)"
               if failed else "")
        if "checking…" in self.compatibility.text():
            both = self.teacher.path_edit.text().strip() and self.student.path_edit.text().strip()
            self.compatibility.setText(f"No verdict: {why}." if why else
                                       "Choose a teacher and a student to compare their tokenizers." if not both else "No verdict.")
        if "checking…" in self.memory.text():
            self.memory.setText(f"No estimate: {why}." if why else "The memory estimate appears once the student is known.")
