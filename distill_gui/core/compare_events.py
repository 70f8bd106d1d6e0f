"""The progress events of a comparison: plain frozen dataclasses, one JSON line each for ``--events json``
(the app reads them back from its ``distill-gui compare`` child process)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CompareEvent:
    """Base of the comparison's progress events; ``to_json`` gives one line of ``--events json``."""

    def to_dict(self) -> dict[str, Any]:
        return {"event": EVENT_NAMES[type(self)], **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


@dataclass(frozen=True)
class CompareStarted(CompareEvent):
    folder: str
    labels: list[str]
    reference: str
    rows: int
    data: str


@dataclass(frozen=True)
class ModelStarted(CompareEvent):
    index: int
    label: str
    cached: bool = False


@dataclass(frozen=True)
class ModelProgress(CompareEvent):
    index: int
    phase: str
    """loading, perplexity, answers or samples."""
    done: int
    total: int


@dataclass(frozen=True)
class ModelScored(CompareEvent):
    index: int
    label: str
    row: dict
    """The model's line of the results table (see :func:`table_row`)."""


@dataclass(frozen=True)
class ModelFailed(CompareEvent):
    index: int
    label: str
    reason: str


@dataclass(frozen=True)
class CompareFinished(CompareEvent):
    folder: str
    state: str
    """finished or stopped."""
    scored: int
    failed: int


EVENT_NAMES: dict[type, str] = {
    CompareStarted: "compare_started",
    ModelStarted: "model_started",
    ModelProgress: "model_progress",
    ModelScored: "model_scored",
    ModelFailed: "model_failed",
    CompareFinished: "compare_finished",
}
_BY_NAME = {name: cls for cls, name in EVENT_NAMES.items()}


def compare_event_from_json(line: str) -> CompareEvent | None:
    """The event on one line of ``--events json`` output, or None when the line is not one."""
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    cls = _BY_NAME.get(data.pop("event", None))
    if cls is None:
        return None
    known = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None
