"""RLVR's rewards: the verifier's verdict on each sampled answer, and an optional format reward.

Both are TRL reward functions: ``fn(prompts, completions, **columns) -> list[float]``, one value per
completion, called by ``GRPOTrainer`` once per generation batch with the dataset's ``reference`` column
repeated for every completion of a prompt.

:class:`VerifierReward` gives 1.0 when :func:`distill_gui.core.verify.answers_match` accepts the
completion's final answer, else 0.0. A checker that raises on an answer does not stop training: that
answer counts as wrong and the error is reported (a warning naming the step, how many answers and the
first error). It also logs the numbers the app plots besides TRL's own: the share of correct answers
(``accuracy``), the share of groups with at least one correct answer (``solved_groups``) and of answers
the verifier raised on (``verifier_errors``); and warns once when no answer earned a reward in the
first rounds (all rewards equal: GRPO learns nothing), suggesting trace SFT first. Every few steps it hands
a few of the answers with their verdicts to ``on_scored`` (:class:`ScoredAnswers`, which emits them as a
:class:`~distill_gui.core.events.SamplesScored` event for the Generations page).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from distill_gui.core.verify import answers_match, extract_answer, get_checker

ZERO_REWARD_ROUNDS = 2
"""Generation rounds without a single correct answer before the "nothing to learn from" warning."""

_FORMATTED = re.compile(r"####\s*\S|\\boxed\s*\{")


def completion_text(completion: Any) -> str:
    """The text of a completion: TRL gives a string, or a list of messages for chat prompts."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def _groups(prompts: list[Any]) -> list[list[int]]:
    """Indices of the completions of each prompt (a group), in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(str(prompt), []).append(i)
    return list(groups.values())


class VerifierReward:
    """1.0 for a completion whose final answer the verifier accepts against the row's reference, else 0.0."""

    __name__ = "verifier"  # the name TRL logs this reward under (rewards/verifier/mean)

    def __init__(self, checker: str, warn: Callable[[str], None]):
        self.checker = get_checker(checker)
        self.checker_name = checker
        self.warn = warn
        self.rounds = 0
        self.correct_seen = 0
        self.answers_seen = 0
        self.unanswered_seen = 0
        self.warned_zero = False
        self.in_training: Callable[[], bool] = lambda: True
        """Whether the trainer is training (evaluation rounds do not count towards the all-zero warning)."""
        self.on_scored: Callable[..., None] | None = None
        """Called as ``on_scored(step, prompts, texts, references, rewards, errors)`` after each training round."""

    def verdict(self, completion: str, reference: str | None) -> tuple[float, BaseException | None]:
        """The reward of one answer and the error the checker raised (then the reward is 0)."""
        try:
            return (1.0 if answers_match(completion, reference, self.checker) else 0.0), None
        except Exception as exc:  # noqa: BLE001 - a checker's failure on one answer is that answer's problem
            return 0.0, exc

    def __call__(
        self, prompts: list, completions: list, reference: list | None = None, log_metric: Any = None, trainer_state: Any = None, **_: Any
    ) -> list[float]:
        texts = [completion_text(c) for c in completions]
        references = list(reference) if reference is not None else [None] * len(texts)
        rewards: list[float] = []
        errors: list[tuple[int, BaseException]] = []
        for i, (text, ref) in enumerate(zip(texts, references)):
            value, error = self.verdict(text, ref)
            rewards.append(value)
            if error is not None:
                errors.append((i, error))
        step = int(getattr(trainer_state, "global_step", 0)) + 1
        if errors:
            i, first = errors[0]
            self.warn(
                f"step {step}: the {self.checker_name} verifier raised on {len(errors)} of {len(texts)} answers; "
                f"they count as wrong. First: {type(first).__name__}: {str(first).splitlines()[0] if str(first) else ''} "
                f"(answer {texts[i][-80:]!r}, reference {references[i]!r})"
            )
        if log_metric is not None and texts:
            groups = _groups(prompts)
            log_metric("accuracy", sum(rewards) / len(rewards))
            log_metric("solved_groups", sum(any(rewards[i] > 0 for i in g) for g in groups) / len(groups))
            log_metric("verifier_errors", len(errors) / len(texts))
        if self.in_training():
            self._watch_for_zero(rewards, texts)
            if self.on_scored is not None:
                self.on_scored(step, [completion_text(p) for p in prompts], texts, references, rewards, dict(errors))
        return rewards

    def _watch_for_zero(self, rewards: list[float], texts: list[str]) -> None:
        self.rounds += 1
        self.correct_seen += sum(r > 0 for r in rewards)
        self.answers_seen += len(rewards)
        self.unanswered_seen += sum(extract_answer(t) is None for t in texts)
        if self.warned_zero or self.rounds < ZERO_REWARD_ROUNDS or self.correct_seen:
            return
        self.warned_zero = True
        self.warn(
            f"no answer earned a reward in the first {self.rounds} rounds: 0 of {self.answers_seen} sampled answers "
            f"were correct ({self.unanswered_seen} had no final answer at all). With all rewards equal GRPO has "
            "nothing to learn from. Train the student on reasoning traces first (method.kind: sft on the teacher's "
            "traces) and give that run folder as student.path, or raise max_completion_length if answers are cut off"
        )


class FormatReward:
    """1.0 for a completion that states its final answer explicitly (``#### answer`` or ``\\boxed{answer}``)."""

    __name__ = "format"

    def __call__(self, prompts: list, completions: list, **_: Any) -> list[float]:
        return [1.0 if _FORMATTED.search(completion_text(c)) else 0.0 for c in completions]


class ScoredAnswers:
    """Emits a few sampled answers with the verifier's verdict and their total reward, at most every ``every`` steps.

    ``weights`` are the reward weights (verifier, and format when it is used): an answer's reward is
    ``correct_weight × verdict + format_weight × format``, the number GRPO's advantage is computed from.
    """

    def __init__(self, emit: Callable[[Any], None], correct_weight: float, format_weight: float = 0.0, every: int | None = None):
        from distill_gui.core.events import SCORED_SAMPLE_STEPS

        self.emit = emit
        self.correct_weight = correct_weight
        self.format_weight = format_weight
        self.every = every or SCORED_SAMPLE_STEPS
        self.last_step = 0

    def __call__(
        self, step: int, prompts: list[str], texts: list[str], references: list, rewards: list[float], errors: dict[int, BaseException]
    ) -> None:
        from distill_gui.core.events import SCORED_SAMPLE_ITEMS, SamplesScored, ScoredSample, scored_step_due

        if step <= self.last_step or not scored_step_due(step, self.every):
            return
        self.last_step = step
        items = []
        for i in range(min(len(texts), SCORED_SAMPLE_ITEMS)):
            verdict = rewards[i] > 0
            total = self.correct_weight * rewards[i]
            if self.format_weight > 0:
                total += self.format_weight * (1.0 if _FORMATTED.search(texts[i]) else 0.0)
            error = errors.get(i)
            items.append(
                ScoredSample(
                    prompt=prompts[i],
                    completion=texts[i],
                    correct=verdict,
                    reward=float(total),
                    answer=extract_answer(texts[i]),
                    reference=None if references[i] is None else str(references[i]),
                    error=None if error is None else f"{type(error).__name__}: {error}",
                )
            )
        self.emit(SamplesScored(step=step, items=tuple(items), method="rlvr"))
