"""What a training method declares: its config section, teacher needs, checks, preparation, loss,
metrics and memory. One subclass of :class:`Method` per file in this package; the registry
(:mod:`distill_gui.core.methods`) finds it by its ``name``.

The training loop (:mod:`distill_gui.core.training`) calls, in order:

1. :meth:`Method.validate` before a run folder is made (cheap config checks, :class:`ConfigError`);
2. :meth:`Method.check` once the student, the teacher (when the run loads one) and the data are
   loaded, before the run folder is made (tokenizer checks: a refused run leaves no folder);
   :meth:`Method.prepare` then, in the run folder (a teacher cache, generations);
3. :meth:`Method.loss` for every micro-batch: a mean over the micro-batch's trained tokens plus a dict
   of metrics, each also a per-token mean. The loop weights them by tokens over the optimizer step, so
   gradient accumulation and several processes give the gradient of one big batch.

:attr:`Method.metrics` tells the app how to plot what :meth:`loss` reports (label, unit, plot group).
:meth:`Method.memory` gives the method's share of a step's peak memory for the pre-flight estimate.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

if TYPE_CHECKING:
    from distill_gui.core.config import RunConfig

# What a method needs from a teacher.
TEACHER_NONE = "none"  # no teacher (the data's text alone)
TEACHER_LOGITS = "logits"  # the teacher's next-token distributions: same tokenizer (or a mapped one)
TEACHER_TEXT = "text"  # text the teacher writes (any tokenizer, a served teacher too)
TEACHER_NEEDS = (TEACHER_NONE, TEACHER_LOGITS, TEACHER_TEXT)


@dataclass(frozen=True)
class MetricSpec:
    """How the app shows one metric a method reports: a curve named ``label`` in the plot ``group``."""

    key: str
    label: str
    group: str = "Loss"
    unit: str = ""
    doc: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "label": self.label, "group": self.group, "unit": self.unit, "doc": self.doc}

    @classmethod
    def from_dict(cls, data: dict) -> "MetricSpec":
        return cls(**{k: str(data.get(k) or "") for k in ("key", "label", "group", "unit", "doc")})


# Metrics every run reports, whatever its method (StepLogged's own fields and the eval loss).
STANDARD_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("loss", "total", "Loss", "nats/token", "The training loss of the method, token-weighted over the logged steps."),
    MetricSpec("eval_loss", "eval", "Loss", "nats/token", "The loss on the evaluation rows."),
    MetricSpec("learning_rate", "lr", "Learning rate"),
    MetricSpec("grad_norm", "grad norm", "Grad norm", "", "Gradient norm before clipping."),
    MetricSpec("tokens_per_s", "tokens/s", "Tokens/s", "tokens/s", "Tokens (prompt and completion) trained per second."),
)


@dataclass
class LossResult:
    """One micro-batch: ``total`` (the tensor to back-propagate) and ``metrics`` are means per trained token."""

    total: Any
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    """What a method's loss may use besides the student and the batch."""

    config: "RunConfig"
    teacher: Any = None
    teacher_device: Any = None
    teacher_cache: Any = None
    shared_vocab_size: int | None = None
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


@dataclass(frozen=True)
class MemoryInputs:
    """Sizes a method's memory share is computed from (bytes per value already resolved)."""

    positions: int  # batch x sequence length
    student_vocab: int
    student_hidden: int
    student_dtype_bytes: float
    teacher_vocab: int = 0
    teacher_hidden: int = 0
    teacher_dtype_bytes: float = 2
    teacher_layer_values: int = 0  # activation values of one teacher layer per position
    student_layers: int = 0
    student_layer_values: int = 0  # activation values of one student layer per position
    student_params: int = 0


@dataclass(frozen=True)
class MethodMemory:
    """A method's share of one training step's peak memory."""

    logits: int = 0
    """Logit-sized blocks alive at the peak (bytes)."""
    teacher_activations: int = 0
    """Teacher forward activations alive at the peak (bytes)."""
    teacher_weights_resident: bool = False
    """The teacher's weights stay in memory while the student trains."""
    teacher_weights_at_start: bool = False
    """The teacher's weights are loaded before training (e.g. to build a cache) and then freed."""


