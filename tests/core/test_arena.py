"""The arena: votes persisted in SQLite, Bradley–Terry ratings in the order the votes say, contestants answer."""

from __future__ import annotations

import random
import sqlite3

import pytest

from distill_gui.core.arena import ArenaError, ArenaStore, Vote, bradley_terry, pick_pair, ratings
from distill_gui.core.arena_players import ArenaPlayers, typed_example


def test_votes_are_persisted_and_read_back_by_a_new_store(tmp_path):
    path = tmp_path / "arena.sqlite3"
    store = ArenaStore(path)
    first = store.add_vote("teacher", "student", "a", prompt="2+2?", answer_a="4", answer_b="5")
    store.add_vote("teacher", "student", "both_bad")
    again = ArenaStore(path).votes()
    assert [v.outcome for v in again] == ["a", "both_bad"]
    assert again[0] == first and again[0].prompt == "2+2?" and again[0].answer_b == "5"
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM votes").fetchone() == (2,)
    with pytest.raises(ArenaError, match="outcome"):
        store.add_vote("teacher", "student", "maybe")
    with pytest.raises(ArenaError, match="two different models"):
        store.add_vote("teacher", "teacher", "tie")


def test_ratings_follow_a_scripted_set_of_votes(tmp_path):
    store = ArenaStore(tmp_path / "arena.sqlite3")
    script = [("big", "mid", "a")] * 6 + [("mid", "big", "a")] * 2 + [("mid", "small", "a")] * 5 + [("small", "mid", "tie")] * 2
    script += [("big", "small", "a")] * 4 + [("small", "big", "both_bad")]
    for a, b, outcome in script:
        store.add_vote(a, b, outcome)
    table = store.ratings()
    assert [r.model for r in table] == ["big", "mid", "small"]
    assert table[0].rating > table[1].rating > table[2].rating
    assert {r.model: r.votes for r in table} == {"big": 13, "mid": 15, "small": 12}
    big = table[0]
    assert (big.wins, big.losses, big.ties) == (10, 2, 1)
    # Equal records give equal ratings; an unbeaten model still has a finite rating.
    even = [Vote(i, 0, "", "x", "y", "", "", o) for i, o in enumerate(["a", "b", "tie"])]
    strength = bradley_terry(even)
    assert strength["x"] == pytest.approx(strength["y"])
    unbeaten = ratings([Vote(0, 0, "", "x", "y", "", "", "a")])
    assert 1000 < unbeaten[0].rating < 1400 and unbeaten[1].rating < 1000


def test_pick_pair_gives_two_different_models_in_both_orders():
    rng = random.Random(0)
    pairs = {pick_pair(["a", "b", "a"], rng) for _ in range(30)}
    assert pairs == {("a", "b"), ("b", "a")}
    with pytest.raises(ArenaError):
        pick_pair(["a"])


def test_players_answer_with_their_own_tokenizers(tiny_pair):
    from distill_gui.core.data import load_examples
    from distill_gui.core.verify import answers_match
    from distill_gui.resources import demo_dir

    teacher = str(demo_dir() / "teacher")
    players = ArenaPlayers(device="cpu")
    drawn = load_examples(str(demo_dir() / "test.jsonl"))[0][0]
    assert answers_match(players.answer(teacher, drawn, max_new_tokens=40), drawn.reference)
    typed = typed_example(drawn.prompt, "question_answer")
    assert players.answer(teacher, typed, max_new_tokens=40) == players.answer(teacher, drawn, max_new_tokens=40)
    assert isinstance(players.answer(str(tiny_pair[1]), typed, max_new_tokens=5), str)
