"""Where the student has not learned the teacher yet, token by token.

Given a prompt and an answer (the teacher's, or a reference), both models read prompt + answer once; at
each answer token we compare their next-token distributions: the KL divergence KL(teacher ‖ student)
over the vocabulary they share, the teacher's probability of the token the student would have chosen,
and the top tokens of each. :func:`hardest_tokens` ranks the tokens the student disagrees on most over
several answers (a run's probe answers)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

TOP_K = 5


@dataclass(frozen=True)
class TokenScore:
    """One answer token and how far the student is from the teacher there."""

    text: str
    kl: float
    """KL(teacher ‖ student) of the next-token distributions before this token, in nats."""
    student_choice: str
    """The token the student would have put here (its most likely one)."""
    teacher_p_student_choice: float
    """The teacher's probability of the student's choice (low: the student would say something the teacher would not)."""
    teacher_top: tuple[tuple[str, float], ...]
    student_top: tuple[tuple[str, float], ...]


class DisagreementError(ValueError):
    """The two models cannot be compared token by token (their tokenizers differ)."""


def _same_vocabulary(teacher_tok: Any, student_tok: Any) -> None:
    if teacher_tok.get_vocab() != student_tok.get_vocab():
        raise DisagreementError(
            "the teacher and the student tokenize differently, so their answers cannot be compared "
            "token by token (the tokens would not line up)"
        )


def score_answer(
    teacher: Any, student: Any, tokenizer: Any, prompt: str, answer: str, student_tokenizer: Any = None, top_k: int = TOP_K
) -> list[TokenScore]:
    """The answer's tokens, each with the student's disagreement with the teacher (one forward pass each)."""
    import torch

    if student_tokenizer is not None and student_tokenizer is not tokenizer:
        _same_vocabulary(tokenizer, student_tokenizer)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if not answer_ids:
        return []
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        t_logits = teacher(input_ids=ids.to(teacher.device)).logits[0].float().cpu()
        s_logits = student(input_ids=ids.to(student.device)).logits[0].float().cpu()
    shared = min(t_logits.shape[-1], s_logits.shape[-1], len(tokenizer))
    start = len(prompt_ids) - 1  # the logits at position i predict token i + 1
    positions = range(start, start + len(answer_ids)) if start >= 0 else range(0, len(answer_ids) - 1)
    t_logp = torch.log_softmax(t_logits[list(positions), :shared], dim=-1)
    s_logp = torch.log_softmax(s_logits[list(positions), :shared], dim=-1)
    kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1).clamp(min=0.0)
    s_choice = s_logp.argmax(-1)
    scores = []
    offset = 0 if start >= 0 else 1
    for row, token_id in enumerate(answer_ids[offset:]):
        t_top = torch.topk(t_logp[row], top_k)
        s_top = torch.topk(s_logp[row], top_k)
        choice = int(s_choice[row])
        scores.append(
            TokenScore(
                text=tokenizer.decode([token_id]),
                kl=float(kl[row]),
                student_choice=tokenizer.decode([choice]),
                teacher_p_student_choice=float(t_logp[row, choice].exp()),
                teacher_top=tuple((tokenizer.decode([int(i)]), float(p.exp())) for p, i in zip(t_top.values, t_top.indices)),
                student_top=tuple((tokenizer.decode([int(i)]), float(p.exp())) for p, i in zip(s_top.values, s_top.indices)),
            )
        )
    return scores


def hardest_tokens(answers: list[list[TokenScore]], limit: int = 20) -> list[tuple[str, float, int]]:
    """(token, mean KL, times seen) over several scored answers, the highest mean KL first."""
    totals: dict[str, list[float]] = defaultdict(list)
    for scores in answers:
        for score in scores:
            totals[score.text].append(score.kl)
    ranked = sorted(((text, sum(v) / len(v), len(v)) for text, v in totals.items()), key=lambda t: t[1], reverse=True)
    return ranked[:limit]
