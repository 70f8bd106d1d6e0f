"""Self-distillation (rejection-sampling fine-tuning, STaR, ReST-EM): the student learns from its own correct answers.

A run is ``rounds`` rounds. Each round starts from the latest student: it samples
``samples_per_question`` answers to each question of the training data (the data needs reference answers,
e.g. ``#### 42``), the verifier keeps the correct ones (each distinct answer once per question;
:mod:`distill_gui.core.methods.self_distill_rounds`), and the student is fine-tuned on them with plain
cross-entropy for the round's share of ``training.max_steps`` (the steps are split evenly over the rounds;
a round with fewer kept answers than it trains rows goes over them more than once, reshuffled each pass).

It runs on the default Trainer (:func:`distill_gui.core.training.trainer.make_trainer_class`): the training
set is a list of slots, one per row the run will train, and the rows are filled in as each optimizer step
fetches its micro-batches, from the round that step belongs to. So a round is sampled exactly when the step
before it has been taken, the step count and the Trainer's resume logic stay as they are, and a checkpoint
is written at the end of every round. A killed run resumes from its latest checkpoint: finished rounds are
read back from the run folder (``self_distill/round-NN.json``), the current round's sampling continues from
its last written batch and its training from the checkpoint, giving the weights an uninterrupted run gives.

Each step reports the round's numbers (answers generated and kept, their accuracy, the questions solved);
the round's first step also carries some of its sampled answers as samples, and as a SamplesScored event
with the verifier's verdict on each. A student that gets no answer right is told so after the round's
first batch, and a round that keeps nothing ends the run with advice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distill_gui.core.methods.base import (
    CE_LOGIT_COPIES,
    TEACHER_NONE,
    LossResult,
    MemoryInputs,
    Method,
    MethodMemory,
    MetricSpec,
    StepContext,
)
from distill_gui.core.methods.self_distill_trainer import (
    NO_REFERENCES,
    Rounds,
    SlotsOrRows,
    _check_references,
    _Slots,
    make_self_distill_trainer_class,
    questions_of,
)
from distill_gui.core.schema import ConfigError, option

if TYPE_CHECKING:
    from distill_gui.core.config import RunConfig

SAMPLING_COPIES = 3
"""fp32 [rows, vocab] blocks alive while a token is sampled (logits, probabilities, their running sum)."""


@dataclass
class SelfDistillConfig:
    """Self-distillation (rejection-sampling fine-tuning) settings."""

    rounds: int = option(
        2,
        "Rounds of sample → verify → fine-tune; each round samples from the student the previous round trained. "
        "training.max_steps is split evenly over the rounds.",
        min=1,
        max=50,
    )
    samples_per_question: int = option(
        4,
        "Answers the student samples per question and round (K); more finds correct answers to harder questions.",
        min=1,
        max=64,
    )
    temperature: float = option(
        0.8,
        "Sampling temperature: higher gives more varied answers (more distinct correct ones), lower surer ones. "
        "0 samples greedily (then only one answer per question makes sense).",
        min=0.0,
        max=5.0,
    )
    max_new_tokens: int = option(256, "Longest sampled answer in tokens; longer answers are cut off.", min=1, max=32768)
    questions_per_round: int = option(
        0,
        "Questions sampled per round, drawn afresh each round (seeded); 0 uses every training question.",
        min=0,
    )
    checker: str = option(
        "numeric",
        "How answers are checked against the references (distill_gui.core.verify): numeric compares the final "
        "numbers exactly; steps also requires every arithmetic step the answer writes out to hold (a right answer "
        "reached through a wrong step is not kept, so the student does not learn the wrong step); math checks "
        "LaTeX/symbolic equivalence; a checker registered with verify.register_checker can be named too.",
    )
    keep_cut_off: bool = option(
        False,
        "Also keep correct answers that were cut off at max_new_tokens (trained with the end of the turn added). "
        "Off: only answers the student finished are kept.",
    )
    generation_batch_size: int = option(
        64,
        "Answers sampled together (questions × samples_per_question per batch); more is faster and takes more memory.",
        min=1,
        max=4096,
    )


class SelfDistill(Method):
    name = "self_distill"
    title = "Self-distillation"
    summary = (
        "<b>Self-distillation</b> (rejection-sampling fine-tuning, STaR, ReST-EM): the student answers each question "
        "several times, the verifier keeps its correct answers, and it is fine-tuned on them — for a few rounds, each "
        "from the latest student. Needs data with reference answers ('#### 42') and a student that already gets some "
        "right (e.g. a trace-SFT run folder as student.path); no teacher."
    )
    Config = SelfDistillConfig
    teacher = TEACHER_NONE
    metrics = (
        MetricSpec("ce", "CE", "Loss", "nats/token", "Cross-entropy on the kept answers."),
        MetricSpec(
            "accuracy",
            "accuracy",
            "Accuracy",
            "",
            "Share of the round's sampled answers the verifier accepted (the student as the round began).",
        ),
        MetricSpec("solved", "questions solved", "Accuracy", "", "Share of the round's questions with at least one accepted answer."),
        MetricSpec("keep_rate", "kept / generated", "Accuracy", "", "Share of the round's sampled answers kept (correct and distinct)."),
        MetricSpec("generated", "generated", "Answers per round", "answers", "Answers the round sampled."),
        MetricSpec("kept", "kept", "Answers per round", "answers", "Correct, distinct answers the round trains on."),
        MetricSpec("round", "round", "Round", "", "The round the step belongs to (1 = the first)."),
    )
    order = 35

    # ---- Config
    def validate(self, config: "RunConfig") -> None:
        from distill_gui.core.verify import checker_names

        section = self.section(config)
        if section.checker not in checker_names():
            raise ConfigError(
                f"method.self_distill.checker: {section.checker!r} is not a checker; choose one of {', '.join(checker_names())}"
            )
        if section.temperature == 0 and section.samples_per_question > 1:
            raise ConfigError(
                f"method.self_distill.temperature: 0 samples greedily, so the {section.samples_per_question} answers per "
                "question would all be the same; set a temperature above 0 (e.g. 0.8) or samples_per_question: 1"
            )
        steps = config.training.max_steps
        if steps <= 0:
            raise ConfigError(
                "training.max_steps: self_distill needs a step budget (split evenly over the rounds); "
                "num_epochs has no meaning when each round makes its own data. Set max_steps above 0"
            )
        if steps < section.rounds:
            raise ConfigError(
                f"training.max_steps: {steps} steps cannot be split over method.self_distill.rounds={section.rounds} "
                "rounds; give every round at least one step"
            )
        _check_references(config.data.train, config)

    # ---- Training
    def check(self, setup: Any) -> None:
        if setup.procs.world_size > 1:
            raise ConfigError(
                "method.kind: self_distill runs in one process (each round samples with the whole student); "
                "start it without accelerate launch"
            )

    def build_trainer(self, setup: Any, prepared: Any, args: Any, callbacks: list) -> Any:
        from distill_gui.core.data import DataCollator
        from distill_gui.core.events import LogMessage

        questions, unreferenced = questions_of(prepared.train_examples, prepared.train)
        if not questions:
            raise ConfigError("data.train: " + NO_REFERENCES.format(what="the training data"))
        if unreferenced:
            setup.emit(
                LogMessage(
                    level="warning",
                    text=f"self_distill: {unreferenced} training rows have no reference answer "
                    f"and are left out; {len(questions)} questions are asked",
                )
            )
        t = setup.config.training
        rows_per_step = t.batch_size * t.gradient_accumulation_steps
        rounds = Rounds(setup, questions, t.max_steps, rows_per_step)
        collator = DataCollator(setup.tokenizer.pad_token_id)
        return make_self_distill_trainer_class()(
            model=setup.student,
            args=args,
            train_dataset=_Slots(t.max_steps * rows_per_step),
            eval_dataset=prepared.eval,
            data_collator=SlotsOrRows(collator),
            callbacks=callbacks,
            setup=setup,
            rounds=rounds,
            rows_collator=collator,
        )

    def loss(self, ctx: StepContext, model: Any, inputs: dict) -> LossResult:
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=inputs["labels"])
        return LossResult(total=out.loss, metrics={"ce": out.loss.detach()})

    # ---- Memory
    def memory(self, config: "RunConfig", sizes: MemoryInputs) -> MethodMemory:
        """The larger of a plain cross-entropy step and a round's sampling.

        Sampling holds ``generation_batch_size`` answers at once, each with a KV cache of ``2 × hidden`` values
        per layer over prompt and answer (an upper bound: grouped-query attention keeps less), plus a few fp32
        [answers, vocab] blocks for the next token.
        """
        section = self.section(config)
        rows = section.generation_batch_size
        seq = config.data.max_length + section.max_new_tokens
        kv_cache = rows * seq * sizes.student_layers * 2 * sizes.student_hidden * sizes.student_dtype_bytes
        sampling = kv_cache + rows * sizes.student_vocab * 4 * SAMPLING_COPIES
        step = sizes.positions * sizes.student_vocab * 4 * CE_LOGIT_COPIES
        return MethodMemory(logits=int(max(sampling, step)))
