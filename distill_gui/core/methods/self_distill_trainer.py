"""Self-distillation's schedule and trainer: the rounds (sample, verify, keep, train) fed to the Trainer as
the optimizer steps fetch their rows, resumable inside a round. The method itself is
:mod:`distill_gui.core.methods.self_distill`."""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill_gui.core.methods.self_distill_rounds import Question, RoundResult, RoundStore, Sampler, round_questions, sample_round
from distill_gui.core.schema import ConfigError

if TYPE_CHECKING:
    from distill_gui.core.config import RunConfig

SHOWN_SAMPLES = 4
"""Sampled answers a round shows as samples (the first questions' first answers)."""
PROGRESS_EVERY_S = 30.0
"""Seconds between progress lines while a round samples."""


def _training_rows(result: RoundResult, questions: dict[int, Question], setup: Any) -> list[dict]:
    """The kept answers of a round, tokenized as SFT rows of their question's prompt."""
    from distill_gui.core.data import tokenize_example

    data = setup.config.data
    rows = []
    for kept in result.kept:
        question = questions.get(int(kept["question"]))
        if question is None:
            continue
        example = dataclasses.replace(question.example, completion=kept["answer"])
        feature = tokenize_example(example, setup.tokenizer, data.max_length, data.chat_template, data.system_prompt)
        if feature is not None:
            rows.append(feature)
    return rows


NO_REFERENCES = (
    "self_distill on data without reference answers: {what} has no row with a final answer to verify against (the "
    "text after '####' in the completion, a \\boxed{{}} answer, or a bare answer). Give question/answer data whose "
    "answers end in '#### <answer>' (GSM8K style), or train with method.kind: sft"
)
QUICK_CHECK_BYTES = 20 << 20
"""Data files up to this size are read for reference answers by :meth:`SelfDistill.validate` (the app calls it as a
run starts); larger files, folders and hub ids are checked once the run has loaded them."""


def _check_references(path: str | None, config: "RunConfig") -> None:
    """Refuse a local data file without a single reference answer (cheap: the rows are read, not tokenized)."""
    from distill_gui.core.data import DataError, load_examples
    from distill_gui.core.methods.rlvr import reference_of

    file = Path(path).expanduser() if path else None
    if file is None or not file.is_file() or file.stat().st_size > QUICK_CHECK_BYTES:
        return
    try:
        examples, _ = load_examples(str(file), config.data.format, config.data.columns)
    except DataError:
        return  # the data loader reports it with every bad line
    if not any(reference_of(e) for e in examples):
        raise ConfigError("data.train: " + NO_REFERENCES.format(what=path))


def questions_of(examples: list[Any], features: Any) -> tuple[list[Question], int]:
    """The training rows the student can be checked on (those with a reference answer), and how many have none.

    The prompt tokens are the row's tokenized prompt (the positions before its first trained label), so a
    question is asked as SFT on it would have shown it.
    """
    from distill_gui.core.methods.rlvr import reference_of

    questions, unreferenced = [], 0
    for index, example in enumerate(examples):
        reference = reference_of(example)
        if reference is None:
            unreferenced += 1
            continue
        ids, labels = features[index]["input_ids"], features[index]["labels"]
        prompt = list(ids[: next((i for i, label in enumerate(labels) if label != -100), len(ids))])
        if prompt:
            questions.append(Question(index=index, prompt_ids=prompt, example=example, reference=reference))
        else:
            unreferenced += 1
    return questions, unreferenced


class _StoppedWhileSampling(Exception):
    """A stop was asked for while a round sampled: the run stops at its last checkpoint (sampling resumes)."""


