"""The teacher's source on the Models page: a local model or a server URL (an OpenAI-compatible API).

In server mode the URL, the model name and the API-key variable are bound to ``teacher.url``,
``teacher.model`` and ``teacher.api_key_env``; the Test button asks the server, in a worker thread, for
its models and one short completion and shows them with the latency, or the one-line failure (server
down, wrong model, timeout, missing API-key variable). Choosing "local model" empties ``teacher.url``
(the typed URL is kept in the panel and comes back when the server is chosen again).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from distill_gui.core import config as cfg
from distill_gui.gui.fields import ConfigBinder, make_field_widget

TEST_TIMEOUT_S = 20.0
"""How long the Test button waits for the server's answer."""


class ServerCheckSignals(QObject):
    """The signals of one :class:`ServerCheckJob` (a QRunnable has none of its own)."""

    # ---- Signals
    sig_checked = Signal(int, object)
    """(request id, :class:`~distill_gui.core.served_teacher.ServerCheck`)."""
    sig_failed = Signal(int, str)
    """(request id, the one-line reason)."""


class ServerCheckJob(QRunnable):
    """``ServedTeacher.check`` in a pool thread: lists the models, asks one short completion, times it."""

    def __init__(self, request_id: int, url: str, model: str, api_key_env: str, timeout: float):
        super().__init__()
        self.setAutoDelete(False)  # the panel keeps it until its result arrives
        self.request_id, self.url, self.model, self.api_key_env, self.timeout = request_id, url, model, api_key_env, timeout
        self.signals = ServerCheckSignals()

    def run(self) -> None:
        from distill_gui.core.errors import describe
        from distill_gui.core.served_teacher import ServedTeacher

        try:
            teacher = ServedTeacher(self.url, model=self.model, api_key_env=self.api_key_env, timeout=self.timeout, max_retries=1)
            result = teacher.check()
        except Exception as exc:  # noqa: BLE001 - every failure is shown as one line
            self.signals.sig_failed.emit(self.request_id, describe(exc))
        else:
            self.signals.sig_checked.emit(self.request_id, result)


