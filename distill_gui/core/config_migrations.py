"""Saved configs of older layouts, brought up to date: ``config_version`` and a table of renamed keys.

Every saved config carries ``config_version``. Reading a file of an older version applies each step
below in turn, so a run folder written by an older distill-gui still loads (its keys renamed, never
silently dropped). ``key=value`` overrides on the command line are renamed by the same table.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from distill_gui.core.schema import ConfigError

CURRENT_VERSION = 2

# Version 1 -> 2: the method registry. KD's settings moved from ``method.*`` into ``method.kd.*``.
_KD_KEYS_V1 = ("loss", "beta", "temperature", "alpha", "top_k", "chunk_size", "cache_teacher", "teacher_cache")
RENAMED: dict[str, str] = {f"method.{key}": f"method.kd.{key}" for key in _KD_KEYS_V1}
"""Old dotted key -> new dotted key, for every rename (overrides and files alike)."""


def renamed_key(key: str) -> str:
    """The current name of a dotted config key (unchanged when it was never renamed)."""
    return RENAMED.get(key, key)


def _v1_to_v2(data: dict) -> dict:
    method = data.get("method")
    if isinstance(method, dict):
        moved = {key: method.pop(key) for key in _KD_KEYS_V1 if key in method}
        if moved:
            kd = method.get("kd")
            if kd is None:
                kd = method["kd"] = {}
            if isinstance(kd, dict):
                for key, value in moved.items():
                    kd.setdefault(key, value)
    return data


MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _v1_to_v2}
"""version -> the step that turns a mapping of that version into the next one."""


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config mapping in the current layout (``config_version`` set)."""
    version = data.get("config_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"config_version: {version!r} is not a version number (1..{CURRENT_VERSION})")
    if version > CURRENT_VERSION:
        raise ConfigError(
            f"config_version: {version} was written by a newer distill-gui (this one reads up to {CURRENT_VERSION}); "
            "update distill-gui to open it"
        )
    data = copy.deepcopy(data)
    for step in range(version, CURRENT_VERSION):
        data = MIGRATIONS[step](data)
    data["config_version"] = CURRENT_VERSION
    return data
