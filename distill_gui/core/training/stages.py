"""A recipe of stages, run in order in one parent run folder (``stages:`` in a config).

Each stage is an ordinary run of its own — this config with the stage's keys over it — in
``<parent>/stages/``; its student is the previous stage's result. The parent folder tells the whole
story to the app and the CLI: every stage's events are mirrored into the parent's ``events.jsonl`` with
their steps counted on from the stages before (one continuous curve), the parent's status follows the
stage that runs, and pause/stop requests to the parent reach the stage. Resuming the parent skips the
finished stages, resumes the unfinished one from its checkpoint and goes on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from distill_gui.core import methods
from distill_gui.core.config import RunConfig
from distill_gui.core.events import (
    CheckpointSaved,
    EvalLogged,
    Event,
    EventCallback,
    LogMessage,
    RunCreated,
    RunFailed,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    RunStopped,
    SamplesGenerated,
    SamplesScored,
    StepLogged,
    fan_out,
)
from distill_gui.core.run_requests import RequestWatcher
from distill_gui.core.runs import RunDir, RunRecorder, default_runs_root, list_runs
from distill_gui.core.training.control import RunControl, current_processes
from distill_gui.core.training.outcome import RunOutcome, TrainingError

STAGES_DIR = "stages"
_STEPPED = (StepLogged, EvalLogged, SamplesGenerated, SamplesScored, CheckpointSaved, RunPaused, RunResumed)


def stage_runs(parent: RunDir) -> dict[str, RunDir]:
    """The stage runs already made in a parent folder, by stage name (``01-sft``, ...)."""
    found: dict[str, RunDir] = {}
    for run in list_runs(parent.path / STAGES_DIR):
        try:
            found.setdefault(run.load_config().name, run)
        except Exception:  # noqa: BLE001 - a damaged stage folder is made again
            continue
    return found


class _Mirror:
    """Turns a stage's events into the parent's: steps counted on, one start, one end."""

    def __init__(self, parent: RunDir, emit: EventCallback, config: RunConfig, planned: list[int]):
        self.parent, self.emit, self.config, self.planned = parent, emit, config, planned
        self.index = 0
        self.offset = 0
        self.started = False
        self.total = sum(planned)

    def stage(self, index: int) -> None:
        self.index = index
        self.offset = sum(self.planned[:index])

    def __call__(self, event: Event) -> None:
        n, name = len(self.planned), self.config.stage_config(self.index).name
        if isinstance(event, RunCreated):
            self.emit(LogMessage(text=f"stage {self.index + 1}/{n} ({name}): run folder {event.run_dir}"))
        elif isinstance(event, RunStarted):
            if event.total_steps and event.total_steps != self.planned[self.index]:
                self.total += event.total_steps - self.planned[self.index]
                self.planned[self.index] = event.total_steps
            if not self.started:
                self.started = True
                specs = {s["key"]: s for i in range(n) for s in self._specs(i)}
                self.emit(
                    dataclasses.replace(
                        event,
                        run_dir=str(self.parent.path),
                        total_steps=self.total,
                        start_step=self.offset + event.start_step,
                        metric_specs=tuple(specs.values()),
                        method=" → ".join(self.config.stage_config(i).method.kind for i in range(n)),
                    )
                )
            self.emit(LogMessage(text=f"stage {self.index + 1}/{n} ({name}) started at step {event.start_step}"))
        elif isinstance(event, _STEPPED):
            changes: dict[str, Any] = {"step": event.step + self.offset}
            if isinstance(event, StepLogged):
                changes["total_steps"] = self.total
            self.emit(dataclasses.replace(event, **changes))
        elif isinstance(event, LogMessage):
            self.emit(dataclasses.replace(event, text=f"[{name}] {event.text}"))
        elif isinstance(event, RunFinished):
            self.emit(LogMessage(text=f"stage {self.index + 1}/{n} ({name}) finished; its model is {event.final_path}"))
        elif isinstance(event, (RunStopped, RunFailed)):
            self.emit(dataclasses.replace(event, step=event.step + self.offset))

    def _specs(self, index: int) -> list[dict]:
        return [spec.to_dict() for spec in methods.get(self.config.stage_config(index).method.kind).metrics]


def train_stages(
    config: RunConfig,
    *,
    runs_root: str | Path | None = None,
    run: RunDir | None = None,
    on_event: EventCallback | None = None,
    control: RunControl | None = None,
    resume: bool = False,
) -> RunOutcome:
    """Run the stages of ``config`` (or, with ``resume``, continue them in ``run``); returns how the whole recipe ended."""
    from distill_gui.core.training.run import train

    control = control or RunControl()
    procs = current_processes()
    if resume:
        if run is None:
            raise TrainingError("resume needs the run folder")
        config = run.load_config()
    else:
        config.validate_for_run()
        created = RunDir.create(runs_root or default_runs_root(), config) if procs.is_main else None
        run = RunDir(procs.broadcast(str(created.path) if created else None))
    assert run is not None
    parent = run
    planned = [max(config.stage_config(i).training.max_steps, 0) for i in range(len(config.stages))]
    emit: EventCallback = fan_out(RunRecorder(parent), on_event) if procs.is_main else (lambda event: None)
    mirror = _Mirror(parent, emit, config, planned)
    with parent.lock() if procs.is_main else _nothing(), RequestWatcher(parent.path, control):
        if not resume:
            emit(RunCreated(run_dir=str(parent.path)))
        done = stage_runs(parent)
        previous: str | None = None
        outcome: RunOutcome | None = None
        for index in range(len(config.stages)):
            stage = config.stage_config(index)
            if previous is not None:
                stage.student.path = previous
            mirror.stage(index)
            existing = done.get(stage.name)
            if existing is not None and existing.final_model() is not None:
                previous = str(existing.final_model())
                emit(LogMessage(text=f"stage {index + 1}/{len(planned)} ({stage.name}) was finished; its model is {previous}"))
                continue
            if existing is not None:
                outcome = train(existing.load_config(), run=existing, resume=True, on_event=mirror, control=control)
            else:
                outcome = train(stage, runs_root=parent.path / STAGES_DIR, on_event=mirror, control=control)
            if outcome.state != "finished":
                return RunOutcome(run=parent, state=outcome.state, step=outcome.step + mirror.offset, reason=outcome.reason)
            previous = str(outcome.final_path)
        step = sum(planned)
        emit(RunFinished(step=step, final_path=str(previous)))
        return RunOutcome(run=parent, state="finished", step=step, final_path=Path(previous) if previous else None)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
