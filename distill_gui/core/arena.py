"""The blind arena: two models answer the same prompt, a person votes, votes become ratings.

Votes live in a local SQLite file (stdlib ``sqlite3``; default ``arena.sqlite3`` in the user data
folder, ``DISTILL_GUI_ARENA_DB`` overrides). Ratings are Bradley–Terry strengths fitted to every vote
(minorization–maximization, Hunter 2004), shown on the Elo scale (``1000 + 400·log10(strength)``)
with each model's number of votes; a tie counts half a win for each side, and "both bad" counts as a
tie. Every model also plays half a win and half a loss against a fixed virtual opponent of strength 1,
so a model that never lost still gets a finite rating and one vote moves a rating only so far.
"""

from __future__ import annotations

import math
import os
import random
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from distill_gui.core.errors import UserError

OUTCOMES = ("a", "b", "tie", "both_bad")
OUTCOME_LABELS = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both are bad"}
PRIOR_GAMES = 1.0
"""Virtual games (half won, half lost) of every model against a fixed opponent of strength 1."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    prompt TEXT NOT NULL,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    answer_a TEXT NOT NULL,
    answer_b TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('a', 'b', 'tie', 'both_bad'))
)
"""


class ArenaError(UserError, ValueError):
    """A vote or a votes file that cannot be used; the message names the file or the field."""


def default_arena_path() -> Path:
    """``arena.sqlite3`` in the user data folder (``DISTILL_GUI_ARENA_DB`` overrides)."""
    env = os.environ.get("DISTILL_GUI_ARENA_DB")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("distill-gui", appauthor=False)) / "arena.sqlite3"


@dataclass(frozen=True)
class Vote:
    """One judged pair."""

    id: int
    time: float
    prompt: str
    model_a: str
    model_b: str
    answer_a: str
    answer_b: str
    outcome: str


@dataclass(frozen=True)
class Rating:
    """A model's place in the arena."""

    model: str
    rating: float
    """Bradley–Terry strength on the Elo scale (1000 is the virtual opponent's strength)."""
    votes: int
    wins: int
    losses: int
    ties: int


class ArenaStore:
    """The votes file; each call opens its own connection, so any thread may use it."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_arena_path()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(self.path, timeout=10)
            connection.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ArenaError(f"{self.path}: not a usable votes file ({exc}); move it aside and vote again") from None
        return connection

    def add_vote(self, model_a: str, model_b: str, outcome: str, prompt: str = "", answer_a: str = "", answer_b: str = "") -> Vote:
        """Store a vote; ``outcome`` is one of ``a``, ``b``, ``tie``, ``both_bad``."""
        if outcome not in OUTCOMES:
            raise ArenaError(f"outcome {outcome!r}: choose one of {', '.join(OUTCOMES)}")
        if not model_a or not model_b or model_a == model_b:
            raise ArenaError("a vote needs two different models")
        now = time.time()
        connection = self._connect()
        try:
            with connection:
                cursor = connection.execute(
                    "INSERT INTO votes (time, prompt, model_a, model_b, answer_a, answer_b, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (now, prompt, model_a, model_b, answer_a, answer_b, outcome),
                )
        finally:
            connection.close()
        return Vote(int(cursor.lastrowid or 0), now, prompt, model_a, model_b, answer_a, answer_b, outcome)

    def votes(self) -> list[Vote]:
        """Every vote, oldest first."""
        if not self.path.exists():
            return []
        connection = self._connect()
        try:
            rows = connection.execute(
                "SELECT id, time, prompt, model_a, model_b, answer_a, answer_b, outcome FROM votes ORDER BY id"
            ).fetchall()
        finally:
            connection.close()
        return [Vote(*row) for row in rows]

    def ratings(self) -> list[Rating]:
        return ratings(self.votes())


def _scores(outcome: str) -> tuple[float, float]:
    """(A's share of the win, B's share)."""
    return {"a": (1.0, 0.0), "b": (0.0, 1.0)}.get(outcome, (0.5, 0.5))


def bradley_terry(votes: Iterable[Vote], iterations: int = 500, tolerance: float = 1e-10) -> dict[str, float]:
    """Bradley–Terry strengths (the virtual opponent has strength 1), by minorization–maximization."""
    wins: dict[str, float] = defaultdict(float)
    games: dict[tuple[str, str], float] = defaultdict(float)
    models: set[str] = set()
    for vote in votes:
        a, b = _scores(vote.outcome)
        wins[vote.model_a] += a
        wins[vote.model_b] += b
        key = tuple(sorted((vote.model_a, vote.model_b)))
        games[key] += 1.0  # type: ignore[index]
        models.update((vote.model_a, vote.model_b))
    strength = {m: 1.0 for m in models}
    opponents: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for (x, y), n in games.items():
        opponents[x].append((y, n))
        opponents[y].append((x, n))
    for _ in range(iterations):
        change = 0.0
        updated = {}
        for m in models:
            won = wins[m] + PRIOR_GAMES / 2
            denominator = PRIOR_GAMES / (strength[m] + 1.0)
            denominator += sum(n / (strength[m] + strength[o]) for o, n in opponents[m])
            updated[m] = won / denominator
            change = max(change, abs(math.log(updated[m]) - math.log(strength[m])))
        strength = updated
        if change < tolerance:
            break
    return strength


def ratings(votes: Sequence[Vote]) -> list[Rating]:
    """Every voted model's rating and record, best first."""
    strength = bradley_terry(votes)
    record: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for vote in votes:
        a, b = _scores(vote.outcome)
        for model, share in ((vote.model_a, a), (vote.model_b, b)):
            record[model][0 if share == 1.0 else 1 if share == 0.0 else 2] += 1
    out = [Rating(m, 1000.0 + 400.0 * math.log10(s), sum(record[m]), *record[m]) for m, s in strength.items()]
    return sorted(out, key=lambda r: (-r.rating, r.model))


def pick_pair(models: Sequence[str], rng: random.Random | None = None) -> tuple[str, str]:
    """Two different models in random order (A and B are assigned at random, so position tells nothing)."""
    distinct = list(dict.fromkeys(models))
    if len(distinct) < 2:
        raise ArenaError("the arena needs at least two different models")
    rng = rng or random.Random()
    a, b = rng.sample(distinct, 2)
    return a, b
