"""The training methods, one module each, found by name.

A method is a :class:`~distill_gui.core.methods.base.Method` subclass in a module of this package
(``kd.py``, ``sft.py``, ...). The config loader, the training loop, the memory estimate, the command
line and the app ask this registry instead of matching ``method.kind`` strings, so adding a method is
one new file here plus its tests.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from typing import TYPE_CHECKING

from distill_gui.core.methods.base import (
    STANDARD_METRICS,
    TEACHER_LOGITS,
    TEACHER_NONE,
    TEACHER_TEXT,
    LossResult,
    MemoryInputs,
    Method,
    MethodMemory,
    MetricSpec,
    StepContext,
    trained_positions,
)
from distill_gui.core.schema import ConfigError

if TYPE_CHECKING:
    from distill_gui.core.config import RunConfig

__all__ = [
    "STANDARD_METRICS",
    "TEACHER_LOGITS",
    "TEACHER_NONE",
    "TEACHER_TEXT",
    "LossResult",
    "MemoryInputs",
    "Method",
    "MethodMemory",
    "MetricSpec",
    "StepContext",
    "trained_positions",
    "all_methods",
    "get",
    "loads_teacher",
    "method_for",
    "names",
    "needs_teacher",
]

_NOT_METHODS = {"base"}


@lru_cache(maxsize=1)
def _registry() -> dict[str, Method]:
    found: dict[str, Method] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_METHODS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Method) and value is not Method and value.name:
                if value.__module__ != module.__name__:
                    continue  # imported from elsewhere
                if value.name in found:
                    raise RuntimeError(f"two methods are named {value.name!r}: {type(found[value.name]).__module__} and {module.__name__}")
                found[value.name] = value()
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


def all_methods() -> list[Method]:
    """Every method, in display order."""
    return list(_registry().values())


def names() -> tuple[str, ...]:
    """The allowed values of ``method.kind``."""
    return tuple(_registry())


def get(name: str) -> Method:
    """The method called ``name``; :class:`ConfigError` naming the choices when there is none."""
    try:
        return _registry()[name]
    except KeyError:
        raise ConfigError(f"method.kind: {name!r} is not a method; choose one of {', '.join(names())}") from None


def method_for(config: "RunConfig") -> Method:
    """The method a run config selects."""
    return get(config.method.kind)


def needs_teacher(config: "RunConfig") -> bool:
    """The run's method cannot work without a teacher."""
    return method_for(config).needs_teacher(config)


def loads_teacher(config: "RunConfig") -> bool:
    """The training process loads the teacher: for the method, or for side-by-side samples when one is set.

    A served teacher (``teacher.url``) is never loaded for the samples: the server answers the probe prompts.
    """
    from distill_gui.core.served_teacher_config import is_served

    if method_for(config).loads_teacher_for_training(config):
        return True
    return bool(config.teacher.path) and not is_served(config.teacher) and config.training.sample_steps > 0
