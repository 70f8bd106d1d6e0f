"""Widgets that edit config fields, built from the dataclass fields of :mod:`distill_gui.core.config`.

Each widget's ``objectName`` is the dotted config key it edits (``training.max_steps``) and its tooltip
is the field's doc. A :class:`ConfigBinder` reads the widgets into a plain config mapping and writes a
mapping back into the widgets.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QWidget,
)

from distill_gui.core import config as cfg

INT_MAX = 2**31 - 1

# A few fields read better under a short label than under their attribute name.
LABELS = {
    "method.kind": "Method",
    "method.kd.loss": "KD loss",
    "method.kd.beta": "β (JSD)",
    "method.kd.temperature": "Temperature T",
    "method.kd.alpha": "α (KD weight)",
    "method.kd.top_k": "Teacher top-k",
    "student.lora.r": "Rank r",
    "student.lora.alpha": "Alpha (scaling)",
    "gguf_file": "GGUF file in folder",
    "max_steps": "Max steps",
    "gradient_accumulation_steps": "Grad accumulation",
    "lr_scheduler": "LR schedule",
    "max_grad_norm": "Clip grad norm",
    "trust_remote_code": "Trust remote code",
    "allow_pickle": "Allow pickle weights",
    "target_modules": "Target modules",
    "dtype": "Weights dtype",
}


# Choices shown as words, with the config value beside them (field name -> value -> words).
CHOICE_WORDS = {
    "loss": {"forward_kl": "Forward KL (mean-seeking)", "reverse_kl": "Reverse KL (mode-seeking)",
             "jsd": "Generalized JSD (between the two)"},
    "lr_scheduler": {"linear": "Linear decay", "cosine": "Cosine decay", "constant": "Constant",
                     "constant_with_warmup": "Constant after warmup"},
    "quantization": {"none": "Full weights", "8bit": "8-bit (bitsandbytes)", "4bit": "4-bit NF4 (QLoRA)"},
    "dtype": {"auto": "Automatic", "fp32": "32-bit float", "bf16": "bfloat16", "fp16": "float16"},
    "precision": {"auto": "Automatic", "fp32": "32-bit float", "bf16": "bfloat16", "fp16": "float16"},
}


def choice_label(key: str, value: str) -> str:
    """How a choice reads in its list: words, then the config value ("Forward KL (mean-seeking) · forward_kl")."""
    if key == "method.kind":
        from distill_gui.core import methods

        try:
            words = methods.get(value).title
        except Exception:  # noqa: BLE001 - an unknown method is shown by its value
            words = ""
    else:
        words = CHOICE_WORDS.get(key.rsplit(".", 1)[-1], {}).get(value, "")
    return f"{words}  ·  {value}" if words and words != value else value


def label_for(key: str) -> str:
    """The form label of a config key: a chosen one, else the field name in words."""
    name = key.rsplit(".", 1)[-1]
    return LABELS.get(key) or LABELS.get(name) or name.replace("_", " ").capitalize()


def _field(cls: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(name)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(type, optional) with ``X | None`` unwrapped."""
    args = typing.get_args(tp)
    if type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return inner[0], True
    return tp, False


def format_float(value: float) -> str:
    if value is None:
        return ""
    if value == 0:
        return "0"
    if math.isfinite(value) and (abs(value) < 1e-3 or abs(value) >= 1e6):
        return f"{value:.3g}"
    return f"{value:.6g}"


class FloatEdit(QLineEdit):
    """A line edit for floats of any magnitude (learning rates): shows ``5e-05``, accepts any number."""

    def __init__(self, parent: QWidget | None = None, minimum: float | None = None):
        super().__init__(parent)
        validator = QDoubleValidator(self)
        validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
        if minimum is not None:
            validator.setBottom(minimum)
        self.setValidator(validator)

    def value(self) -> float:
        try:
            return float(self.text())
        except ValueError:
            return float("nan")

    def setValue(self, value: float) -> None:  # noqa: N802 (Qt naming)
        self.setText(format_float(value))


def make_field_widget(cls: type, name: str, key: str, parent: QWidget | None = None) -> QWidget:
    """The editor for field ``name`` of config class ``cls``, named ``key`` with the field doc as tooltip."""
    f = _field(cls, name)
    tp, optional = _base_type(typing.get_type_hints(cls)[name])
    meta = f.metadata
    origin = typing.get_origin(tp)
    if meta.get("choices"):
        widget: QWidget = QComboBox(parent)
        for value in meta["choices"]:
            widget.addItem(choice_label(key, str(value)), value)
    elif tp is bool:
        widget = QCheckBox(parent)
    elif tp is int:
        widget = QSpinBox(parent)
        widget.setRange(int(meta.get("min", -INT_MAX)), int(meta.get("max", INT_MAX)))
        widget.setAccelerated(True)
    elif tp is float and "min" in meta and "max" in meta:
        widget = QDoubleSpinBox(parent)
        widget.setRange(float(meta["min"]), float(meta["max"]))
        widget.setDecimals(3)
        widget.setSingleStep(0.05)
    elif tp is float:
        widget = FloatEdit(parent, meta.get("min"))
    elif origin is list and name == "probe_prompts":
        widget = QPlainTextEdit(parent)
        widget.setPlaceholderText("One prompt a line (empty: the first prompts of the data)")
        widget.setTabChangesFocus(True)  # Tab moves to the next field, as in every other field
        widget.setMaximumHeight(90)
    elif origin is list:
        widget = QLineEdit(parent)
        widget.setPlaceholderText("comma-separated")
    else:
        widget = QLineEdit(parent)
        if optional:
            widget.setPlaceholderText("(not set)")
    widget.setObjectName(key)
    widget.setToolTip(meta.get("doc", ""))
    widget.setProperty("configKey", key)
    widget.setProperty("configOptional", optional)
    widget.setProperty("configList", origin is list)
    return widget


