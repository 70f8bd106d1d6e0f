"""A training run from start to end, read top to bottom: :func:`train`.

1. check the config and load the student, the teacher when the run needs one, and the data; the
   method checks the pair (tokenizers, heads) — a run refused here leaves no folder behind;
2. make (or reopen and lock) the run folder and report into it;
3. let the method prepare (a teacher cache, ...);
4. train with the Trainer subclass, checkpointing atomically; stop and pause between steps;
5. write ``final/`` and report how the run ended.

Works unchanged under ``accelerate launch -m distill_gui train ...``.
"""

from __future__ import annotations

import contextlib
import errno
import math
import shutil
import time
from pathlib import Path
from typing import Any

from distill_gui.core import checkpoints as ckpt
from distill_gui.core import methods
from distill_gui.core.config import ModelConfig, RunConfig
from distill_gui.core.distributed_launch import record_launch
from distill_gui.core.errors import one_line
from distill_gui.core.events import Event, EventCallback, LogMessage, RunCreated, RunFailed, RunFinished, RunStopped
from distill_gui.core.memory import format_bytes
from distill_gui.core.run_requests import RequestWatcher
from distill_gui.core.runs import RunDir, RunRecorder, default_runs_root
from distill_gui.core.training.checkpointing import checkpoint_step, incoming_dir, save_final
from distill_gui.core.training.control import RunControl, current_processes
from distill_gui.core.training.outcome import Diverged, RunOutcome, TrainingError, is_out_of_memory
from distill_gui.core.training.setup import RunSetup, load_models, probe_prompts, training_arguments


def preflight(config: RunConfig) -> None:
    """Cheap checks before anything loads: models can be found and are safe to load, data exists."""
    from distill_gui.core.models import check_safety, resolve_source

    roles: list[tuple[str, ModelConfig]] = [("student", config.student)]
    if methods.loads_teacher(config):
        roles.append(("teacher", config.teacher))
    for role, model_cfg in roles:
        check_safety(resolve_source(model_cfg), model_cfg, role)
    for key, value in (("data.train", config.data.train), ("data.eval", config.data.eval)):
        if value and Path(value).is_absolute() and not Path(value).exists():
            raise TrainingError(f"{key}: {value} does not exist")


class _Reporter:
    """The run's event callback: to ``on_event`` at once, into the run folder once it exists.

    Events from before the folder is made (loading messages) are written into it when it appears.
    """

    def __init__(self, on_event: EventCallback | None):
        self.on_event = on_event
        self.recorder: RunRecorder | None = None
        self.early: list[Event] = []

    def __call__(self, event: Event) -> None:
        if self.recorder is not None:
            self.recorder(event)
        else:
            self.early.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def record_into(self, run: RunDir, first: Event | None = None) -> None:
        self.recorder = RunRecorder(run)
        if first is not None:
            self(first)
        for event in self.early:
            self.recorder(event)
        self.early = []