class Rounds:
    """The run's rounds: which steps each trains, their sampled data, and the rows each step trains on."""

    def __init__(self, setup: Any, questions: list[Question], total_steps: int, rows_per_step: int):
        section = setup.config.method.self_distill
        self.setup = setup
        self.section = section
        self.questions = questions
        self.by_index = {q.index: q for q in questions}
        self.rows_per_step = rows_per_step
        self.count = section.rounds
        self.boundaries = [total_steps * r // section.rounds for r in range(section.rounds + 1)]
        self.store = RoundStore(Path(setup.run.path) / "self_distill")
        self.seed = setup.config.training.seed
        self.model: Any = None
        self.current: int | None = None
        self.result: RoundResult | None = None
        self.rows: list[dict] = []
        self._orders: dict[int, list[int]] = {}
        self.shown = True

    def round_of(self, step: int) -> int:
        """The round the optimizer step after ``step`` steps belongs to."""
        for r in range(self.count):
            if step < self.boundaries[r + 1]:
                return r
        return self.count - 1

    def rows_for(self, step: int, offset: int, count: int) -> list[dict]:
        """The ``count`` rows a micro-batch of the step after ``step`` trains, starting ``offset`` rows into the step."""
        round_ = self.round_of(step)
        if round_ != self.current:
            self._enter(round_)
        start = (step - self.boundaries[round_]) * self.rows_per_step + offset
        return [self.rows[self._row(start + i)] for i in range(count)]

    def _row(self, position: int) -> int:
        n = len(self.rows)
        epoch, within = divmod(position, n)
        order = self._orders.get(epoch)
        if order is None:
            order = list(range(n))
            random.Random(f"self_distill-order-{self.seed}-{self.current}-{epoch}").shuffle(order)
            self._orders = {epoch: order}
        return order[within]

    # ---- A round's data
    def _enter(self, round_: int) -> None:
        from distill_gui.core.events import LogMessage

        setup, section = self.setup, self.section
        result = self.store.finished(round_)
        if result is not None:
            setup.log(f"self_distill round {round_ + 1}/{self.count}: its answers were sampled before the restart; reusing them")
        else:
            asked = round_questions(self.questions, round_, section.questions_per_round, self.seed)
            setup.log(
                f"self_distill round {round_ + 1}/{self.count}: sampling {section.samples_per_question} answers to each of "
                f"{len(asked)} questions (max {section.max_new_tokens} tokens, temperature {section.temperature})"
            )
            result = sample_round(self._sampler(), asked, round_, self.store, between_batches=self._between_batches(round_))
        setup.log(result.summary(self.count))
        if not result.kept:
            raise ConfigError(self._nothing_kept(result))
        self.current, self.result, self._orders = round_, result, {}
        self.rows = _training_rows(result, self.by_index, setup)
        if not self.rows:
            raise ConfigError(
                f"self_distill round {round_ + 1}: none of the {len(result.kept)} kept answers has a token "
                "left after tokenization; raise data.max_length"
            )
        steps = self.boundaries[round_ + 1] - self.boundaries[round_]
        passes = steps * self.rows_per_step / len(self.rows)
        setup.emit(
            LogMessage(
                text=f"self_distill round {round_ + 1}/{self.count}: training steps {self.boundaries[round_] + 1}–"
                f"{self.boundaries[round_ + 1]} on {len(self.rows)} answers ({passes:.1f} passes)"
            )
        )
        self.shown = False

    def _sampler(self) -> Sampler:
        from distill_gui.core.verify import get_checker

        s = self.section
        return Sampler(
            model=self.model,
            tokenizer=self.setup.tokenizer,
            samples_per_question=s.samples_per_question,
            temperature=s.temperature,
            max_new_tokens=s.max_new_tokens,
            batch_rows=s.generation_batch_size,
            checker=get_checker(s.checker),
            keep_cut_off=s.keep_cut_off,
            seed=self.seed,
        )

    def _between_batches(self, round_: int) -> Any:
        from distill_gui.core.events import LogMessage

        setup = self.setup
        state = {"warned": False, "last": time.time()}

        def check(done: int, total: int, partial: RoundResult) -> None:
            if round_ == 0 and not state["warned"] and partial.correct == 0:
                state["warned"] = True
                setup.emit(
                    LogMessage(
                        level="warning",
                        text=(
                            f"self_distill: none of the student's first {partial.generated} answers is correct; if the whole round "
                            "finds none, the run ends. A student that cannot yet answer learns first from the teacher's traces "
                            "(trace SFT, method.kind: sft), whose run folder can then be student.path here"
                        ),
                    )
                )
            if time.time() - state["last"] >= PROGRESS_EVERY_S:
                state["last"] = time.time()
                setup.log(f"self_distill round {round_ + 1}: {done}/{total} questions sampled, {partial.correct} correct answers so far")
            control = setup.control
            while control.paused and not control.stop_requested:
                time.sleep(0.05)
            if setup.procs.any(control.stop_requested):
                raise _StoppedWhileSampling()

        return check

    def _nothing_kept(self, result: RoundResult) -> str:
        section = self.section
        if result.correct and not section.keep_cut_off:
            return (
                f"self_distill round {result.round + 1}: all {result.correct} correct answers were cut off at "
                f"method.self_distill.max_new_tokens ({section.max_new_tokens}); raise it, or set keep_cut_off: true"
            )
        return (
            f"self_distill round {result.round + 1}: the student got none of its {result.generated} answers right, so it "
            "has nothing to learn from. Train it on the teacher's reasoning traces first (trace SFT, method.kind: sft) and "
            "give that run's folder as student.path, or sample more answers (samples_per_question) at a higher temperature"
        )

    def stats(self) -> dict[str, float]:
        return self.result.stats() if self.result is not None else {}

    def shown_samples(self) -> tuple:
        """A few of the current round's sampled answers with their references (once per round)."""
        from distill_gui.core.events import Sample

        if self.shown or self.current is None:
            return ()
        self.shown = True
        samples = []
        for record in sorted(self.store.batches(self.current).values(), key=lambda r: r["batch"]):
            for row in record["questions"]:
                question = self.by_index.get(int(row["question"]))
                if question is None or not row["answers"]:
                    continue
                mark = "✓" if row["correct"][0] else "✗"
                samples.append(
                    Sample(
                        prompt=self.setup.tokenizer.decode(question.prompt_ids, skip_special_tokens=True),
                        student=f"{mark} {row['answers'][0]}",
                        reference=question.reference,
                    )
                )
                if len(samples) >= SHOWN_SAMPLES:
                    return tuple(samples)
        return tuple(samples)

    def scored_samples(self, step: int) -> Any:
        """The first of the current round's sampled answers with the verifier's verdicts, as a SamplesScored event."""
        from distill_gui.core.events import SCORED_SAMPLE_ITEMS, SamplesScored, ScoredSample
        from distill_gui.core.verify import extract_answer

        items: list[ScoredSample] = []
        records = sorted(self.store.batches(self.current).values(), key=lambda r: r["batch"]) if self.current is not None else []
        for record in records:
            for row in record["questions"]:
                question = self.by_index.get(int(row["question"]))
                if question is None:
                    continue
                prompt = self.setup.tokenizer.decode(question.prompt_ids, skip_special_tokens=True)
                for answer, correct in zip(row["answers"], row["correct"]):
                    if len(items) >= SCORED_SAMPLE_ITEMS:
                        return SamplesScored(step=step, items=tuple(items), method="self_distill")
                    items.append(
                        ScoredSample(
                            prompt=prompt,
                            completion=answer,
                            correct=bool(correct),
                            answer=extract_answer(answer),
                            reference=question.reference,
                        )
                    )
        return SamplesScored(step=step, items=tuple(items), method="self_distill")


class _Slots:
    """The training set the Trainer iterates: one slot per row the run trains (filled in by :class:`Rounds`)."""

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        return {"slot": index}


@dataclass
class SlotsOrRows:
    """The Trainer's collator: slot batches pass as they are (filled in later), tokenized rows are padded."""

    rows: Any

    def __call__(self, features: Any) -> dict:
        import torch

        features = list(features)
        if features and "slot" in features[0]:
            return {"slot": torch.tensor([int(f["slot"]) for f in features], dtype=torch.long)}
        return self.rows(features)


def make_self_distill_trainer_class() -> type:
    """The default Trainer whose micro-batches are filled with the current round's kept answers."""
    from transformers import TrainerCallback

    from distill_gui.core.events import SamplesGenerated
    from distill_gui.core.training.trainer import make_trainer_class

    class _Filled:
        """The epoch iterator with each slot batch replaced by its rows (sampling a round when one begins)."""

        def __init__(self, trainer: Any, inner: Any):
            self.trainer, self.inner, self.offset = trainer, inner, 0

        def __iter__(self) -> "_Filled":
            return self

        def __next__(self) -> dict:
            slots = next(self.inner)["slot"]
            trainer = self.trainer
            rows = trainer.rounds.rows_for(trainer.state.global_step, self.offset, len(slots))
            self.offset += len(slots)
            return trainer.rows_collator(rows)

    class RoundCheckpoints(TrainerCallback):
        """A checkpoint at the end of every round (a resumed run never samples a finished round again)."""

        def __init__(self, rounds: Rounds):
            self.rounds = rounds

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in self.rounds.boundaries[1:-1]:
                control.should_save = True
            return control

    class SelfDistillTrainer(make_trainer_class()):  # type: ignore[misc]
        """The default trainer on the rounds' rows; each step's logs carry its round's numbers."""

        def __init__(self, *args: Any, rounds: Rounds, rows_collator: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.rounds = rounds
            self.rows_collator = rows_collator
            rounds.model = self.model
            self.add_callback(RoundCheckpoints(rounds))

        def get_batch_samples(self, epoch_iterator, num_batches, device):
            batches = super().get_batch_samples(_Filled(self, epoch_iterator), num_batches, device)
            samples = self.rounds.shown_samples()
            if samples:
                self.setup.emit(SamplesGenerated(step=self.state.global_step, samples=samples))
                self.setup.emit(self.rounds.scored_samples(self.state.global_step + 1))
            return batches

        def take_means(self, mode: str) -> dict[str, float]:
            means = super().take_means(mode)
            if mode == "train" and means:
                means.update(self.rounds.stats())
            return means

        def train(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().train(*args, **kwargs)
            except _StoppedWhileSampling:
                self.setup.stopped = True
                self.setup.log("self_distill: stopped while sampling; a resume continues the round's sampling where it stopped")
                return None

    return SelfDistillTrainer
