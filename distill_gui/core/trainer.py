"""Distillation training on top of ``transformers.Trainer`` (accelerate underneath).

Read top to bottom: :func:`train` sets up the run folder, the models and the data, builds a
:class:`DistillTrainer` and reports everything as events from :mod:`distill_gui.core.events`.

- ``method.kind: kd`` — soft-label KD: the loss is ``alpha * KD + (1 - alpha) * CE`` computed from
  the final hidden states in chunks (:func:`distill_gui.core.losses.kd_loss_from_hidden`), so the
  full logits of teacher and student are never held at once.
- ``method.kind: sft`` — hard-label SFT on the text (e.g. teacher-written traces): plain cross-entropy.

Safety: checkpoints are atomic (:mod:`distill_gui.core.checkpoints`); a non-finite loss or gradient
ends the run as *diverged* before the optimizer step, so no non-finite weights are ever saved.
Stop and pause requests (:class:`RunControl`) are honoured between steps; stop saves a checkpoint.
Works unchanged under ``accelerate launch -m distill_gui train ...``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill_gui.core import checkpoints as ckpt
from distill_gui.core.config import RunConfig, save_config
from distill_gui.core.events import (
    CheckpointSaved,
    EvalLogged,
    EventCallback,
    LogMessage,
    RunCreated,
    RunFailed,
    RunFinished,
    RunPaused,
    RunResumed,
    RunStarted,
    RunStopped,
    Sample,
    SamplesGenerated,
    StepLogged,
    fan_out,
)
from distill_gui.core.runs import RunDir, RunRecorder, default_runs_root


class Diverged(RuntimeError):
    """The loss or the gradients stopped being finite."""


class TrainingError(RuntimeError):
    """A run could not start or continue; the message says why and what to do."""


# ---- Control and outcome -----------------------------------------------------------------------


@dataclass
class RunControl:
    """Stop and pause flags the training loop polls between steps (thread-safe)."""

    _stop: threading.Event = field(default_factory=threading.Event)
    _pause: threading.Event = field(default_factory=threading.Event)

    def request_stop(self) -> None:
        self._stop.set()

    def request_pause(self) -> None:
        self._pause.set()

    def request_resume(self) -> None:
        self._pause.clear()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return self._pause.is_set()


@dataclass
class RunOutcome:
    """How a run ended: ``state`` is finished, stopped, diverged or failed."""

    run: RunDir
    state: str
    step: int
    final_path: Path | None = None
    reason: str = ""


@dataclass
class _Processes:
    """Who this process is in an ``accelerate launch`` of several processes (alone: rank 0 of 1).

    Only the main process writes the run folder; the others train along and meet it at barriers.
    """

    world_size: int = 1
    is_main: bool = True
    device: str | None = None

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """The main process's ``value``, on every process."""
        if self.world_size == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value])[0]

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any of them (stop requests reach the main one)."""
        if self.world_size == 1:
            return flag
        import torch
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value)
        return bool(value.item() > 0)


def _processes() -> _Processes:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _Processes()
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    device = state.device
    name = "cpu" if device.type == "cpu" else f"{device.type}:{device.index or 0}" if device.type == "cuda" else device.type
    return _Processes(world_size=state.num_processes, is_main=state.is_main_process, device=name)


# ---- The Trainer subclass ----------------------------------------------------------------------


def _decoder_of(model):
    """The module producing the final hidden states (inside PEFT and DDP wrappers)."""
    inner = model
    for _ in range(4):
        if hasattr(inner, "module") and not hasattr(inner, "get_decoder"):
            inner = inner.module  # DDP / accelerate wrappers
        elif hasattr(inner, "get_base_model"):
            inner = inner.get_base_model()  # PEFT
        else:
            break
    decoder = inner.get_decoder() if hasattr(inner, "get_decoder") else None
    if decoder is None or decoder is inner:
        decoder = getattr(inner, "model", None)
    if decoder is None:
        raise TrainingError(f"{type(inner).__name__}: cannot find the decoder module to read hidden states from")
    return inner, decoder


def _make_trainer_class():
    """Build the Trainer subclass lazily so importing this module does not import transformers."""
    import torch
    from transformers import Trainer

    class DistillTrainer(Trainer):
        """``transformers.Trainer`` with a KD loss, atomic checkpoints and divergence checks."""

        def __init__(self, *args, distill: "_DistillSetup", **kwargs):
            super().__init__(*args, **kwargs)
            self.distill = distill
            # Our compute_loss returns a mean per micro-batch: let Trainer divide by the accumulation steps.
            self.model_accepts_loss_kwargs = False
            self._parts = {"train": [0.0, 0.0, 0], "eval": [0.0, 0.0, 0]}
            self.tokens_seen = 0
            self._staging: Path | None = None

        # ---- Loss
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            setup = self.distill
            mode = "train" if model.training else "eval"
            labels = inputs["labels"]
            if mode == "train":
                self.tokens_seen += int(inputs["attention_mask"].sum())
            if setup.config.method.kind == "sft":
                out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels)
                loss = out.loss
                kd_value, ce_value = None, loss.detach()
            else:
                loss, kd_value, ce_value = self._kd_loss(model, inputs)
            if not torch.isfinite(loss.detach()):
                raise Diverged(f"the loss became {loss.item()} at step {self.state.global_step + 1}")
            acc = self._parts[mode]
            acc[0] += float(kd_value) if kd_value is not None else 0.0
            acc[1] += float(ce_value)
            acc[2] += 1
            return (loss, {}) if return_outputs else loss

        def _kd_loss(self, model, inputs):
            from distill_gui.core.losses import kd_loss_from_cache, kd_loss_from_hidden

            setup = self.distill
            method = setup.config.method
            captured = {}

            def grab(_module, _args, output):
                captured["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

            inner, decoder = _decoder_of(model)
            handle = decoder.register_forward_hook(grab)
            try:
                # Call the (possibly wrapped) model so DDP and PEFT hooks run; keep only one logit row.
                model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], logits_to_keep=1)
            finally:
                handle.remove()
            student_hidden = captured["hidden"]
            labels = inputs["labels"][:, 1:].reshape(-1)
            s_head = inner.get_output_embeddings()
            if setup.teacher_cache is not None:
                t_ids, t_log_probs = setup.teacher_cache.for_rows(inputs["row"].tolist())
                parts = kd_loss_from_cache(
                    student_hidden[:, :-1].reshape(-1, student_hidden.shape[-1]),
                    s_head.weight,
                    t_ids.to(student_hidden.device),
                    t_log_probs.to(student_hidden.device),
                    labels,
                    loss=method.loss, beta=method.beta, temperature=method.temperature, alpha=method.alpha,
                    chunk_size=method.chunk_size, vocab_size=setup.shared_vocab_size,
                    student_bias=getattr(s_head, "bias", None),
                )
                return parts.total, parts.kd.detach(), parts.ce.detach()
            # The teacher runs under the same mixed precision as the student (accelerate only wraps
            # the student's forward): bf16 on a CPU that has it is ~1.5x faster than fp32.
            with torch.no_grad(), self.accelerator.autocast():
                t_inner, t_decoder = _decoder_of(setup.teacher)
                teacher_hidden = t_decoder(
                    input_ids=inputs["input_ids"].to(setup.teacher_device), attention_mask=inputs["attention_mask"].to(setup.teacher_device)
                ).last_hidden_state.to(student_hidden.device)
            t_head = t_inner.get_output_embeddings()
            parts = kd_loss_from_hidden(
                student_hidden[:, :-1].reshape(-1, student_hidden.shape[-1]),
                s_head.weight,
                teacher_hidden[:, :-1].reshape(-1, teacher_hidden.shape[-1]),
                t_head.weight.detach().to(student_hidden.device),
                labels,
                loss=method.loss,
                beta=method.beta,
                temperature=method.temperature,
                alpha=method.alpha,
                top_k=method.top_k,
                chunk_size=method.chunk_size,
                vocab_size=setup.shared_vocab_size,
                student_bias=getattr(s_head, "bias", None),
                teacher_bias=None if getattr(t_head, "bias", None) is None else t_head.bias.detach().to(student_hidden.device),
            )
            return parts.total, parts.kd.detach(), parts.ce.detach()

        def take_parts(self, mode: str) -> tuple[float | None, float | None]:
            """Mean KD and CE since the last call (None where not computed)."""
            kd_sum, ce_sum, n = self._parts[mode]
            self._parts[mode] = [0.0, 0.0, 0]
            if n == 0:
                return None, None
            kd = kd_sum / n if self.distill.config.method.kind == "kd" else None
            return kd, ce_sum / n

        # ---- Checkpoints
        def _get_output_dir(self, trial):
            return str(self._staging) if self._staging is not None else super()._get_output_dir(trial)

        def _save_checkpoint(self, model, trial):
            setup = self.distill
            procs = setup.procs
            if not _all_finite(model):
                raise Diverged(f"non-finite weights at step {self.state.global_step}; the checkpoint was not written")
            step = self.state.global_step
            target = setup.run.checkpoints_dir / ckpt.step_dir_name(step)
            staging = procs.broadcast(str(ckpt.staging_dir(target, shared=procs.world_size > 1)) if procs.is_main else None)
            staging = Path(staging)
            if procs.is_main:
                ckpt.sweep_partials(setup.run.checkpoints_dir)
                staging.mkdir(parents=True)
            procs.barrier()
            try:
                self._staging = staging
                try:
                    super()._save_checkpoint(model, trial)  # every process adds its own RNG state
                finally:
                    self._staging = None
                procs.barrier()
                if procs.is_main:
                    inner = staging / f"checkpoint-{step}"
                    for item in inner.iterdir():
                        item.rename(staging / item.name)
                    inner.rmdir()
                    setup.tokenizer.save_pretrained(staging)
                    save_config(setup.config, staging / "distill_config.yaml")
                    ckpt.commit(staging, target, {"step": step})
            except BaseException:
                if procs.is_main:
                    shutil.rmtree(staging, ignore_errors=True)
                raise
            if procs.is_main:
                ckpt.rotate_checkpoints(setup.run.checkpoints_dir, setup.config.training.save_total_limit)
                setup.emit(CheckpointSaved(step=step, path=str(target)))
            procs.barrier()

    return DistillTrainer


def _all_finite(model) -> bool:
    import torch

    for p in model.parameters():
        if p.dtype.is_floating_point and not torch.isfinite(p.detach()).all():
            return False
    return True


# ---- Events from the Trainer -------------------------------------------------------------------


def _make_event_bridge():
    import torch
    from transformers import TrainerCallback

    class EventBridge(TrainerCallback):
        """Turns Trainer callbacks into distill-gui events and polls stop/pause between steps."""

        def __init__(self, setup: "_DistillSetup"):
            self.setup = setup
            self.trainer = None
            self.start_time = time.time()
            self.start_step = 0
            self.last_log_time = time.time()
            self.last_tokens = 0

        def on_train_begin(self, args, state, control, **kwargs):
            s = self.setup
            self.start_step = state.global_step
            self.start_time = self.last_log_time = time.time()
            self.last_tokens = self.trainer.tokens_seen
            s.emit(
                RunStarted(
                    run_dir=str(s.run.path),
                    total_steps=state.max_steps,
                    start_step=state.global_step,
                    method=s.config.method.kind,
                    student_params=s.student_params,
                    trainable_params=s.trainable_params,
                    teacher_params=s.teacher_params,
                    device=str(s.device),
                )
            )
            if s.config.training.sample_steps and state.global_step == 0:
                s.emit_samples(self.trainer.model, 0)

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            grads = [p.grad for p in self.trainer.model.parameters() if p.grad is not None]
            if grads:
                norm = torch.nn.utils.get_total_norm(grads)
                if not torch.isfinite(norm):
                    raise Diverged(f"the gradient norm became {norm.item()} at step {state.global_step + 1}")

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            s = self.setup
            now = time.time()
            if "loss" in logs:
                kd, ce = self.trainer.take_parts("train")
                tokens = self.trainer.tokens_seen
                dt = max(now - self.last_log_time, 1e-9)
                tps = (tokens - self.last_tokens) / dt
                self.last_log_time, self.last_tokens = now, tokens
                done = state.global_step - self.start_step
                elapsed = now - self.start_time
                eta = elapsed / done * (state.max_steps - state.global_step) if done > 0 else None
                grad = logs.get("grad_norm")
                s.emit(
                    StepLogged(
                        step=state.global_step,
                        total_steps=state.max_steps,
                        loss=float(logs["loss"]),
                        kd_loss=kd,
                        ce_loss=ce,
                        learning_rate=float(logs.get("learning_rate", 0.0)),
                        grad_norm=None if grad is None else float(grad),
                        tokens_per_s=tps,
                        eta_s=eta,
                        elapsed_s=elapsed,
                        epoch=float(logs.get("epoch", state.epoch or 0.0)),
                    )
                )
            if "eval_loss" in logs:
                kd, ce = self.trainer.take_parts("eval")
                metrics = {"eval_loss": float(logs["eval_loss"])}
                if ce is not None:
                    metrics["eval_ce"] = ce
                    metrics["perplexity"] = math.exp(min(ce, 50.0))
                if kd is not None:
                    metrics["eval_kd"] = kd
                s.emit(EvalLogged(step=state.global_step, metrics=metrics))
            # A pause or stop asked for while this step was logged is honoured now, before the next step.
            self._honour_pause()
            self._honour_stop(control)

        def on_step_end(self, args, state, control, **kwargs):
            s = self.setup
            every = s.config.training.sample_steps
            if every and state.global_step % every == 0 and state.global_step < state.max_steps:
                s.emit_samples(self.trainer.model, state.global_step)
            self._honour_pause()
            self._honour_stop(control)
            return control

        def _honour_pause(self) -> None:
            s = self.setup
            if s.control.paused and not s.control.stop_requested:
                s.emit(RunPaused(step=self.trainer.state.global_step))
                while s.control.paused and not s.control.stop_requested:
                    time.sleep(0.05)
                if not s.control.stop_requested:
                    s.emit(RunResumed(step=self.trainer.state.global_step))

        def _honour_stop(self, control) -> None:
            if self.setup.procs.any(self.setup.control.stop_requested) and not self.setup.stopped:
                self.setup.stopped = True
                control.should_save = True
                control.should_training_stop = True

    return EventBridge


# ---- Setup -------------------------------------------------------------------------------------


@dataclass
class _DistillSetup:
    """Everything the trainer subclass and the callback share."""

    config: RunConfig
    run: RunDir
    emit: EventCallback
    control: RunControl
    procs: _Processes = field(default_factory=_Processes)
    tokenizer: Any = None
    teacher: Any = None
    teacher_tokenizer: Any = None
    teacher_device: Any = None
    device: Any = None
    shared_vocab_size: int | None = None
    student_params: int = 0
    trainable_params: int = 0
    teacher_params: int = 0
    probe_prompts: list[str] = field(default_factory=list)
    probe_references: list[str | None] = field(default_factory=list)
    teacher_answers: list[str] | None = None
    teacher_cache: Any = None
    """The offline teacher cache (method.cache_teacher); the teacher itself is freed then."""
    stopped: bool = False

    def _answer_probes(self, model, tokenizer) -> list[str]:
        from distill_gui.core.generation import GenerationSettings, generate

        settings = GenerationSettings(max_new_tokens=self.config.training.max_new_tokens, batch_size=8)
        return [a[0] for a in generate(model, tokenizer, self.probe_prompts, settings)]

    def answer_probes_with_teacher(self) -> None:
        """The teacher's answers to the probe prompts (it does not change during a run: answer once, reuse)."""
        self.teacher_answers = self._answer_probes(self.teacher, self.teacher_tokenizer)

    def emit_samples(self, model, step: int) -> None:
        if not self.probe_prompts or not self.procs.is_main:
            return
        student = self._answer_probes(model, self.tokenizer)
        if self.teacher is not None and self.teacher_answers is None:
            self.answer_probes_with_teacher()
        teacher = self.teacher_answers or [None] * len(student)
        samples = tuple(
            Sample(prompt=p, student=s, teacher=t, reference=r)
            for p, s, t, r in zip(self.probe_prompts, student, teacher, self.probe_references)
        )
        self.emit(SamplesGenerated(step=step, samples=samples))


