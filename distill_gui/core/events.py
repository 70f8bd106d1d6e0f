"""Plain event objects the core reports progress with.

The trainer calls ``callback(event)`` for every event. The CLI prints them; the run folder records
them (:class:`distill_gui.core.runs.RunRecorder`); a training child process writes them to stdout as
one JSON object a line (``to_json``) and the GUI turns each back into an event (``from_json``) and
re-emits it as a Qt signal. Events are frozen dataclasses named in the past tense.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable


def _now() -> float:
    return time.time()


@dataclass(frozen=True)
class Event:
    """Base of all events; ``time`` is seconds since the epoch."""

    time: float = field(default_factory=_now, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        data = {"event": type(self).__name__}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("samples", "items"):
                value = tuple(dataclasses.asdict(s) for s in value)
            data[f.name] = _jsonable(value)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class RunCreated(Event):
    """The run folder exists (emitted first, before any model loads)."""

    run_dir: str


@dataclass(frozen=True)
class RunStarted(Event):
    """Training began (or resumed at ``start_step``)."""

    run_dir: str
    total_steps: int
    start_step: int = 0
    method: str = "kd"
    student_params: int = 0
    trainable_params: int = 0
    teacher_params: int = 0
    device: str = "cpu"
    metric_specs: tuple[dict, ...] = ()
    """How to show the method's metrics: ``{key, label, group, unit, doc}`` each (see ``methods.MetricSpec``)."""


@dataclass(frozen=True)
class StepLogged(Event):
    """Losses and speed after an optimizer step (averaged over the steps since the last log).

    ``metrics`` holds what the run's method reports besides the total loss (KD: ``kd`` and ``ce``),
    each a per-token mean over the logged steps; the method's ``metrics`` declare how to show them.
    """

    step: int
    total_steps: int
    loss: float
    metrics: dict[str, float] = field(default_factory=dict)
    learning_rate: float = 0.0
    grad_norm: float | None = None
    tokens_per_s: float = 0.0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    epoch: float = 0.0


@dataclass(frozen=True)
class EvalLogged(Event):
    """Evaluation metrics at a step (``eval_loss``, ``perplexity``, ...)."""

    step: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class Sample:
    """One probe prompt with the teacher's and the student's answer."""

    prompt: str
    student: str
    teacher: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class SamplesGenerated(Event):
    """Teacher and student answers to the probe prompts at a step."""

    step: int
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class ScoredSample:
    """One answer the student sampled while training, with the verifier's verdict on it.

    ``correct`` is None when there was nothing to check against (no reference answer); ``reward`` is the
    total reward the answer earned (RLVR), else None; ``answer`` is the final answer the verifier read
    from ``completion`` (None when it found none); ``error`` is what the verifier raised (then it counts
    as wrong).
    """

    prompt: str
    completion: str
    correct: bool | None = None
    reward: float | None = None
    answer: str | None = None
    reference: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class SamplesScored(Event):
    """A few of the answers the student sampled for training at ``step`` (rlvr, self_distill, on-policy KD),
    each with the verifier's mark; emitted at most every :data:`SCORED_SAMPLE_STEPS` steps."""

    step: int
    items: tuple[ScoredSample, ...]
    method: str = ""


SCORED_SAMPLE_STEPS = 10
"""Steps between two :class:`SamplesScored` events of a method that samples every step (the first step always reports)."""
SCORED_SAMPLE_ITEMS = 8
"""Sampled answers one :class:`SamplesScored` event carries at most."""


def scored_step_due(step: int, every: int = SCORED_SAMPLE_STEPS) -> bool:
    """Whether optimizer step ``step`` (1-based) reports its sampled answers: the first, then every ``every``."""
    return step == 1 or (every > 0 and step % every == 0)


@dataclass(frozen=True)
class CheckpointSaved(Event):
    """A complete checkpoint was written."""

    step: int
    path: str


@dataclass(frozen=True)
class RunPaused(Event):
    """Training is paused between steps."""

    step: int


@dataclass(frozen=True)
class RunResumed(Event):
    """Training continues after a pause."""

    step: int


@dataclass(frozen=True)
class LogMessage(Event):
    """A line for the log (level: info, warning, error)."""

    text: str
    level: str = "info"


@dataclass(frozen=True)
class RunFinished(Event):
    """All steps done; ``final_path`` holds the trained student."""

    step: int
    final_path: str
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class RunStopped(Event):
    """Stopped after saving ``checkpoint`` (resumable): on request, or for a ``reason`` such as a full disk."""

    step: int
    checkpoint: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class RunFailed(Event):
    """The run ended on an error. ``kind``: diverged, out_of_memory, error or killed."""

    step: int
    reason: str
    kind: str = "error"
    checkpoint: str | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        RunCreated,
        RunStarted,
        StepLogged,
        EvalLogged,
        SamplesGenerated,
        SamplesScored,
        CheckpointSaved,
        RunPaused,
        RunResumed,
        LogMessage,
        RunFinished,
        RunStopped,
        RunFailed,
    )
}

EventCallback = Callable[[Event], None]


def _restore(value: Any) -> Any:
    if value == "inf":
        return math.inf
    if value == "-inf":
        return -math.inf
    return value


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from :meth:`Event.to_dict` output."""
    data = dict(data)
    name = data.pop("event", None)
    cls = EVENT_TYPES.get(name)
    if cls is None:
        raise ValueError(f"unknown event {name!r}")
    if cls is SamplesGenerated:
        data["samples"] = tuple(Sample(**s) for s in data.get("samples", ()))
    if cls is SamplesScored:
        fields = {f.name for f in dataclasses.fields(ScoredSample)}
        data["items"] = tuple(
            ScoredSample(**{k: v for k, v in item.items() if k in fields}) for item in data.get("items") or () if isinstance(item, dict)
        )
    if cls is StepLogged:
        data["metrics"] = step_metrics(data)
    if cls is RunStarted:
        data["metric_specs"] = tuple(s for s in data.get("metric_specs") or () if isinstance(s, dict))
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: _restore(v) for k, v in data.items() if k in known})


# Before methods reported a metrics mapping, StepLogged carried KD's two parts as fields.
_LEGACY_STEP_METRICS = {"kd_loss": "kd", "ce_loss": "ce"}


def step_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The method metrics of a StepLogged record, of this version or an older one (``kd_loss``, ``ce_loss``)."""
    found = record.get("metrics")
    metrics = {str(k): _restore(v) for k, v in found.items()} if isinstance(found, dict) else {}
    for old, new in _LEGACY_STEP_METRICS.items():
        if record.get(old) is not None and new not in metrics:
            metrics[new] = _restore(record[old])
    return metrics


def event_from_json(line: str) -> Event:
    """Rebuild an event from one JSON line."""
    return event_from_dict(json.loads(line))


def fan_out(*callbacks: EventCallback | None) -> EventCallback:
    """One callback that calls each of ``callbacks`` in order (``None`` entries are skipped)."""
    live = [cb for cb in callbacks if cb is not None]

    def emit(event: Event) -> None:
        for cb in live:
            cb(event)

    return emit
