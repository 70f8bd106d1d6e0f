"""The demo task generator: deterministic, disjoint splits, correct answers, GSM8K format."""

from __future__ import annotations

import random
import re

from distill_gui.core.verify import answers_match, extract_answer
from distill_gui.demo.task import (
    MAX_VALUE,
    PROMPT_TEMPLATE,
    iter_problems,
    make_problem,
    make_splits,
    read_jsonl,
    render_prompt,
    write_jsonl,
)

_EQUATION = re.compile(r"^(\d+) ([-+*/]) (\d+) = (\d+)\.$")


def _check_trace(problem) -> None:
    """Every step is a true whole-number equation chained from the previous result, ending at the answer."""
    steps = re.findall(r"\d+ [-+*/] \d+ = \d+\.", problem.trace)
    assert 1 <= len(steps) <= 3
    assert " ".join(steps) == problem.trace
    previous = None
    for step in steps:
        a, op, b, result = _EQUATION.match(step).groups()
        a, b, result = int(a), int(b), int(result)
        expected = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b and a % b == 0 else None}[op]
        assert expected == result, step
        assert 0 < result <= MAX_VALUE
        if previous is not None:
            assert a == previous
        previous = result
    assert previous == problem.answer


def test_problems_are_correct_and_gsm8k_shaped():
    rng = random.Random(123)
    for _ in range(2000):
        problem = make_problem(rng)
        _check_trace(problem)
        assert problem.question.endswith("have now?")
        assert problem.solution.endswith(f"\n#### {problem.answer}")
        assert extract_answer(problem.solution) == str(problem.answer)
        assert answers_match(problem.solution, problem.to_row()["answer"])
        assert problem.to_row(with_trace=False) == {"question": problem.question, "answer": f"#### {problem.answer}"}


def test_generator_is_deterministic_from_seed():
    a_train, a_test = make_splits(7, n_train=300, n_test=100)
    b_train, b_test = make_splits(7, n_train=300, n_test=100)
    assert a_train == b_train and a_test == b_test
    c_train, _ = make_splits(8, n_train=300, n_test=100)
    assert c_train != a_train


def test_splits_are_disjoint_and_deduplicated():
    train, test = make_splits(0, n_train=3000, n_test=500)
    train_q = [p.question for p in train]
    test_q = [p.question for p in test]
    assert len(set(train_q)) == len(train_q) == 3000
    assert len(set(test_q)) == len(test_q) == 500
    assert not set(train_q) & set(test_q)


def test_stream_excludes_given_questions():
    _, test = make_splits(0, n_train=0, n_test=200)
    excluded = {p.question for p in test}
    stream = iter_problems(0, exclude=excluded)
    drawn = [next(stream) for _ in range(500)]
    assert not excluded & {p.question for p in drawn}


def test_steps_cover_all_operations():
    train, _ = make_splits(0, n_train=1000, n_test=0)
    ops = {op for p in train for op in re.findall(r" ([-+*/]) ", p.trace)}
    assert ops == {"+", "-", "*", "/"}
    lengths = {p.trace.count("=") for p in train}
    assert lengths == {1, 2, 3}


def test_prompt_matches_the_data_loader(tiny_tokenizer):
    """The demo renders prompts exactly as core.data renders a question/answer row without a chat template."""
    from distill_gui.core.data import Example
    from distill_gui.core.data import render_prompt as data_render_prompt

    tiny_tokenizer_plain = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer)
    question = "Mia has 3 apples. How many apples does Mia have now?"
    example = Example(prompt=question, completion="#### 3", format="question_answer")
    assert render_prompt(question) == PROMPT_TEMPLATE.format(question=question)
    assert data_render_prompt(example, tiny_tokenizer_plain, "auto") == render_prompt(question)


def test_jsonl_roundtrip(tmp_path):
    train, _ = make_splits(0, n_train=5, n_test=0)
    path = write_jsonl([p.to_row() for p in train], tmp_path / "x.jsonl")
    assert read_jsonl(path) == [p.to_row() for p in train]