def train(
    config: RunConfig,
    *,
    runs_root: str | Path | None = None,
    run: RunDir | None = None,
    on_event: EventCallback | None = None,
    control: RunControl | None = None,
    resume: bool = False,
) -> RunOutcome:
    """Run (or, with ``resume=True`` and ``run``, continue) a distillation run; returns how it ended.

    Every event goes to ``on_event`` and, once the folder exists, into the run folder. Errors in the
    configuration, data or models raise before a folder is made (``ConfigError``, ``DataError``,
    ``ModelError``); errors while training end the run with a :class:`RunFailed` event and ``state``
    failed or diverged. A full disk stops the run (resumable) with a message saying how much room it needs.
    """
    if (run.load_config() if resume and run is not None else config).stages:
        from distill_gui.core.training.stages import train_stages

        return train_stages(config, runs_root=runs_root, run=run, on_event=on_event, control=control, resume=resume)
    control = control or RunControl()
    procs = current_processes()
    if resume:
        if run is None:
            raise TrainingError("resume needs the run folder")
        config = run.load_config()
    else:
        config.validate_for_run()
        preflight(config)
    method = methods.method_for(config)
    reporter = _Reporter(on_event if procs.is_main else None)
    emit: EventCallback = reporter if procs.is_main else (lambda event: None)
    with contextlib.ExitStack() as hold:
        if resume and procs.is_main:
            assert run is not None
            hold.enter_context(run.lock())  # a second writer is refused before anything loads
            if run.final_model() is not None:  # checked under the lock: the run may have just finished
                raise TrainingError(f"{run.path}: this run already finished; its model is in {run.final_dir}")
            reporter.record_into(run)
        setup = RunSetup(config=config, run=run, emit=emit, control=control, method=method, procs=procs)
        prepared = _load(setup, reporter)
        if not resume:
            created = RunDir.create(runs_root or default_runs_root(), config) if procs.is_main else None
            run = RunDir(procs.broadcast(str(created.path) if created else None))
            setup.run = run
            if procs.is_main:
                hold.enter_context(run.lock())
                reporter.record_into(run, first=RunCreated(run_dir=str(run.path)))
        assert run is not None
        if procs.is_main:  # pause/resume/stop requests through the folder (the app's one channel)
            hold.enter_context(RequestWatcher(run.path, control))
            record_launch(run.path)  # a launch of several processes keeps its accelerate.yaml in the folder
        return _train_in_folder(setup, prepared, run, resume)


def _load(setup: RunSetup, reporter: _Reporter) -> Any:
    """Models, data and the method's checks (nothing is written yet)."""
    from transformers.utils import logging as hf_logging

    from distill_gui.core.data import DataError, prepare_data

    hf_logging.disable_progress_bar()
    load_models(setup)
    try:
        prepared = prepare_data(setup.config.data, setup.tokenizer)
    except DataError as exc:
        if exc.report is not None:  # every bad line, for the log (the message names the first few)
            setup.emit(LogMessage(text=exc.report.summary(max_rows=None), level="error"))
        raise
    setup.log(prepared.report.summary())
    setup.probe_prompts, setup.probe_references = probe_prompts(setup.config, prepared, setup.tokenizer)
    setup.method.check(setup)
    return prepared


def _resume_point(setup: RunSetup, run: RunDir) -> Path | None:
    """The newest intact checkpoint (damaged newer ones are named and skipped), or None to start over."""
    checkpoint, skipped = ckpt.latest_intact_checkpoint(run.checkpoints_dir)
    for line in skipped:
        setup.emit(LogMessage(text=f"skipping a damaged checkpoint: {line}", level="warning"))
    if checkpoint is None:
        why = "every checkpoint is damaged" if skipped else "it was stopped before its first checkpoint"
        setup.log(f"resume: {why}; starting over from step 0 in the same folder, with the same settings")
    return checkpoint