class ServedTeacherPanel(QWidget):
    """"Teacher: local model | server URL", the server's fields and its Test button."""

    # ---- Signals
    sig_mode_changed = Signal(bool)
    """True when the teacher is served (a server URL), False for a local model."""

    def __init__(self, binder: ConfigBinder, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("served_teacher_panel")
        self.timeout_s = TEST_TIMEOUT_S
        self._remembered_url = ""
        self._request = 0
        self._jobs: dict[int, ServerCheckJob] = {}
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)

        self.local_button = QRadioButton("Local model")
        self.local_button.setObjectName("teacher_local")
        self.local_button.setToolTip("The teacher's weights are loaded from a folder, a .gguf file or a hub id")
        self.served_button = QRadioButton("Server URL")
        self.served_button.setObjectName("teacher_served")
        self.served_button.setToolTip(
            "The teacher runs in Ollama, LM Studio, llama.cpp's server, vLLM or SGLang (an OpenAI-compatible API); "
            "it writes text, and where it returns top_logprobs and cuts text like the student it also fills KD's teacher cache"
        )
        self.local_button.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.local_button)
        group.addButton(self.served_button)
        self.served_button.toggled.connect(self.on_served_toggled)
        choice = QHBoxLayout()
        choice.addWidget(QLabel("Teacher:"))
        choice.addWidget(self.local_button)
        choice.addWidget(self.served_button)
        choice.addStretch(1)

        self.url_edit: QLineEdit = make_field_widget(cfg.ModelConfig, "url", "teacher.url")
        self.url_edit.setPlaceholderText("http://localhost:11434/v1 (Ollama), http://localhost:8080/v1 (llama.cpp) …")
        self.model_edit: QLineEdit = make_field_widget(cfg.ModelConfig, "model", "teacher.model")
        self.model_edit.setPlaceholderText("the server's model name (empty: its first model)")
        self.key_edit: QLineEdit = make_field_widget(cfg.ModelConfig, "api_key_env", "teacher.api_key_env")
        self.key_edit.setPlaceholderText("environment variable holding the API key (empty: none)")
        for widget in (self.url_edit, self.model_edit, self.key_edit):
            binder.add(widget)
        self.url_edit.set_config_value = self.show_config_url  # type: ignore[attr-defined]  # the binder shows a config through it

        self.test_button = QPushButton("Test")
        self.test_button.setObjectName("served_teacher_test")
        self.test_button.setToolTip("Ask the server for its models and one short answer, and time it")
        self.test_button.clicked.connect(self.on_test)
        self.result = QLabel("")
        self.result.setObjectName("served_teacher_result")
        self.result.setTextFormat(Qt.TextFormat.PlainText)
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note = QLabel(
            "The teacher is not loaded here. It writes the traces (Data page, generate-data) and the probe answers; "
            "soft-label KD reads its top log-probs into the teacher cache (method.kd.cache_teacher, top_k at most what "
            "the server gives, often 20) when it cuts text into the student's tokens, which the run checks before it starts."
        )
        self.note.setWordWrap(True)

        self.server_box = QWidget()
        form = QFormLayout(self.server_box)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Server URL", self.url_edit)
        form.addRow("Model name", self.model_edit)
        form.addRow("API key variable", self.key_edit)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_button)
        test_row.addWidget(self.result, 1)
        form.addRow(test_row)
        form.addRow(self.note)
        self.server_box.setVisible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(choice)
        layout.addWidget(self.server_box)

    # ---- Public API
    def is_served(self) -> bool:
        return self.served_button.isChecked()

    def set_served(self, served: bool) -> None:
        """Choose the source as the user would."""
        (self.served_button if served else self.local_button).setChecked(True)

    def show_config_url(self, value) -> None:
        """A config shown in the fields (not an edit) decides the mode: a URL means a served teacher."""
        url = "" if value is None else str(value)
        blocked = self.url_edit.blockSignals(True)
        self.url_edit.setText(url)
        self.url_edit.blockSignals(blocked)
        if url.strip():
            self._remembered_url = url
        self.set_served(bool(url.strip()))

    def test(self) -> int:
        """Start the server check in a pool thread; returns its request id (newer requests make older results stale)."""
        self._request += 1
        job = ServerCheckJob(
            self._request, self.url_edit.text().strip(), self.model_edit.text().strip(), self.key_edit.text().strip(), self.timeout_s
        )
        job.signals.sig_checked.connect(self.on_checked)
        job.signals.sig_failed.connect(self.on_failed)
        self._jobs[self._request] = job
        self.result.setText(f"Asking {self.url_edit.text().strip()} …")
        self.test_button.setEnabled(False)
        self.pool.start(job)
        return self._request

    # ---- Slots
    @Slot(bool)
    def on_served_toggled(self, served: bool) -> None:
        self.server_box.setVisible(served)
        if served and not self.url_edit.text().strip() and self._remembered_url:
            self._set_url(self._remembered_url)
        elif not served and self.url_edit.text().strip():
            self._remembered_url = self.url_edit.text()
            self._set_url("")  # an empty teacher.url: runs load the local teacher
        self.sig_mode_changed.emit(served)


    @Slot()
    def on_test(self) -> None:
        if not self.url_edit.text().strip():
            self.result.setText("✘ Give the server's URL first (e.g. http://localhost:11434/v1).")
            return
        self.test()

    @Slot(int, object)
    def on_checked(self, request_id: int, check) -> None:
        if self._finish(request_id):
            names = ", ".join(check.models[:8]) + (", …" if len(check.models) > 8 else "")
            self.result.setText(
                f"✔ {len(check.models)} model(s): {names}. {check.model} answered {check.sample!r} in {check.latency_s * 1000:.0f} ms."
            )

    @Slot(int, str)
    def on_failed(self, request_id: int, message: str) -> None:
        if self._finish(request_id):
            self.result.setText(f"✘ {message}")

    # ---- Internals
    def _finish(self, request_id: int) -> bool:
        """Drop the job; True when it is the newest request (its result is shown)."""
        self._jobs.pop(request_id, None)
        if request_id != self._request:
            return False
        self.test_button.setEnabled(True)
        return True

    def _set_url(self, url: str) -> None:
        self.url_edit.setText(url)
        self.url_edit.textEdited.emit(url)  # the binder records it as an edit


if __name__ == "__main__":
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv)
    panel = ServedTeacherPanel(ConfigBinder())
    panel.set_served(True)
    panel.show()
    sys.exit(app.exec())
