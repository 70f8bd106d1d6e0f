"""The Method page: soft-label KD or hard-label SFT with their knobs, and the training settings.

Every widget edits one config key (its objectName) and carries the field's doc as tooltip; the
configuration opens from and saves to the same YAML the command line reads.
"""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from distill_gui.core import config as cfg
from distill_gui.gui.fields import ConfigBinder, add_fields, make_field_widget
from distill_gui.gui.traces_panel import TracesPanel

KD_ONLY = ("method.loss", "method.beta", "method.temperature", "method.alpha", "method.top_k", "method.chunk_size",
           "method.cache_teacher", "method.teacher_cache")

TRAINING_LEFT = ["max_steps", "num_epochs", "batch_size", "gradient_accumulation_steps", "learning_rate", "weight_decay",
                 "warmup_steps", "lr_scheduler", "max_grad_norm", "precision", "gradient_checkpointing", "seed"]
TRAINING_RIGHT = ["logging_steps", "eval_steps", "save_steps", "save_total_limit", "sample_steps", "num_probe_prompts",
                  "max_new_tokens", "probe_prompts"]

EXPLANATION = (
    "<b>Soft-label KD</b> trains the student to match the teacher's whole next-token distribution "
    "(forward KL, reverse KL or generalized JSD with β), mixed with the ordinary cross-entropy on the data "
    "by α. <b>SFT</b> fine-tunes the student on the data's text alone (hard labels) — the choice when the "
    "tokenizers differ, e.g. on answers the teacher wrote."
)


class MethodPage(QWidget):
    """Method and training settings, plus opening and saving config files."""

    # ---- Signals
    sig_open_requested = Signal()
    """Open a config YAML."""
    sig_save_requested = Signal()
    """Save the current settings as a config YAML."""
    sig_reset_requested = Signal()
    """Go back to the default settings."""

    def __init__(self, binder: ConfigBinder, parent: QWidget | None = None):
        super().__init__(parent)
        self.binder = binder
        name = binder.add(make_field_widget(cfg.RunConfig, "name", "name"))
        name_form = QFormLayout()
        name_form.addRow("Run name", name)

        method_box = QGroupBox("Method")
        method_form = QFormLayout()
        add_fields(method_form, binder, cfg.MethodConfig, "method")
        explanation = QLabel(EXPLANATION)
        explanation.setWordWrap(True)
        method_layout = QHBoxLayout(method_box)
        method_layout.addLayout(method_form, 1)
        method_layout.addWidget(explanation, 1)

        training_box = QGroupBox("Training")
        left, right = QFormLayout(), QFormLayout()
        add_fields(left, binder, cfg.TrainingConfig, "training", TRAINING_LEFT)
        add_fields(right, binder, cfg.TrainingConfig, "training", TRAINING_RIGHT)
        training_layout = QHBoxLayout(training_box)
        training_layout.addLayout(left, 1)
        training_layout.addLayout(right, 1)

        open_button = QPushButton("Open config…")
        open_button.setToolTip("Load settings from a YAML config file (Ctrl+O)")
        save_button = QPushButton("Save config…")
        save_button.setToolTip("Save the settings as a YAML config file the command line reads too (Ctrl+S)")
        reset_button = QPushButton("Defaults")
        reset_button.setToolTip("Reset method and training settings to their defaults")
        open_button.clicked.connect(self.sig_open_requested)
        save_button.clicked.connect(self.sig_save_requested)
        reset_button.clicked.connect(self.sig_reset_requested)
        buttons = QHBoxLayout()
        buttons.addLayout(name_form, 1)
        buttons.addWidget(open_button)
        buttons.addWidget(save_button)
        buttons.addWidget(reset_button)

        self.traces = TracesPanel()

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addLayout(buttons)
        layout.addWidget(method_box)
        layout.addWidget(self.traces)
        layout.addWidget(training_box)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        binder.sig_edited.connect(self.on_config_edited)
        self.update_enabled()

    # ---- Public API
    def update_enabled(self) -> None:
        """KD knobs only for kd; β only for the JSD loss; the cache file only when the teacher is cached."""
        kd = self.binder.widget("method.kind").currentText() == "kd"
        for key in KD_ONLY:
            self.binder.widget(key).setEnabled(kd)
        jsd = self.binder.widget("method.loss").currentText() == "jsd"
        self.binder.widget("method.beta").setEnabled(kd and jsd)
        self.binder.widget("method.teacher_cache").setEnabled(kd and self.binder.widget("method.cache_teacher").isChecked())

    # ---- Slots
    @Slot(str)
    def on_config_edited(self, key: str) -> None:
        if key in ("method.kind", "method.loss", "method.cache_teacher", ""):
            self.update_enabled()