class Method:
    """Base of the training methods. Subclasses set the class attributes and override the hooks."""

    name: ClassVar[str] = ""
    """The value of ``method.kind`` and the name of this method's config section (``method.<name>``)."""
    title: ClassVar[str] = ""
    """Short human name, e.g. "Soft-label KD"."""
    summary: ClassVar[str] = ""
    """A few sentences (HTML allowed) the Method page shows."""
    Config: ClassVar[type] = type(None)
    """The ``@dataclass`` of this method's settings (fields made with :mod:`distill_gui.core.schema`)."""
    teacher: ClassVar[str] = TEACHER_NONE
    """What the method needs from a teacher: one of :data:`TEACHER_NEEDS`."""
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()
    """The metrics :meth:`loss` reports besides the total loss."""
    order: ClassVar[int] = 100
    """Position in lists (lower first)."""

    # ---- Config
    def section(self, config: "RunConfig") -> Any:
        """This method's settings in a run config."""
        return getattr(config.method, self.name)

    def needs_teacher(self, config: "RunConfig") -> bool:
        """The run cannot start without ``teacher.path``."""
        return self.teacher != TEACHER_NONE

    def loads_teacher_for_training(self, config: "RunConfig") -> bool:
        """The training process loads the teacher's weights for the method (not for samples)."""
        return self.teacher == TEACHER_LOGITS

    def validate(self, config: "RunConfig") -> None:
        """Config checks that need more than one field (raise :class:`ConfigError`)."""

    def resolve_paths(self, section: Any, base: Any) -> None:
        """Make the section's relative file paths absolute against ``base`` (a config file's folder)."""

    # ---- Training
    def resume_cache(self, setup: Any) -> Any:
        """The file a resumed run (``setup.run``) trains from instead of asking its teacher (KD's teacher cache),
        when it is on disk; None when the method has none. A served teacher that does not answer then is a warning."""
        return None

    def check(self, setup: Any) -> None:
        """Checks that need the loaded models (e.g. matching tokenizers), before a run folder is made."""

    def prepare(self, setup: Any, prepared: Any) -> None:
        """Called in the run folder once models, data and checks are done (``setup``: :class:`RunSetup`)."""

    def trainer_class(self, setup: Any) -> type:
        """The Trainer class :meth:`build_trainer` builds by default: distill-gui's, which calls :meth:`loss`
        (a method that only changes how its micro-batches are made returns a subclass of it here)."""
        from distill_gui.core.training.trainer import make_trainer_class

        return make_trainer_class()

    def build_trainer(self, setup: Any, prepared: Any, args: Any, callbacks: list) -> Any:
        """The ``transformers.Trainer`` (or subclass, e.g. TRL's) that trains this method.

        The default is distill-gui's Trainer subclass, whose ``compute_loss`` calls :meth:`loss`. A
        method with its own loop (generation, RL) returns another Trainer subclass built on ``args``
        (the run's ``TrainingArguments``) with ``callbacks`` passed through: they report events,
        honour stop/pause and commit checkpoints. Numbers such a trainer logs that are not the standard
        ones arrive in ``StepLogged.metrics``; declare them in :attr:`metrics`.
        """
        from distill_gui.core.data import DataCollator

        return self.trainer_class(setup)(
            model=setup.student,
            args=args,
            train_dataset=prepared.train,
            eval_dataset=prepared.eval,
            data_collator=DataCollator(setup.tokenizer.pad_token_id),
            callbacks=callbacks,
            setup=setup,
        )

    def loss(self, ctx: StepContext, model: Any, inputs: dict) -> LossResult:
        """The loss of one micro-batch (with the default trainer): a mean over its trained tokens.

        A method overrides this, or :meth:`build_trainer` when it trains with a loop of its own.
        """
        raise TypeError(f"method {self.name!r} ({type(self).__module__}) defines neither loss() nor build_trainer()")

    # ---- Memory
    def memory(self, config: "RunConfig", sizes: MemoryInputs) -> MethodMemory:
        """This method's share of one step's peak memory (the default: a plain cross-entropy step)."""
        return MethodMemory(logits=int(sizes.positions * sizes.student_vocab * 4 * CE_LOGIT_COPIES))


CE_LOGIT_COPIES = 3
"""fp32 [positions, vocab] blocks alive in a plain cross-entropy step: the logits, log-softmax and its gradient."""


def trained_positions(labels: Any) -> Any:
    """Mask of the positions whose next token is trained (labels shifted by one, -100 ignored)."""
    return labels[:, 1:] != -100