def widget_value(widget: QWidget) -> Any:
    """The config value a field widget holds."""
    if hasattr(widget, "config_value"):
        return widget.config_value()
    if isinstance(widget, QComboBox):
        data = widget.currentData()
        return data if data is not None else widget.currentText()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        return widget.value()
    if isinstance(widget, FloatEdit):
        text = widget.text().strip()
        return float(text) if text else None
    if isinstance(widget, QPlainTextEdit):
        return [line.strip() for line in widget.toPlainText().splitlines() if line.strip()]
    if isinstance(widget, QLineEdit):
        text = widget.text().strip()
        if widget.property("configList"):
            return [part.strip() for part in text.split(",") if part.strip()]
        if not text and widget.property("configOptional"):
            return None
        return text
    raise TypeError(f"no config value in {type(widget).__name__}")


def set_widget_value(widget: QWidget, value: Any) -> None:
    """Show ``value`` in a field widget without emitting edits as user changes."""
    if hasattr(widget, "set_config_value"):
        widget.set_config_value(value)
        return
    blocked = widget.blockSignals(True)
    try:
        if isinstance(widget, QComboBox):
            index = widget.findData(value)
            if index < 0:
                index = widget.findText(str(value))
            if index < 0:
                widget.addItem(str(value), value)
                index = widget.count() - 1
            widget.setCurrentIndex(index)
        elif isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        elif isinstance(widget, QSpinBox):
            widget.setValue(int(value))
        elif isinstance(widget, QDoubleSpinBox):
            widget.setValue(float(value))
        elif isinstance(widget, FloatEdit):
            widget.setValue(value)
        elif isinstance(widget, QPlainTextEdit):
            widget.setPlainText("\n".join(value or []))
        elif isinstance(widget, QLineEdit):
            if isinstance(value, (list, tuple)):
                widget.setText(", ".join(value))
            else:
                widget.setText("" if value is None else str(value))
        else:
            raise TypeError(f"cannot show a config value in {type(widget).__name__}")
    finally:
        widget.blockSignals(blocked)


def _changed_signal(widget: QWidget):
    if hasattr(widget, "sig_config_edited"):
        return widget.sig_config_edited
    if isinstance(widget, QComboBox):
        return widget.currentTextChanged
    if isinstance(widget, QCheckBox):
        return widget.toggled
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        return widget.valueChanged
    if isinstance(widget, QPlainTextEdit):
        return widget.textChanged
    if isinstance(widget, QLineEdit):
        return widget.textEdited
    return None


def get_key(data: dict, key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        node = node[part]
    return node


def set_key(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


class ConfigBinder(QObject):
    """Keeps a set of field widgets and moves values between them and a config mapping."""

    sig_edited = Signal(str)
    """A widget was edited by the user; the argument is its config key."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._widgets: dict[str, QWidget] = {}

    def add(self, widget: QWidget, key: str | None = None) -> QWidget:
        key = key or widget.objectName()
        self._widgets[key] = widget
        signal = _changed_signal(widget)
        if signal is not None:
            signal.connect(self._on_widget_changed)
        return widget

    def _on_widget_changed(self, *_args) -> None:
        sender = self.sender()
        key = sender.property("configKey") if sender is not None else None
        self.sig_edited.emit(str(key or ""))

    def widget(self, key: str) -> QWidget:
        return self._widgets[key]

    def keys(self) -> list[str]:
        return list(self._widgets)

    def read_into(self, data: dict) -> None:
        """Write each widget's value into the mapping ``data`` (nested sections)."""
        for key, widget in self._widgets.items():
            set_key(data, key, widget_value(widget))

    def show(self, data: dict) -> None:
        """Show the values of the mapping ``data`` in the widgets."""
        for key, widget in self._widgets.items():
            try:
                value = get_key(data, key)
            except KeyError:
                continue
            set_widget_value(widget, value)


def add_fields(form: QFormLayout, binder: ConfigBinder, cls: type, prefix: str, names: list[str] | None = None) -> dict[str, QWidget]:
    """Add a row per field of ``cls`` (all plain fields, or ``names``) to ``form``; returns key → widget."""
    hints = typing.get_type_hints(cls)
    made = {}
    for f in dataclasses.fields(cls):
        if names is not None and f.name not in names:
            continue
        if dataclasses.is_dataclass(_base_type(hints[f.name])[0]):
            continue
        key = f"{prefix}.{f.name}" if prefix else f.name
        widget = make_field_widget(cls, f.name, key)
        binder.add(widget)
        form.addRow(label_for(key), widget)
        made[key] = widget
    if names is not None:
        missing = set(names) - {k.rsplit(".", 1)[-1] for k in made}
        if missing:
            raise KeyError(f"{cls.__name__} has no fields {sorted(missing)}")
    return made


def default_config_dict() -> dict:
    return cfg.config_to_dict(cfg.RunConfig())