def _precision_flags(precision: str, device) -> dict[str, bool]:
    import torch

    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu" and _cpu_has_bf16():
            precision = "bf16"
        else:
            precision = "fp32"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def _cpu_has_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _training_arguments(config: RunConfig, run: RunDir, device, has_eval: bool):
    from transformers import TrainingArguments

    t = config.training
    eval_every = t.eval_steps if has_eval else 0
    return TrainingArguments(
        output_dir=str(run.checkpoints_dir),
        max_steps=t.max_steps if t.max_steps > 0 else -1,
        num_train_epochs=t.num_epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.lr_scheduler,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if eval_every else "no",
        eval_steps=eval_every or None,
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
        save_total_limit=None,  # rotation is ours: only complete checkpoints count
        **({"activation_checkpointing": True} if t.gradient_checkpointing else {}),
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        use_cpu=device.type == "cpu",
        **_precision_flags(t.precision, device),
    )


def _probe_prompts(config: RunConfig, prepared, tokenizer) -> tuple[list[str], list[str | None]]:
    from distill_gui.core.data import render_prompt

    t = config.training
    if t.probe_prompts:
        return list(t.probe_prompts), [None] * len(t.probe_prompts)
    examples = (prepared.eval_examples or prepared.train_examples)[: t.num_probe_prompts]
    examples = [e for e in examples if e.prompt or e.messages]
    prompts = [render_prompt(e, tokenizer, config.data.chat_template, config.data.system_prompt) for e in examples]
    return prompts, [e.reference or e.completion for e in examples]


