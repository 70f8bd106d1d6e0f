"""One round of self-distillation: sample answers, verify them, keep the distinct correct ones, on disk.

:func:`sample_round` asks the student for ``samples_per_question`` answers to each question of the round
(:func:`distill_gui.core.generation.sample_token_ids`: KV cache, finished rows leave the batch), checks
each against the question's reference answer with the verifier (:mod:`distill_gui.core.verify`; an
answer the verifier raises on counts as wrong and is counted), and keeps the correct answers, each
distinct answer (whitespace-normalised) once per question.

Everything is written into the run folder as it is made (:class:`RoundStore`): each batch of questions
as one JSON line of ``round-NN.samples.jsonl`` (a kill loses at most the batch being sampled), and the
round's result as ``round-NN.json`` once the round is complete. A resumed run reads a finished round
back instead of sampling it again and continues an unfinished one from its next batch; each batch is
drawn from its own seeded generator, so the answers are the ones an uninterrupted run would have drawn.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from distill_gui.core import atomic_files, jsonl


@dataclass
class Question:
    """A training row the student answers: its prompt tokens, the row itself and its reference answer."""

    index: int
    """Position among the run's training rows."""
    prompt_ids: list[int]
    example: Any
    reference: str


@dataclass
class RoundResult:
    """What one round's sampling gave: counts and the kept answers (``{"question", "answer"}``)."""

    round: int
    """0-based."""
    questions: int = 0
    generated: int = 0
    correct: int = 0
    solved: int = 0
    cut_off: int = 0
    verifier_errors: int = 0
    kept: list[dict] = field(default_factory=list)

    def stats(self) -> dict[str, float]:
        """The round's numbers as a run reports them (see ``SelfDistill.metrics``)."""
        generated = max(self.generated, 1)
        return {
            "round": float(self.round + 1),
            "generated": float(self.generated),
            "kept": float(len(self.kept)),
            "keep_rate": len(self.kept) / generated,
            "accuracy": self.correct / generated,
            "solved": self.solved / max(self.questions, 1),
        }

    def summary(self, rounds: int) -> str:
        errors = f"; the verifier raised on {self.verifier_errors} (counted wrong)" if self.verifier_errors else ""
        cut = f"; {self.cut_off} cut off at max_new_tokens" if self.cut_off else ""
        return (
            f"self_distill round {self.round + 1}/{rounds}: {self.correct} of {self.generated} answers correct "
            f"({self.correct / max(self.generated, 1):.0%}), {len(self.kept)} kept after removing duplicates; "
            f"{self.solved} of {self.questions} questions solved{cut}{errors}"
        )

    def to_dict(self) -> dict:
        return {
            "round": self.round,
            "questions": self.questions,
            "generated": self.generated,
            "correct": self.correct,
            "solved": self.solved,
            "cut_off": self.cut_off,
            "verifier_errors": self.verifier_errors,
            "kept": self.kept,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "RoundResult":
        return cls(**{k: data[k] for k in ("round", "questions", "generated", "correct", "solved", "cut_off", "verifier_errors", "kept")})


class RoundStore:
    """The rounds' files in ``<run>/self_distill/``: sampled batches as they come, each finished round whole."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _result_path(self, round_: int) -> Path:
        return self.folder / f"round-{round_ + 1:02d}.json"

    def samples_path(self, round_: int) -> Path:
        return self.folder / f"round-{round_ + 1:02d}.samples.jsonl"

    def finished(self, round_: int) -> RoundResult | None:
        """The round's result when its sampling was finished (a damaged file counts as unfinished)."""
        import json

        try:
            return RoundResult.from_dict(json.loads(self._result_path(round_).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def batches(self, round_: int) -> dict[int, dict]:
        """The round's sampled batches by number (a torn last line, from a kill, is left out)."""
        return {int(r["batch"]): r for r in jsonl.read_lines(self.samples_path(round_)).records if "batch" in r}

    def add_batch(self, round_: int, record: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        jsonl.append_line(self.samples_path(round_), record)

    def finish(self, result: RoundResult) -> None:
        atomic_files.write_json(self._result_path(result.round), result.to_dict())


def round_questions(questions: list[Question], round_: int, per_round: int, seed: int) -> list[Question]:
    """The questions of a round: all of them, or ``per_round`` drawn afresh for each round (seeded)."""
    if per_round <= 0 or per_round >= len(questions):
        return list(questions)
    chosen = random.Random(f"self_distill-{seed}-{round_}").sample(range(len(questions)), per_round)
    return [questions[i] for i in sorted(chosen)]


def dedup_key(text: str) -> str:
    """Two answers are the same when they differ only in whitespace."""
    return " ".join(text.split())


def verdict(checker: Callable[[str, str], bool], answer: str, reference: str) -> tuple[bool, bool]:
    """(correct, the verifier raised): an answer the verifier raises on counts as wrong."""
    try:
        return bool(checker(answer, reference)), False
    except Exception:  # noqa: BLE001 - a verifier error on one answer must not end the run
        return False, True


@dataclass
class Sampler:
    """How a round samples: the student, its tokenizer and the method's settings."""

    model: Any
    tokenizer: Any
    samples_per_question: int
    temperature: float
    max_new_tokens: int
    batch_rows: int
    """Answers sampled together (questions × samples_per_question)."""
    checker: Callable[[str, str], bool]
    keep_cut_off: bool
    seed: int

    def sample_batch(self, questions: list[Question], round_: int, number: int) -> dict:
        """Answers to ``questions``, verified: one record of ``round-NN.samples.jsonl``."""
        import torch

        from distill_gui.core.generation import _stop_ids, sample_token_ids

        tokenizer, k = self.tokenizer, self.samples_per_question
        device = next(self.model.parameters()).device
        generator = torch.Generator(device=device)
        generator.manual_seed((self.seed * 1_000_003 + round_ * 10_007 + number) % (2**63))
        stop = _stop_ids(tokenizer, self.model)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        prompts = [q.prompt_ids for q in questions for _ in range(k)]
        completions = sample_token_ids(
            self.model,
            prompts,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            stop_ids=stop,
            pad_id=pad,
            generator=generator,
            vocab_size=len(tokenizer),
        )
        rows = []
        for i, question in enumerate(questions):
            answers, correct, ended, errors = [], [], [], 0
            for ids in completions[i * k : (i + 1) * k]:
                finished = bool(ids) and ids[-1] in stop
                text = tokenizer.decode(ids[:-1] if finished else ids, skip_special_tokens=True)
                right, raised = verdict(self.checker, text, question.reference)
                answers.append(text)
                correct.append(right)
                ended.append(finished)
                errors += raised
            rows.append({"question": question.index, "answers": answers, "correct": correct, "ended": ended, "errors": errors})
        return {"batch": number, "questions": rows}


def sample_round(
    sampler: Sampler,
    questions: list[Question],
    round_: int,
    store: RoundStore,
    *,
    between_batches: Callable[[int, int, RoundResult], None] | None = None,
) -> RoundResult:
    """Sample, verify and keep the answers of one round, continuing from what ``store`` holds.

    ``between_batches(done_questions, total_questions, partial_result)`` is called after every batch (a
    place to report progress, wait while paused, or raise to stop); the result is written to ``store``
    once every batch is done.
    """
    per_batch = max(1, sampler.batch_rows // sampler.samples_per_question)
    batches = [questions[i : i + per_batch] for i in range(0, len(questions), per_batch)]
    saved = store.batches(round_)
    result = RoundResult(round=round_, questions=len(questions))
    seen: dict[int, set[str]] = {}
    for number, batch in enumerate(batches):
        record = saved.get(number)
        expected = [q.index for q in batch]
        if record is None or [row.get("question") for row in record.get("questions", [])] != expected:
            record = sampler.sample_batch(batch, round_, number)
            store.add_batch(round_, record)
        _tally(result, record, sampler.keep_cut_off, seen)
        if between_batches is not None:
            between_batches(min((number + 1) * per_batch, len(questions)), len(questions), result)
    store.finish(result)
    return result


def _tally(result: RoundResult, record: dict, keep_cut_off: bool, seen: dict[int, set[str]]) -> None:
    for row in record["questions"]:
        question = int(row["question"])
        result.verifier_errors += int(row.get("errors", 0))
        any_right = False
        for answer, right, ended in zip(row["answers"], row["correct"], row["ended"]):
            result.generated += 1
            result.cut_off += int(not ended)
            if not right:
                continue
            result.correct += 1
            any_right = True
            if not ended and not keep_cut_off:
                continue
            key = dedup_key(answer)
            if key and key not in seen.setdefault(question, set()):
                seen[question].add(key)
                result.kept.append({"question": question, "answer": answer})
        result.solved += int(any_right)
