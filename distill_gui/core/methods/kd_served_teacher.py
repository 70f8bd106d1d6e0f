"""KD from a served teacher (``teacher.url``): the server's ``top_logprobs`` fill the teacher cache.

The teacher is never loaded into the training process. Before the run folder is made,
:func:`check_served_teacher` asks the server for its model and scores a few texts: the server must
return log-probs of given text (``/v1/completions`` with ``echo``) and cut it into the student's own
tokens, else logit KD is refused with the reason (the served teacher can still write text for SFT).
In the run folder, :func:`build_served_cache` scores every row, ``concurrency`` requests in flight, and
turns the answers into the same cache a local teacher gives
(:func:`distill_gui.core.teacher_cache.build_teacher_cache_from_served`).
"""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Sequence

from distill_gui.core.vocab import PROBE_TEXTS, IncompatibleTokenizers

CHECK_PROMPTS = 2
"""Probe prompts (the data's own prompts, rendered as in training) scored by the check besides a fixed text."""
SCORE_CONCURRENCY = 4
"""Rows scored at once while the cache is filled."""


def check_served_teacher(setup: Any) -> None:
    """Refuse, before the run folder exists, a server that cannot teach the student token by token.

    Sets ``setup.served_teacher`` (when the run has not made it yet) with its model resolved.
    """
    from distill_gui.core.served_teacher_config import describe, served_teacher_for
    from distill_gui.core.teacher_cache import token_pieces

    config = setup.config
    if setup.served_offline:  # a resumed run whose server does not answer: its cache was checked when it was made
        setup.shared_vocab_size = None
        return
    served = setup.served_teacher or served_teacher_for(config.teacher, concurrency=SCORE_CONCURRENCY)
    served.resolve_model()  # the server answers and has the model
    tokenizer = setup.tokenizer
    pieces = token_pieces(tokenizer)
    texts = [PROBE_TEXTS[0], *setup.probe_prompts[:CHECK_PROMPTS]]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        scored = served.score(tokenizer.decode(ids), 1)
        got = [pieces.get(token, -1) for token, _, _ in scored]
        if got == ids:
            continue
        first = next((j for j, (a, b) in enumerate(zip(got, ids)) if a != b), min(len(got), len(ids)))
        server_piece = scored[first][0] if first < len(scored) else "(nothing)"
        student_piece = tokenizer.decode([ids[first]]) if first < len(ids) else "(nothing)"
        raise IncompatibleTokenizers(
            f"teacher.url: the served model {describe(config.teacher)} cuts text into other tokens than the student's "
            f"tokenizer ({text[:40]!r}: token {first} is {server_piece!r} on the server, {student_piece!r} for the student; "
            f"{len(scored)} tokens against {len(ids)}), so its log-probs cannot teach the student token by token: soft-label KD "
            "is refused. The served teacher can still write text: distill-gui generate-data --teacher-url, then method.kind: sft "
            "on its traces"
        )
    setup.served_teacher = served
    setup.shared_vocab_size = None  # the cached ids are the student's own; the student's head is the vocabulary
    setup.log(
        f"teacher: served, {describe(config.teacher)}; it cuts text into the student's tokens, so its top-{config.method.kd.top_k} "
        "log-probs fill the teacher cache (the teacher is not loaded here)"
    )


class _Prefetcher:
    """``score`` in row order with the next rows already asked for (``ahead`` requests in flight).

    :func:`build_teacher_cache_from_served` asks for one row at a time; this keeps the server busy meanwhile.
    """

    def __init__(self, served: Any, texts: Sequence[str], top_k: int, ahead: int):
        self.served, self.texts, self.top_k = served, list(texts), top_k
        self.pool = ThreadPoolExecutor(max_workers=max(ahead, 1))
        self.pending: collections.deque[tuple[str, Future]] = collections.deque()
        self.next = 0
        self.ahead = max(ahead, 1)
        self._fill()

    def _fill(self) -> None:
        while len(self.pending) < self.ahead * 2 and self.next < len(self.texts):
            text = self.texts[self.next]
            self.pending.append((text, self.pool.submit(self.served.score, text, self.top_k)))
            self.next += 1

    def score(self, text: str, top_k: int) -> tuple:
        if not self.pending or self.pending[0][0] != text or top_k != self.top_k:  # asked out of order: ask directly
            return self.served.score(text, top_k)
        _, future = self.pending.popleft()
        self._fill()
        return future.result()

    def close(self) -> None:
        for _, future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True)


def served_fingerprint(setup: Any, rows: Sequence[dict]) -> str:
    """The cache's fingerprint: the server and its model stand for the teacher."""
    from distill_gui.core import teacher_cache as tc

    served, kd = setup.served_teacher, setup.config.method.kd
    return tc.fingerprint(f"served:{served.root}#{served.model}", rows, kd.top_k, kd.temperature, len(setup.tokenizer))


def build_served_cache(setup: Any, rows: Sequence[dict], fingerprint: str, progress: Callable[[int, int], None] | None = None):
    """The teacher cache of ``rows`` from the served teacher's top log-probs."""
    from distill_gui.core import teacher_cache as tc

    served, kd, tokenizer = setup.served_teacher, setup.config.method.kd, setup.tokenizer
    setup.log(f"teacher cache: the served teacher scores {len(rows):,} rows (top-{kd.top_k}, {served.concurrency} at once)")
    texts = [tokenizer.decode([int(i) for i in row["input_ids"]]) for row in rows]
    scorer = _Prefetcher(served, texts, kd.top_k, served.concurrency)
    try:
        return tc.build_teacher_cache_from_served(
            scorer, tokenizer, rows, top_k=kd.top_k, temperature=kd.temperature, fingerprint=fingerprint, progress=progress
        )
    finally:
        scorer.close()
