"""A training run from start to end, read top to bottom: :func:`train`.

1. make (or reopen) the run folder and report into it;
2. load the student, the teacher when the method needs one, and the data;
3. let the method prepare (tokenizer checks, a teacher cache, ...);
4. train with the Trainer subclass, checkpointing atomically; stop and pause between steps;
5. write ``final/`` and report how the run ended.

Works unchanged under ``accelerate launch -m distill_gui train ...``.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

from distill_gui.core import checkpoints as ckpt
from distill_gui.core import methods
from distill_gui.core.config import RunConfig
from distill_gui.core.errors import one_line
from distill_gui.core.events import EventCallback, RunCreated, RunFailed, RunFinished, RunStopped, fan_out
from distill_gui.core.runs import RunDir, RunRecorder, default_runs_root
from distill_gui.core.training.checkpointing import checkpoint_step, incoming_dir, save_final
from distill_gui.core.training.control import RunControl, current_processes
from distill_gui.core.training.outcome import Diverged, RunOutcome, TrainingError, is_out_of_memory
from distill_gui.core.training.setup import RunSetup, load_models, probe_prompts, training_arguments


def preflight(config: RunConfig) -> None:
    """Cheap checks before a run folder is made: models can be found and are safe to load, data exists."""
    from distill_gui.core.models import check_safety, resolve_source

    roles = [("student", config.student)]
    if methods.loads_teacher(config):
        roles.append(("teacher", config.teacher))
    for role, model_cfg in roles:
        check_safety(resolve_source(model_cfg), model_cfg, role)
    for key, value in (("data.train", config.data.train), ("data.eval", config.data.eval)):
        if value and Path(value).is_absolute() and not Path(value).exists():
            raise TrainingError(f"{key}: {value} does not exist")


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

    Every event goes to the run folder and to ``on_event``. Errors in the configuration, data or
    models raise before training starts (``ConfigError``, ``DataError``, ``ModelError``); errors while
    training end the run with a :class:`RunFailed` event and ``state`` failed or diverged.
    """
    control = control or RunControl()
    if resume:
        if run is None:
            raise TrainingError("resume needs the run folder")
        config = run.load_config()
        checkpoint = run.latest_checkpoint()
        if run.final_model() is not None:
            raise TrainingError(f"{run.path}: this run already finished; its model is in {run.final_dir}")
        if checkpoint is None:
            raise TrainingError(f"{run.path}: no complete checkpoint to resume from; start the run again")
    else:
        config.validate_for_run()
        preflight(config)
        checkpoint = None
    method = methods.method_for(config)
    procs = current_processes()
    if not resume and run is None:
        created = RunDir.create(runs_root or default_runs_root(), config) if procs.is_main else None
        run = RunDir(procs.broadcast(str(created.path) if created else None))
    assert run is not None
    emit = fan_out(RunRecorder(run), on_event) if procs.is_main else (lambda event: None)
    if not resume:
        emit(RunCreated(run_dir=str(run.path)))
    setup = RunSetup(config=config, run=run, emit=emit, control=control, method=method, procs=procs)
    step = 0
    try:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback
        from transformers.utils import logging as hf_logging

        from distill_gui.core.data import DataCollator, prepare_data
        from distill_gui.core.training.callbacks import make_event_bridge
        from distill_gui.core.training.trainer import make_trainer_class

        hf_logging.disable_progress_bar()
        if procs.is_main:
            ckpt.sweep_partials(run.checkpoints_dir)
        procs.barrier()

        load_models(setup)
        prepared = prepare_data(config.data, setup.tokenizer)
        setup.log(prepared.report.summary())
        setup.probe_prompts, setup.probe_references = probe_prompts(config, prepared, setup.tokenizer)
        method.prepare(setup, prepared)
        args = training_arguments(config, run, setup.device, prepared.eval is not None, incoming_dir(run.checkpoints_dir))
        bridge = make_event_bridge()(setup)
        trainer = make_trainer_class()(
            model=setup.student,
            args=args,
            train_dataset=prepared.train,
            eval_dataset=prepared.eval,
            data_collator=DataCollator(setup.tokenizer.pad_token_id),
            callbacks=[bridge],
            setup=setup,
        )
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
        final = save_final(trainer, setup) if procs.is_main else run.final_dir
        procs.barrier()
        emit(RunFinished(step=step, final_path=str(final), elapsed_s=time.time() - bridge.start_time))
        return RunOutcome(run=run, state="finished", step=step, final_path=final)
    except Diverged as exc:
        latest = run.latest_checkpoint()
        reason = f"{exc}; the last good checkpoint is {latest}" if latest else f"{exc}; no checkpoint was written"
        emit(RunFailed(step=step, reason=reason, kind="diverged", checkpoint=str(latest) if latest else None))
        return RunOutcome(run=run, state="diverged", step=step, reason=reason)
    except Exception as exc:  # noqa: BLE001 - every failure is reported into the run folder first
        kind = "out_of_memory" if is_out_of_memory(exc) else "error"
        emit(RunFailed(step=step, reason=one_line(exc), kind=kind))
        raise


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
    if run.status().get("state") in ("running", "paused"):
        raise TrainingError(f"{run.path}: the run is still active; stop it first")
    shutil.rmtree(run.path)


__all__ = ["delete_run", "preflight", "train"]