def _train_in_folder(setup: RunSetup, prepared: Any, run: RunDir, resume: bool) -> RunOutcome:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from distill_gui.core.training.callbacks import make_event_bridge

    config, procs, emit = setup.config, setup.procs, setup.emit
    trainer = None
    try:
        if procs.is_main:
            ckpt.sweep_partials(run.checkpoints_dir)
        procs.barrier()
        checkpoint = _resume_point(setup, run) if resume else None
        setup.method.prepare(setup, prepared)
        args = training_arguments(config, run, setup.device, prepared.eval is not None, incoming_dir(run.checkpoints_dir))
        bridge = make_event_bridge()(setup)
        trainer = setup.method.build_trainer(setup, prepared, args, [bridge])
        bridge.trainer = trainer
        trainer.remove_callback(PrinterCallback)  # our events replace its prints
        trainer.remove_callback(ProgressCallback)
        if checkpoint is not None and checkpoint_step(checkpoint) >= _planned_steps(config, len(prepared.train), procs.world_size):
            # The budget was spent before final/ was written: take the weights, train no further step.
            from distill_gui.core.training.compat import load_checkpoint_weights

            load_checkpoint_weights(trainer, str(checkpoint))
            trainer.state.global_step = checkpoint_step(checkpoint)
            setup.log(f"resuming {checkpoint.name}: all {trainer.state.global_step} steps were done; writing the final model")
        else:
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        step = trainer.state.global_step
        if setup.stopped:
            latest = run.latest_checkpoint()
            emit(RunStopped(step=step, checkpoint=str(latest) if latest else None))
            return RunOutcome(run=run, state="stopped", step=step)
        if prepared.eval is not None and not config.training.eval_steps:
            trainer.evaluate()
        if config.training.sample_steps:
            setup.emit_samples(trainer.model, step)
        final = save_final(trainer, setup)  # every process: FSDP gathers the weights from all of them
        procs.barrier()
        emit(RunFinished(step=step, final_path=str(final), elapsed_s=time.time() - bridge.start_time))
        return RunOutcome(run=run, state="finished", step=step, final_path=final)
    except Diverged as exc:
        step = exc.step if exc.step is not None else _step(trainer)
        latest = run.latest_checkpoint()
        reason = f"{exc}; the last good checkpoint is {latest}" if latest else f"{exc}; no checkpoint was written"
        emit(RunFailed(step=step, reason=reason, kind="diverged", checkpoint=str(latest) if latest else None))
        return RunOutcome(run=run, state="diverged", step=step, reason=reason)
    except KeyboardInterrupt:
        # A second Ctrl-C: the process ends now; the folder says where it was (resumable).
        if procs.is_main:
            run.write_status(
                "interrupted", step=_step(trainer), message="interrupted (a second Ctrl-C); resume continues from the last checkpoint"
            )
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is reported into the run folder first
        step = _step(trainer)
        if _is_disk_full(exc):
            shutil.rmtree(incoming_dir(run.checkpoints_dir), ignore_errors=True)
            latest = run.latest_checkpoint()
            reason = _disk_full_message(run, latest)
            emit(RunStopped(step=step, checkpoint=str(latest) if latest else None, reason=reason))
            return RunOutcome(run=run, state="stopped", step=step, reason=reason)
        kind = "out_of_memory" if is_out_of_memory(exc) else "error"
        emit(RunFailed(step=step, reason=one_line(exc), kind=kind))
        raise


def _step(trainer: Any) -> int:
    return int(trainer.state.global_step) if trainer is not None else 0


def _is_disk_full(exc: BaseException) -> bool:
    """A write failed for lack of space (also torch's "[enforce fail at inline_container.cc]" on a full disk)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        text = str(seen)
        if "No space left on device" in text or ("inline_container" in text and "enforce fail" in text):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _disk_full_message(run: RunDir, latest: Path | None) -> str:
    free = shutil.disk_usage(run.path).free
    needed = sum(f.stat().st_size for f in latest.rglob("*") if f.is_file()) if latest is not None else 0
    need = f"; a checkpoint needs about {format_bytes(needed)}" if needed else ""
    return (
        f"no space left on device: {run.path} has {format_bytes(free)} free{need}. "
        "Free some space (or lower training.save_total_limit), then resume"
    )


def _planned_steps(config: RunConfig, rows: int, world_size: int) -> int:
    """The optimizer steps the run's budget asks for (``max_steps``, or its epochs' worth)."""
    t = config.training
    if t.max_steps > 0:
        return t.max_steps
    batches = math.ceil(rows / (t.batch_size * max(world_size, 1)))
    per_epoch = max(batches // t.gradient_accumulation_steps + int(batches % t.gradient_accumulation_steps > 0), 1)
    return math.ceil(t.num_epochs * per_epoch)


def delete_run(run: RunDir) -> None:
    """Remove a run folder (only when no process is writing to it)."""
    if run.owner_alive():
        raise TrainingError(f"{run.path}: the run is still active; stop it first")
    shutil.rmtree(run.path)


__all__ = ["delete_run", "preflight", "train"]
