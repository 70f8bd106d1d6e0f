"""Synthetic training data (the Phi-4 pattern): new questions from seed examples, labelled by the teacher.

1. **Questions.** A question maker turns the seed rows into new questions: ``fewshot`` shows the teacher a
   few seed questions and lets it write a new one; a registered generator makes them without a model
   (:func:`register_generator`; built in: ``numbers``, which re-samples the numbers of a seed question).
   Questions equal to a seed or to one made before (whitespace and case aside) are dropped; a maker that
   gives nothing but duplicates is refused before any labelling starts.
2. **Labels.** The teacher answers every question ``samples`` times. A question with a reference answer (a
   generator may give one) keeps an answer the verifier accepts (:mod:`distill_gui.core.verify`); one without
   is labelled by **majority vote** of the samples' final answers: the agreement (the majority's share of
   the samples) is kept as the row's ``confidence`` and rows below ``threshold`` are dropped.
3. **Rows.** ``<out>`` holds question/answer rows (``question``, ``answer``: the teacher's text,
   ``confidence``, ``label``: verifier or majority, ``seed``: the seed row it came from), ready for
   ``data.train`` or a ``data.mix`` entry.

The job is resumable: the questions are written once to ``<out>.questions.jsonl`` and every labelled batch
is appended to ``<out>.labels.jsonl``; running the same command again continues with the next batch. The
settings are kept in ``<out>.synthetic.json``; continuing with other settings is refused.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from distill_gui.core import atomic_files, jsonl
from distill_gui.core.errors import UserError

LABELS = ("auto", "verifier", "majority")


class SyntheticDataError(UserError, ValueError):
    """The synthetic data cannot be made as asked; the message says what to change."""


@dataclass
class SyntheticConfig:
    """How to make a synthetic dataset."""

    count: int = 100
    """New questions to make."""
    generator: str = "fewshot"
    """``fewshot`` (the teacher writes questions like a few seed ones) or a registered generator (``numbers``)."""
    shots: int = 3
    """Seed questions shown per new question (fewshot)."""
    question_temperature: float = 1.0
    """Sampling temperature of the teacher's new questions (fewshot)."""
    question_max_tokens: int = 96
    """Longest new question in tokens (fewshot)."""
    samples: int = 4
    """Teacher answers per question (K): the votes of the majority, or the tries to find a verified answer."""
    temperature: float = 0.8
    """Sampling temperature of the answers (above 0 when samples > 1, or every vote is the same)."""
    max_new_tokens: int = 256
    """Longest answer in tokens."""
    threshold: float = 0.5
    """Least agreement (the majority's share of the samples) for a majority-labelled row to be kept."""
    labels: str = "auto"
    """auto: the verifier when a question has a reference, else majority vote; verifier or majority: only that way."""
    checker: str = "numeric"
    """Answer checker for questions with a reference (see verify.register_checker)."""
    check_steps: bool = False
    """Before the vote, leave out answers whose written arithmetic is wrong or computes with a number the question
    never gave (:mod:`distill_gui.core.arithmetic_steps`): the majority of a teacher's answers to a question it
    misreads agrees on a wrong answer. The share that agrees still counts all samples."""
    batch_size: int = 16
    """Questions per generation batch (each labelled batch is saved before the next)."""
    max_tries: int = 0
    """Questions a generator may make to find ``count`` new ones; 0: ten times ``count``."""
    data_format: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)
    chat_template: str = "auto"
    system_prompt: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        from distill_gui.core.verify import get_checker

        for name in ("count", "shots", "samples", "max_new_tokens", "question_max_tokens", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise SyntheticDataError(f"{name}: must be at least 1 (got {getattr(self, name)})")
        if not 0.0 <= self.threshold <= 1.0:
            raise SyntheticDataError(f"threshold: the least agreement is a share between 0 and 1 (got {self.threshold})")
        if self.samples > 1 and self.temperature <= 0:
            raise SyntheticDataError(
                f"temperature: {self.samples} samples at temperature 0 are all the same answer; set a temperature above 0 (e.g. 0.8)"
            )
        if self.labels not in LABELS:
            raise SyntheticDataError(f"labels: {self.labels!r}; choose one of {', '.join(LABELS)}")
        if self.generator != "fewshot" and self.generator not in GENERATORS:
            raise SyntheticDataError(
                f"generator: {self.generator!r} is not a question maker; choose fewshot or one of "
                f"{', '.join(sorted(GENERATORS))} (or register one with synthetic_data.register_generator)"
            )
        try:
            get_checker(self.checker)
        except KeyError as exc:
            raise SyntheticDataError(f"checker: {exc.args[0]}") from None


@dataclass(frozen=True)
class NewQuestion:
    """A new question, the seed row it was made from, and its reference answer when the maker knows it."""

    text: str
    seed: int
    reference: str | None = None


Generator = Callable[[Sequence[str], random.Random, int], list[NewQuestion]]
"""``fn(seed_questions, rng, count) -> new questions`` (duplicates are dropped by the caller)."""

GENERATORS: dict[str, Generator] = {}


def register_generator(name: str, fn: Generator) -> None:
    """Make ``fn(seed_questions, rng, count)`` available as ``generator=name`` (replaces one of that name)."""
    if not name or name == "fewshot" or not callable(fn):
        raise ValueError("register_generator needs a name other than 'fewshot' and a callable fn(seeds, rng, count)")
    GENERATORS[name] = fn


_INTEGER = re.compile(r"(?<![\d.])\d+(?!\d|\.\d)")  # a whole number; a full stop after it ends a sentence


def resample_numbers(seeds: Sequence[str], rng: random.Random, count: int) -> list[NewQuestion]:
    """Seed questions with their whole numbers re-drawn near the old ones (from half to one and a half times,
    with as many digits).

    The new numbers keep the seed's order and equalities (a question that sells fewer than it has still does; a
    number given twice stays one number; two different numbers stay different) and are never 0 where the
    seed's was not. Numbers drawn independently over their whole digit range made most questions nonsensical
    or unlike any the teacher learned from (``has 29, sells 51``, ``buys 0 bags``), and the teacher's answers to
    those agreed on wrong answers. The answer changes with the numbers, so these questions carry no reference
    (majority vote labels them). Seeds without whole numbers give only themselves back (duplicates).
    """
    out = []
    for _ in range(count):
        index = rng.randrange(len(seeds))
        originals = sorted({int(m) for m in _INTEGER.findall(seeds[index])})
        new_value = dict(zip(originals, _draw_near(originals, rng)))
        text = _INTEGER.sub(lambda m: str(new_value[int(m.group(0))]), seeds[index])
        out.append(NewQuestion(text=text, seed=index))
    return out


def _draw_near(values: list[int], rng: random.Random, tries: int = 20) -> list[int]:
    """New numbers for the distinct, ascending ``values``: each near its old one, ascending and distinct again
    when it can be done in ``tries`` draws (else the last draw, ascending)."""
    drawn = values
    for _ in range(tries):
        drawn = sorted(_near(value, rng) for value in values)
        if len(set(drawn)) == len(drawn):
            break
    return drawn


def _near(value: int, rng: random.Random) -> int:
    """A whole number from half to one and a half times ``value``, with its number of digits; 0 stays 0."""
    if value == 0:
        return 0
    digits = len(str(value))
    low, high = (1 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1
    return rng.randint(max(low, value // 2), max(low, min(high, value + value // 2)))


register_generator("numbers", resample_numbers)


def question_key(text: str) -> str:
    """Two questions are the same when they differ only in whitespace and case."""
    return " ".join(text.lower().split())


# ---- Majority vote


@dataclass(frozen=True)
class Vote:
    """The majority's final answer, its share of all samples, and the first sample that gave it."""

    answer: str | None
    confidence: float
    winner: int | None
    votes: dict[str, int]


def majority_vote(texts: Sequence[str]) -> Vote:
    """The final answer most samples agree on (numbers normalised: ``1,000`` = ``1000.0``).

    ``confidence`` is the majority's count over all samples, those without a final answer included; a tie
    goes to the answer given first. No answer at all gives ``Vote(None, 0.0, None, {})``.
    """
    from distill_gui.core.verify import extract_answer, normalize_number

    keys = [normalize_number(a) if (a := extract_answer(t)) is not None else None for t in texts]
    votes = Counter(k for k in keys if k)
    if not votes:
        return Vote(None, 0.0, None, {})
    first = {k: keys.index(k) for k in votes}
    answer = max(votes, key=lambda k: (votes[k], -first[k]))
    return Vote(answer, votes[answer] / len(texts), first[answer], dict(votes))


def label_question(question: NewQuestion, texts: Sequence[str], config: SyntheticConfig) -> dict:
    """The record of one labelled question: the kept answer (or None), how it was labelled, its confidence."""
    from distill_gui.core.verify import answers_match

    record = {
        "question": question.text,
        "seed": question.seed,
        "reference": question.reference,
        "samples": list(texts),
        "answer": None,
        "confidence": 0.0,
        "label": None,
    }
    if question.reference is not None and config.labels != "majority":
        right = []
        for i, text in enumerate(texts):
            try:
                ok = answers_match(text, question.reference, config.checker)
            except Exception:  # noqa: BLE001 - an answer the verifier raises on counts as wrong
                ok = False
            if ok:
                right.append(i)
        record.update(label="verifier", confidence=len(right) / max(len(texts), 1))
        if right:
            record["answer"] = texts[right[0]]
        return record
    voters = list(texts)
    if config.check_steps:
        from distill_gui.core.arithmetic_steps import unsound_steps

        # An answer with a wrong or ungrounded step does not vote (it still counts in the share that agrees).
        voters = ["" if unsound_steps(t, question.text) else t for t in texts]
        record["sound"] = sum(bool(t) for t in voters)
    vote = majority_vote(voters)
    record.update(label="majority", confidence=vote.confidence, majority=vote.answer)
    if vote.winner is not None and vote.confidence >= config.threshold and config.labels != "verifier":
        record["answer"] = texts[vote.winner]
    return record


# ---- Making questions


def _fewshot_prompt(seeds: Sequence[str], rng: random.Random, shots: int) -> str:
    shown = rng.sample(list(seeds), min(shots, len(seeds)))
    lines = ["Here are some example questions."] + [f"Question: {q.strip()}" for q in shown]
    return "\n\n".join(lines + ["Write one new question of the same kind, different from the examples.\n\nQuestion:"])


def _first_question(text: str) -> str:
    """The new question in a teacher's text: up to a blank line, the next 'Question:' or an 'Answer:'."""
    text = re.sub(r"^\s*(?:new\s+)?question\s*:", "", text.strip(), flags=re.IGNORECASE)
    return re.split(r"\n\s*\n|\bQuestion:|\bAnswer:", text.strip(), maxsplit=1)[0].strip()


def make_questions(model, tokenizer, seeds: Sequence[str], config: SyntheticConfig) -> tuple[list[NewQuestion], int]:
    """``config.count`` new distinct questions (fewer when the tries run out) and how many tries it took."""
    from distill_gui.core.data import Example, render_prompt
    from distill_gui.core.generation import GenerationSettings
    from distill_gui.core.teacher_data import write_completions

    rng = random.Random(f"synthetic-{config.seed}")
    seen = {question_key(s) for s in seeds}
    made: list[NewQuestion] = []
    tries, budget = 0, config.max_tries or 10 * config.count
    settings = GenerationSettings(
        max_new_tokens=config.question_max_tokens, temperature=config.question_temperature, batch_size=config.batch_size
    )
    while len(made) < config.count and tries < budget:
        want = min(max(config.count - len(made), config.batch_size), budget - tries)
        if config.generator == "fewshot":
            prompts, sources = [], []
            for _ in range(want):
                prompts.append(_fewshot_prompt(seeds, rng, config.shots))
                sources.append(rng.randrange(len(seeds)))
            rendered = [
                render_prompt(Example(prompt=p, completion=""), tokenizer, config.chat_template, config.system_prompt) for p in prompts
            ]
            texts = write_completions(model, tokenizer, rendered, settings, seed=config.seed * 7919 + tries)
            batch = [NewQuestion(_first_question(t[0]), s) for t, s in zip(texts, sources)]
        else:
            batch = GENERATORS[config.generator](seeds, rng, want)
        tries += want
        for question in batch:
            key = question_key(question.text)
            if key and key not in seen and len(made) < config.count:
                seen.add(key)
                made.append(question)
        if not made and tries >= min(budget, 2 * config.batch_size):
            raise SyntheticDataError(
                f"generator {config.generator!r} made {tries} questions and every one repeats a seed question or an earlier "
                "one; give seeds it can vary (for numbers: questions with whole numbers in them), or another generator"
            )
    return made, tries


# ---- The job


@dataclass
class SyntheticReport:
    """What a synthetic-data job made."""

    questions: int = 0
    tries: int = 0
    labelled: int = 0
    kept: int = 0
    by_verifier: int = 0
    by_majority: int = 0
    below_threshold: int = 0
    stopped: bool = False
    out: str = ""

    def summary(self) -> str:
        return (
            f"{self.questions} new questions ({self.tries} made, duplicates dropped); {self.labelled} labelled, "
            f"{self.kept} kept ({self.by_verifier} by the verifier, {self.by_majority} by majority vote); "
            f"{self.below_threshold} dropped below the agreement threshold or unverified"
        )


def read_seeds(path: str | Path, config: SyntheticConfig) -> list[str]:
    """The seed questions (the prompt of each usable row)."""
    from distill_gui.core.data import load_examples

    examples, report = load_examples(str(path), config.data_format, config.columns)
    seeds = [e.prompt.strip() for e in examples if e.prompt.strip()]
    if not seeds:
        raise SyntheticDataError(
            f"{path}: no seed question to start from ({report.summary(max_rows=3)}); give question/answer or prompt/completion rows"
        )
    return seeds


def _questions_path(out: Path) -> Path:
    return out.with_name(out.name + ".questions.jsonl")


def _labels_path(out: Path) -> Path:
    return out.with_name(out.name + ".labels.jsonl")


SETTINGS_KEYS = (
    "count",
    "generator",
    "shots",
    "question_temperature",
    "question_max_tokens",
    "samples",
    "temperature",
    "max_new_tokens",
    "threshold",
    "labels",
    "checker",
    "max_tries",
    "data_format",
    "columns",
    "chat_template",
    "system_prompt",
    "seed",
    "check_steps",
)
"""The settings that change what a job makes: a job is continued only with the same ones."""


def _check_settings(out: Path, config: SyntheticConfig) -> None:
    """Record the settings beside a new job; refuse to continue a job made with other settings."""
    import json

    path = out.with_name(out.name + ".synthetic.json")
    settings = {k: getattr(config, k) for k in SETTINGS_KEYS}
    started = _questions_path(out).is_file() or _labels_path(out).is_file()
    if started and path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        changed = [k for k in SETTINGS_KEYS if k in old and old[k] != settings[k]]
        if changed:
            raise SyntheticDataError(
                f"{out}: this job was started with other settings ({', '.join(f'{k}: {old[k]!r}' for k in changed)}); "
                f"use another --out, or delete {_questions_path(out).name} and {_labels_path(out).name} to start over"
            )
        return
    atomic_files.write_json(path, settings)


def make_synthetic_data(
    model,
    tokenizer,
    seeds_path: str | Path,
    out: str | Path,
    config: SyntheticConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> SyntheticReport:
    """Make (or continue making) the synthetic dataset ``out`` from the seed rows in ``seeds_path``.

    ``model`` is a local model with its ``tokenizer``, or a served teacher
    (:class:`~distill_gui.core.served_teacher.ServedTeacher`, ``tokenizer`` None or one whose chat template
    renders the prompts): it writes the new questions (fewshot) and the answers the labels are voted from.
    """
    from distill_gui.core.data import Example, render_prompt
    from distill_gui.core.generation import GenerationSettings
    from distill_gui.core.teacher_data import write_completions

    config = config or SyntheticConfig()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    seeds = read_seeds(seeds_path, config)
    _check_settings(out, config)
    questions_file = _questions_path(out)
    saved = jsonl.read_lines(questions_file).records
    if saved:
        questions = [NewQuestion(r["text"], int(r["seed"]), r.get("reference")) for r in saved]
        tries = len(questions)
    else:
        questions, tries = make_questions(model, tokenizer, seeds, config)
        if config.labels == "verifier" and not any(q.reference for q in questions):
            raise SyntheticDataError(
                f"labels: verifier needs reference answers, and generator {config.generator!r} gives its questions none; "
                "use labels: auto or majority (majority vote of the teacher's samples)"
            )
        atomic_files.write_jsonl(questions_file, [asdict(q) for q in questions])
    report = SyntheticReport(questions=len(questions), tries=tries, out=str(out))
    labels_file = _labels_path(out)
    done = {int(r["index"]): r for r in jsonl.read_lines(labels_file).records if "index" in r}
    settings = GenerationSettings(
        max_new_tokens=config.max_new_tokens, temperature=config.temperature, num_samples=config.samples, batch_size=config.batch_size
    )
    pending = [i for i in range(len(questions)) if i not in done]
    if progress is not None:
        progress(len(done), len(questions))
    for start in range(0, len(pending), config.batch_size):
        if stop is not None and stop.is_set():
            report.stopped = True
            break
        batch = pending[start : start + config.batch_size]
        prompts = [
            render_prompt(
                Example(prompt=questions[i].text, completion="", format="question_answer"),
                tokenizer,
                config.chat_template,
                config.system_prompt,
            )
            for i in batch
        ]
        answers = write_completions(model, tokenizer, prompts, settings, seed=config.seed * 1_000_003 + batch[0])
        for i, texts in zip(batch, answers):
            record = {"index": i, **label_question(questions[i], texts, config)}
            jsonl.append_line(labels_file, record)
            done[i] = record
        if progress is not None:
            progress(len(done), len(questions))
    rows = []
    for i in sorted(done):
        record = done[i]
        report.labelled += 1
        if record["answer"] is None:
            report.below_threshold += 1
            continue
        report.kept += 1
        report.by_verifier += record["label"] == "verifier"
        report.by_majority += record["label"] == "majority"
        rows.append(
            {
                "question": record["question"],
                "answer": record["answer"],
                "confidence": record["confidence"],
                "label": record["label"],
                "seed": record["seed"],
            }
        )
    atomic_files.write_jsonl(out, rows)
    return report
