"""How a configuration field is declared: type (the annotation), default, allowed values, range and doc.

Config sections are ``@dataclass``es whose fields are made with :func:`option` (free value, optional
``min``/``max``) or :func:`choice` (one of a tuple). The loader (:mod:`distill_gui.core.config`), the
command line's help and the app's generated forms (``gui/fields.py``) all read this metadata, so a
setting is declared once. ``when={"loss": "jsd"}`` marks a field that matters only when a sibling
field has that value (the app greys it out otherwise).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from distill_gui.core.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration key or value is wrong; the message names the key and what is allowed."""


def option(default: Any = dataclasses.MISSING, doc: str = "", factory: Any = dataclasses.MISSING, **limits: Any) -> Any:
    """A config field with a doc and optional ``min``/``max``/``when`` limits."""
    meta = {"doc": doc, **limits}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def choice(default: Any, choices: tuple, doc: str, **extra: Any) -> Any:
    """A config field whose value is one of ``choices``."""
    return dataclasses.field(default=default, metadata={"choices": tuple(choices), "doc": doc, **extra})


def field_of(cls: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(name)
