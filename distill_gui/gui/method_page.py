"""The Method page: the recipe, the method (from the registry) with its own settings, and the training settings.

It opens with the recipe picker (:mod:`distill_gui.gui.recipe_picker`): the ways to distil in plain
words; choosing one fills the method, its ``stages`` and (for synthetic data) ``data.mix`` from
:mod:`distill_gui.core.recipes`, and the picker shows the stages in order and what the recipe still
needs. The raw settings stay below it. Every widget edits one config key (its objectName) and carries
the field's doc as tooltip; the configuration opens from and saves to the same YAML the command line
reads, and a saved config opens on the recipe it follows ("Custom" when it follows none). Each
registered method gets a form generated from its config section; a new method appears here without a
change to this file.
"""

from __future__ import annotations

import copy
import dataclasses

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from distill_gui.core import config as cfg
from distill_gui.core import methods, recipes
from distill_gui.gui.fields import ConfigBinder, add_fields, default_config_dict, make_field_widget, set_widget_value, widget_value
from distill_gui.gui.recipe_picker import RecipePicker
from distill_gui.gui.traces_panel import TracesPanel

TRAINING_LEFT = ["max_steps", "num_epochs", "batch_size", "gradient_accumulation_steps", "learning_rate", "weight_decay",
                 "warmup_steps", "lr_scheduler", "max_grad_norm", "precision", "gradient_checkpointing", "seed"]
TRAINING_RIGHT = ["logging_steps", "eval_steps", "save_steps", "save_total_limit", "sample_steps", "num_probe_prompts",
                  "max_new_tokens", "probe_prompts", "report_to"]


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

        self.recipe = RecipePicker()
        binder.add(self.recipe.stages_value)
        binder.add(self.recipe.mix_value)
        self.recipe.sig_recipe_chosen.connect(self.on_recipe_chosen)
        self.recipe.sig_adjust_requested.connect(self.on_adjust_requested)
        self._base: dict | None = None  # the whole config the window shows (keys no widget edits included)
        self._references: bool | None = None  # whether the previewed training data has reference answers

        method_box = QGroupBox("Method")
        self.method_box = method_box
        kind_form = QFormLayout()
        add_fields(kind_form, binder, cfg.MethodConfig, "method", ["kind"])
        self.stack = QStackedWidget()
        self.stack.setObjectName("method_settings")
        self._stack_index: dict[str, int] = {}
        self._conditions: list[tuple[str, str, dict]] = []  # (key, method, {sibling: value})
        for method in methods.all_methods():
            self._stack_index[method.name] = self.stack.addWidget(self._method_panel(method))
        method_layout = QVBoxLayout(method_box)
        method_layout.addLayout(kind_form)
        method_layout.addWidget(self.stack)

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
        layout.addWidget(self.recipe)
        layout.addWidget(method_box)
        layout.addWidget(self.traces)
        layout.addWidget(training_box)
        layout.addStretch(1)
        scroll = self.scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        binder.sig_edited.connect(self.on_config_edited)
        self.update_enabled()

    def _method_panel(self, method: methods.Method) -> QWidget:
        """A method's settings form (generated from its config section) beside its explanation."""
        panel = QWidget()
        panel.setObjectName(f"method_panel.{method.name}")
        form = QFormLayout()
        prefix = f"method.{method.name}"
        add_fields(form, self.binder, method.Config, prefix)
        for f in dataclasses.fields(method.Config):
            when = f.metadata.get("when")
            if when:
                self._conditions.append((f"{prefix}.{f.name}", method.name, dict(when)))
        if form.rowCount() == 0:
            form.addRow(QLabel(f"{method.title} has no settings of its own."))
        summary = QLabel(method.summary)
        summary.setWordWrap(True)
        layout = QHBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form, 1)
        layout.addWidget(summary, 1)
        return panel

    # ---- Public API
    def update_enabled(self, base: dict | None = None) -> None:
        """Show the chosen method's settings (a field that matters only for a sibling's value is greyed otherwise)
        and the recipe the settings follow; ``base``: the whole config the window shows, when it changed."""
        if base is not None:
            self._base = base
        combo = self.binder.widget("method.kind")
        kind = combo.currentData() or combo.currentText()
        if kind in self._stack_index:
            self.stack.setCurrentIndex(self._stack_index[kind])
        for key, method, when in self._conditions:
            prefix = key.rsplit(".", 1)[0]
            active = all(widget_value(self.binder.widget(f"{prefix}.{name}")) == value for name, value in when.items())
            self.binder.widget(key).setEnabled(active)
        self.refresh_recipe()

    def set_data_references(self, examples: list | None) -> None:
        """The previewed training rows (None: not loaded): whether any has a reference answer for the verifier."""
        from distill_gui.core.methods.rlvr import reference_of

        self._references = None if examples is None else any(reference_of(e) for e in examples)
        self.refresh_recipe()

    def config_dict(self) -> dict:
        """The config the pages show, as a mapping."""
        data = copy.deepcopy(self._base) if self._base is not None else default_config_dict()
        self.binder.read_into(data)
        return data

    def refresh_recipe(self) -> None:
        """Show the recipe the settings follow, its stages and which of its needs are met."""
        data = self.config_dict()
        recipe = recipes.recipe_of(data)
        checks: list[recipes.NeedCheck] = []
        command, problem = "", ""
        try:
            config = cfg.config_from_dict(copy.deepcopy(data))
        except cfg.ConfigError as exc:
            problem = str(exc)
        else:
            if recipe is not None:
                checks = recipes.check_needs(recipe, config, references=self._references, read_data=False)
                wanted = [c for c in checks if c.need == recipes.SYNTHETIC_DATA and c.met is False]
                if wanted:
                    paths = [m.path for m in config.data.mix if m.path] or [recipes.synthetic_path(config.data.train)]
                    command = recipes.synthetic_command(config, paths[0])
        self.recipe.show_state(recipe, data.get("stages") or [], checks, command, problem)

    # ---- Slots
    @Slot(str)
    def on_recipe_chosen(self, name: str) -> None:
        """Fill the method, the stages and data.mix from the recipe; the other settings stay as they are."""
        recipe = recipes.get(name)
        changed = []
        for key, value in _flat(recipe.fragment(self.config_dict())):
            if key not in self.binder.keys():
                continue
            widget = self.binder.widget(key)
            if widget_value(widget) != value:
                set_widget_value(widget, value)
                changed.append(key)
        self.update_enabled()
        for key in changed:
            self.binder.sig_edited.emit(key)

    @Slot()
    def on_adjust_requested(self) -> None:
        self.scroll.ensureWidgetVisible(self.method_box, 0, 0)
        self.binder.widget("method.kind").setFocus()

    @Slot(str)
    def on_config_edited(self, key: str) -> None:
        if key.startswith("method.") or key == "":
            self.update_enabled()
        else:
            self.refresh_recipe()


def _flat(fragment: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Dotted keys and values of a config fragment (lists are values)."""
    out: list[tuple[str, object]] = []
    for key, value in fragment.items():
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out