def _save_final(trainer, setup: _DistillSetup) -> Path:
    """Write the trained student to checkpoints/final (merged weights for LoRA when possible)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not _all_finite(model):
        raise Diverged("non-finite weights at the end of training; the final model was not written")
    target = setup.run.final_dir
    with ckpt.atomic_checkpoint(target, {"step": trainer.state.global_step, "final": True}) as staging:
        if hasattr(model, "merge_and_unload") and setup.config.student.quantization == "none":
            model.save_pretrained(staging / "adapter")
            merged = model.merge_and_unload()
            merged.save_pretrained(staging)
        else:
            model.save_pretrained(staging)
        setup.tokenizer.save_pretrained(staging)
        save_config(setup.config, staging / "distill_config.yaml")
    return target


def _load_models(setup: _DistillSetup) -> Any:
    from distill_gui.core.models import load_model

    config = setup.config
    student_cfg, teacher_cfg = config.student, config.teacher
    if setup.procs.device is not None:  # one device per process under accelerate launch
        student_cfg = dataclasses.replace(student_cfg, device=setup.procs.device) if student_cfg.device == "auto" else student_cfg
        teacher_cfg = dataclasses.replace(teacher_cfg, device=setup.procs.device) if teacher_cfg.device == "auto" else teacher_cfg
    setup.emit(LogMessage(text=f"loading student {config.student.path}"))
    student = load_model(student_cfg, "student", for_training=True)
    setup.tokenizer = student.tokenizer
    setup.device = student.device
    setup.student_params = student.num_params
    setup.trainable_params = student.trainable_params
    wants_teacher = config.method.kind == "kd" or (config.teacher.path and config.training.sample_steps)
    if wants_teacher:
        setup.emit(LogMessage(text=f"loading teacher {config.teacher.path}"))
        teacher = load_model(teacher_cfg, "teacher", for_training=False)
        setup.teacher = teacher.model
        setup.teacher_tokenizer = teacher.tokenizer
        setup.teacher_device = teacher.device
        setup.teacher_params = teacher.num_params
        if config.method.kind == "kd":
            from distill_gui.core.vocab import check_compatibility, require_kd_compatible

            compat = check_compatibility(
                teacher.tokenizer,
                student.tokenizer,
                teacher.model.get_output_embeddings().weight.shape[0],
                student.model.get_output_embeddings().weight.shape[0] if hasattr(student.model, "get_output_embeddings") else 0,
            )
            require_kd_compatible(compat)
            setup.shared_vocab_size = compat.shared_vocab_size
            setup.emit(LogMessage(text=f"tokenizers: {compat.message}"))
    return student.model


def preflight(config: RunConfig) -> None:
    """Cheap checks before a run folder is made: models can be found and are safe to load, data exists."""
    from distill_gui.core.models import check_safety, resolve_source

    roles = [("student", config.student)]
    if config.method.kind == "kd" or (config.teacher.path and config.training.sample_steps):
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
    procs = _processes()
    if not resume and run is None:
        created = RunDir.create(runs_root or default_runs_root(), config) if procs.is_main else None
        run = RunDir(procs.broadcast(str(created.path) if created else None))
    emit = fan_out(RunRecorder(run), on_event) if procs.is_main else (lambda event: None)
    if not resume:
        emit(RunCreated(run_dir=str(run.path)))
    setup = _DistillSetup(config=config, run=run, emit=emit, control=control, procs=procs)
    step = 0
    try:
        from transformers.utils import logging as hf_logging

        from distill_gui.core.data import DataCollator, prepare_data

        hf_logging.disable_progress_bar()

        model = _load_models(setup)
        prepared = prepare_data(config.data, setup.tokenizer)
        emit(LogMessage(text=prepared.report.summary()))
        setup.probe_prompts, setup.probe_references = _probe_prompts(config, prepared, setup.tokenizer)
        if config.method.kind == "kd" and config.method.cache_teacher:
            _setup_teacher_cache(setup, prepared)
        args = _training_arguments(config, run, setup.device, prepared.eval is not None)
        trainer_cls = _make_trainer_class()
        bridge = _make_event_bridge()(setup)
        trainer = trainer_cls(
            model=model,
            args=args,
            train_dataset=prepared.train,
            eval_dataset=prepared.eval,
            data_collator=DataCollator(setup.tokenizer.pad_token_id),
            callbacks=[bridge],
            distill=setup,
        )
        bridge.trainer = trainer
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)  # our events replace its prints
        trainer.remove_callback(ProgressCallback)
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
        final = _save_final(trainer, setup) if procs.is_main else run.final_dir
        procs.barrier()
        emit(RunFinished(step=step, final_path=str(final), elapsed_s=time.time() - bridge.start_time))
        return RunOutcome(run=run, state="finished", step=step, final_path=final)
    except Diverged as exc:
        latest = run.latest_checkpoint()
        reason = f"{exc}; the last good checkpoint is {latest}" if latest else f"{exc}; no checkpoint was written"
        emit(RunFailed(step=step, reason=reason, kind="diverged", checkpoint=str(latest) if latest else None))
        return RunOutcome(run=run, state="diverged", step=step, reason=reason)
    except Exception as exc:  # noqa: BLE001 - every failure is reported into the run folder first
        kind = "out_of_memory" if _is_oom(exc) else "error"
        reason = _one_line(exc)
        emit(RunFailed(step=step, reason=reason, kind=kind))
        raise


def _setup_teacher_cache(setup: "_DistillSetup", prepared) -> None:
    """Run the teacher once over the train (and eval) rows, keep its top-k log-probs, free the teacher.

    Rows get a ``row`` column so each batch finds its cached positions; eval rows follow the train rows.
    """
    import gc

    from distill_gui.core import teacher_cache as tc

    config, procs = setup.config, setup.procs
    method = config.method
    rows = list(prepared.train) + (list(prepared.eval) if prepared.eval is not None else [])
    vocab = setup.shared_vocab_size or setup.teacher.get_output_embeddings().weight.shape[0]
    fingerprint = tc.fingerprint(config.teacher.path, rows, method.top_k, method.temperature, vocab)
    path = Path(method.teacher_cache) if method.teacher_cache else setup.run.path / tc.DEFAULT_FILE_NAME

    def build() -> "tc.TeacherCache":
        setup.emit(LogMessage(text=f"teacher cache: running the teacher over {len(rows):,} rows (top-{method.top_k})"))
        import functools

        import torch

        precision = _precision_flags(config.training.precision, setup.teacher_device)
        dtype = torch.bfloat16 if precision["bf16"] else torch.float16 if precision["fp16"] else None
        autocast = functools.partial(torch.autocast, setup.teacher_device.type, dtype=dtype) if dtype is not None else None
        inner, decoder = _decoder_of(setup.teacher)
        return tc.build_teacher_cache(
            decoder, inner.get_output_embeddings(), rows, top_k=method.top_k, temperature=method.temperature, vocab_size=vocab,
            fingerprint=fingerprint, batch_size=max(8, config.training.batch_size),
            pad_token_id=setup.tokenizer.pad_token_id or 0, autocast=autocast,
        )

    log = lambda text: setup.emit(LogMessage(text=text))  # noqa: E731
    if procs.is_main:
        cache, _ = tc.load_or_build(path, fingerprint, build, log)
    procs.barrier()
    if not procs.is_main:
        cache = tc.TeacherCache.load(path)
    setup.teacher_cache = cache
    if config.training.sample_steps and setup.probe_prompts and procs.is_main:
        setup.answer_probes_with_teacher()
    setup.teacher = None  # training needs only the cache from here on
    gc.collect()
    prepared.train = prepared.train.add_column("row", list(range(len(prepared.train))))
    if prepared.eval is not None:
        start = len(prepared.train)
        prepared.eval = prepared.eval.add_column("row", list(range(start, start + len(prepared.eval))))


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def delete_run(run: RunDir) -> None:
    """Remove a run folder (only when no process is writing to it)."""
    if run.status().get("state") in ("running", "paused"):
        raise TrainingError(f"{run.path}: the run is still active; stop it first")
    shutil.rmtree(run.path)
