"""A run's parts, set up in order: the models, the probe prompts, the Trainer's arguments.

:class:`RunSetup` is what the Trainer subclass, its callbacks and the method share during a run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill_gui.core.config import RunConfig
from distill_gui.core.events import EventCallback, LogMessage, Sample, SamplesGenerated
from distill_gui.core.methods import Method, StepContext, loads_teacher, needs_teacher
from distill_gui.core.runs import RunDir
from distill_gui.core.served_teacher_config import is_served
from distill_gui.core.training.control import Processes, RunControl


@dataclass
class RunSetup:
    """Everything the trainer subclass, the callbacks and the method share."""

    config: RunConfig
    run: RunDir | None
    """None until the run folder is made (after the models, the data and the method's checks)."""
    emit: EventCallback
    control: RunControl
    method: Method
    procs: Processes = field(default_factory=Processes)
    student: Any = None
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
    """The offline teacher cache (KD's cache_teacher); the teacher itself is freed then."""
    served_teacher: Any = None
    """The teacher served over HTTP (``teacher.url``; a :class:`~distill_gui.core.served_teacher.ServedTeacher`), never loaded here."""
    served_offline: bool = False
    """The served teacher did not answer when this run resumed; it goes on from its teacher cache."""
    stopped: bool = False

    def log(self, text: str) -> None:
        self.emit(LogMessage(text=text))

    def step_context(self, autocast: Any) -> StepContext:
        return StepContext(
            config=self.config,
            teacher=self.teacher,
            teacher_device=self.teacher_device,
            teacher_cache=self.teacher_cache,
            shared_vocab_size=self.shared_vocab_size,
            autocast=autocast,
        )

    # ---- Side-by-side samples
    def _answer_probes(self, model: Any, tokenizer: Any) -> list[str]:
        from distill_gui.core.generation import GenerationSettings, generate

        settings = GenerationSettings(max_new_tokens=self.config.training.max_new_tokens, batch_size=8)
        return [a[0] for a in generate(model, tokenizer, self.probe_prompts, settings)]

    def answer_probes_with_teacher(self) -> None:
        """The teacher's answers to the probe prompts (it does not change during a run: answer once, reuse)."""
        if self.served_teacher is not None:
            self.teacher_answers = self._answer_probes_served()
            return
        self.teacher_answers = self._answer_probes(self.teacher, self.teacher_tokenizer)

    def _answer_probes_served(self) -> list[str]:
        """The served teacher's greedy answers to the probe prompts (as rendered for the student, sent as they are);
        none, with one warning, when the server fails: the samples then show the student alone (not asked again)."""
        from distill_gui.core.served_teacher import ServedTeacherError

        if self.served_offline:  # said when the run resumed
            return []
        try:
            answers = self.served_teacher.complete_many(self.probe_prompts, max_tokens=self.config.training.max_new_tokens)
        except ServedTeacherError as exc:
            self.emit(LogMessage(text=f"side-by-side samples without the teacher: {exc}", level="warning"))
            return []
        return [row[0].text if row else "" for row in answers]

    def emit_samples(self, model: Any, step: int) -> None:
        if not self.probe_prompts or not self.procs.is_main:
            return
        student = self._answer_probes(model, self.tokenizer)
        if (self.teacher is not None or self.served_teacher is not None) and self.teacher_answers is None:
            self.answer_probes_with_teacher()
        teacher: list[str | None] = list(self.teacher_answers) if self.teacher_answers else [None] * len(student)
        samples = tuple(
            Sample(prompt=p, student=s, teacher=t, reference=r)
            for p, s, t, r in zip(self.probe_prompts, student, teacher, self.probe_references)
        )
        self.emit(SamplesGenerated(step=step, samples=samples))


def load_models(setup: RunSetup) -> None:
    """Load the student (for training) and, when the run needs one, the teacher."""
    from distill_gui.core.models import load_model

    config = setup.config
    student_cfg, teacher_cfg = config.student, config.teacher
    if setup.procs.device is not None:  # one device per process under accelerate launch
        student_cfg = dataclasses.replace(student_cfg, device=setup.procs.device) if student_cfg.device == "auto" else student_cfg
        teacher_cfg = dataclasses.replace(teacher_cfg, device=setup.procs.device) if teacher_cfg.device == "auto" else teacher_cfg
    setup.log(f"loading student {config.student.path}")
    from transformers import set_seed

    set_seed(config.training.seed)  # LoRA adapters are initialised while the student loads: same seed, same run
    student = load_model(student_cfg, "student", for_training=True)
    setup.student = student.model
    setup.tokenizer = student.tokenizer
    setup.device = student.device
    setup.student_params = student.num_params
    setup.trainable_params = student.trainable_params
    if loads_teacher(config):
        from distill_gui.core.devices import frozen_teacher_dtype

        setup.log(f"loading teacher {config.teacher.path}")
        teacher_cfg = frozen_teacher_dtype(teacher_cfg, config.training.precision)
        teacher = load_model(teacher_cfg, "teacher", for_training=False)
        setup.teacher = teacher.model
        setup.teacher_tokenizer = teacher.tokenizer
        setup.teacher_device = teacher.device
        setup.teacher_params = teacher.num_params
    elif is_served(config.teacher) and (needs_teacher(config) or config.training.sample_steps > 0):
        setup.served_teacher = _served_teacher(setup, required=needs_teacher(config))


def _served_teacher(setup: RunSetup, required: bool) -> Any:
    """The client of the served teacher, its model resolved; for the samples alone a server that fails is a warning.

    The model the server chose (``teacher.model`` empty: its first) is written into the config, so the run
    folder names it. A resumed run whose teacher cache is on disk goes on when the server does not answer:
    training reads the cache, not the server (``setup.served_offline``; the method decides what it needs).
    """
    from distill_gui.core.served_teacher import ServedTeacherError
    from distill_gui.core.served_teacher_config import describe, served_teacher_for

    teacher = setup.config.teacher
    setup.log(f"teacher: served, {describe(teacher)}")
    served = None
    try:
        served = served_teacher_for(teacher)  # a key variable that is not set is refused here
        served.resolve_model()
    except ServedTeacherError as exc:
        cache = setup.method.resume_cache(setup) if served is not None and setup.run is not None and teacher.model else None
        if required and cache is not None:
            setup.served_offline = True
            setup.emit(
                LogMessage(
                    text=f"the served teacher does not answer ({exc}); the run resumes from its teacher cache {cache}", level="warning"
                )
            )
            return served
        if required:
            raise
        setup.emit(LogMessage(text=f"side-by-side samples without the teacher: {exc}", level="warning"))
        return None
    teacher.model = served.model
    return served


def probe_prompts(config: RunConfig, prepared: Any, tokenizer: Any) -> tuple[list[str], list[str | None]]:
    """The prompts both models answer side by side during the run, with their reference answers."""
    from distill_gui.core.data import render_prompt

    t = config.training
    if t.probe_prompts:
        return list(t.probe_prompts), [None] * len(t.probe_prompts)
    examples = (prepared.eval_examples or prepared.train_examples)[: t.num_probe_prompts]
    examples = [e for e in examples if e.prompt or e.messages]
    prompts = [render_prompt(e, tokenizer, config.data.chat_template, config.data.system_prompt) for e in examples]
    return prompts, [e.reference or e.completion for e in examples]


def training_arguments(config: RunConfig, run: RunDir, device: Any, has_eval: bool, incoming: Path) -> Any:
    """The Trainer's arguments; checkpoints are written into ``incoming`` and committed by our callback."""
    from transformers import TrainingArguments

    from distill_gui.core.devices import autocast_precision
    from distill_gui.core.tracking import report_to_argument

    t = config.training
    eval_every = t.eval_steps if has_eval else 0
    precision = autocast_precision(t.precision, device)
    memory: dict[str, Any] = {"activation_checkpointing": True} if t.gradient_checkpointing else {}
    return TrainingArguments(
        output_dir=str(incoming),
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
        **memory,
        report_to=report_to_argument(t.report_to, run.path),
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        use_cpu=device.type == "cpu",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
    )
