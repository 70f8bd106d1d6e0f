"""A served model in a comparison (``distill-gui compare URL#MODEL ...``): scored by its answers alone.

An OpenAI-compatible server gives text, not the model's logits, so a served model gets accuracy (and pass@k
and majority vote with ``samples`` > 1), tokens per second (the server's own count of new tokens, over the
wall time with ``concurrency`` requests in flight) and its predictions for the per-question view; its
perplexity and top-1 agreement stay empty. It is never cached: what a URL serves can change.
"""

from __future__ import annotations

import time
from typing import Any, Callable

SERVED_CONCURRENCY = 4
"""Requests in flight at once while a served model answers the questions."""


def score_served(spec: str, examples: list, settings: Any, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """The fields of :class:`~distill_gui.core.compare.ModelScore` a served model's answers fill."""
    from distill_gui.core.compare import vote_samples
    from distill_gui.core.evaluation import reference_answer
    from distill_gui.core.served_teacher_config import served_api, served_model_for_spec, served_prompt
    from distill_gui.core.verify import answers_match, extract_answer

    served = served_model_for_spec(
        spec, api=served_api(settings.chat_template), api_key_env=settings.api_key_env, concurrency=SERVED_CONCURRENCY
    )
    eval_settings = settings.eval_settings()
    scored = [(e, reference_answer(e)) for e in examples]
    with_ref = [(e, r) for e, r in scored if r is not None]
    targets: list[tuple[Any, str | None]] = list(with_ref) or [(e, None) for e, _ in scored[: eval_settings.speed_rows]]
    targets = [(e, r) for e, r in targets if e.prompt or e.messages]
    prompts = [served_prompt(e, settings.chat_template) for e, _ in targets]

    def phase(name: str, total: int) -> Callable[[int], None] | None:
        return (lambda done: progress(name, done, total)) if progress is not None else None

    before = served.completion_tokens
    start = time.perf_counter()
    answers = served.complete_many(prompts, max_tokens=settings.max_new_tokens, temperature=0.0, progress=phase("answers", len(prompts)))
    seconds = time.perf_counter() - start
    new_tokens = served.completion_tokens - before
    texts = [row[0].text if row else "" for row in answers]
    predictions, correct = [], 0
    for (example, ref), text in zip(targets, texts):
        ok = ref is not None and answers_match(text, ref)
        correct += ok
        predictions.append({"source": example.source, "prediction": extract_answer(text), "reference": ref, "correct": ok, "output": text})
    answered = len(with_ref)
    result: dict[str, Any] = {
        "rows": len(examples),
        "accuracy": correct / answered if answered else None,
        "correct": correct,
        "answered": answered,
        "perplexity": None,
        "tokens_per_s": new_tokens / max(seconds, 1e-9),
        "mean_answer_tokens": new_tokens / len(texts) if texts and new_tokens else None,
        "predictions": predictions,
        "top1": [],
        "samples": settings.samples,
    }
    if settings.samples > 1 and answered:
        sampled_targets = [(e, r) for e, r in targets if r is not None]
        sampled = served.complete_many(
            [served_prompt(e, settings.chat_template) for e, _ in sampled_targets],
            samples=settings.samples,
            seed=settings.seed,
            max_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            progress=phase("samples", len(sampled_targets) * settings.samples),
        )
        result.update(vote_samples(sampled_targets, [[c.text for c in row] for row in sampled], predictions))
    return result
