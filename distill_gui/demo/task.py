"""The demo task: GSM8K-style word problems made from templates, with step-by-step traces.

Each problem is a short story about a person and a pile of objects, changed by one to three steps
(add, subtract, multiply, divide, all on whole numbers with whole results), and a question about the
pile at the end. The solution is written the GSM8K way: one equation per step, then ``#### N``::

    Question: Mia has 14 shells. She finds 9 more. Then she splits them equally into 3 bags and keeps one bag.
              How many shells does Mia have now?
    Solution: 14 + 9 = 23. ...

Everything is deterministic from a seed. :func:`make_splits` returns disjoint train and test lists
(deduplicated by question text); :func:`iter_problems` streams fresh problems that avoid a given set
of questions, which is how the teacher trains on an endless supply without seeing the test split.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from distill_gui.core import atomic_files

PROMPT_TEMPLATE = "Question: {question}\nAnswer: "
"""How the demo renders a question as a prompt (no chat template), followed by the solution.

It is exactly what ``core.data.render_prompt`` makes of a question/answer row when the tokenizer has no
chat template, so the demo's files work with every part of the app (training, ``distill-gui eval``)."""

NAMES = (
    ("Mia", "She"), ("Liam", "He"), ("Emma", "She"), ("Noah", "He"), ("Olivia", "She"), ("Lucas", "He"),
    ("Ava", "She"), ("Ethan", "He"), ("Sofia", "She"), ("Omar", "He"), ("Chloe", "She"), ("Ravi", "He"),
    ("Grace", "She"), ("Leo", "He"), ("Nora", "She"), ("Jack", "He"), ("Zoe", "She"), ("Sam", "He"),
    ("Lily", "She"), ("Ben", "He"), ("Hana", "She"), ("Carlos", "He"), ("Ivy", "She"), ("Tom", "He"),
)
OBJECTS = (
    "apples", "marbles", "stickers", "books", "shells", "coins", "pencils", "cookies", "stamps", "cards",
    "eggs", "flowers", "toy cars", "beads", "candies", "oranges", "balloons", "rocks", "buttons", "cupcakes",
)
MAX_VALUE = 500
MAX_PRODUCT = 300


@dataclass(frozen=True)
class Problem:
    """One word problem: the question, its step-by-step trace, and the whole-number answer."""

    question: str
    trace: str
    answer: int

    @property
    def solution(self) -> str:
        """The GSM8K-style answer text: the trace, then ``#### N`` on its own line."""
        return f"{self.trace}\n#### {self.answer}"

    @property
    def final_answer(self) -> str:
        """The answer without reasoning, as a user's data usually has it."""
        return f"#### {self.answer}"

    def prompt(self) -> str:
        return render_prompt(self.question)

    def to_row(self, with_trace: bool = True) -> dict:
        """A GSM8K-style JSONL row: ``question`` and ``answer`` (with the trace, or only ``#### N``)."""
        return {"question": self.question, "answer": self.solution if with_trace else self.final_answer}


def render_prompt(question: str) -> str:
    """The demo's prompt for a question (the same text the data loader makes for question/answer rows)."""
    return PROMPT_TEMPLATE.format(question=question.strip())


def _op_add(rng: random.Random, x: int, pron: str, other: str) -> tuple[str, str, int] | None:
    b = rng.randint(2, 40)
    if x + b > MAX_VALUE:
        return None
    text = rng.choice((f"{pron} buys {b} more.", f"{pron} finds {b} more.", f"{other} gives {'her' if pron == 'She' else 'him'} {b} more."))
    return text, f"{x} + {b} = {x + b}.", x + b


def _op_sub(rng: random.Random, x: int, pron: str, other: str) -> tuple[str, str, int] | None:
    if x < 3:
        return None
    b = rng.randint(1, min(x - 1, 40))
    text = rng.choice((f"{pron} gives {b} to {other}.", f"{pron} sells {b} of them.", f"{pron} loses {b}."))
    return text, f"{x} - {b} = {x - b}.", x - b


def _op_mul(rng: random.Random, x: int, pron: str, other: str) -> tuple[str, str, int] | None:
    k = rng.randint(2, 5)
    if x * k > MAX_PRODUCT:
        return None
    word = {2: "twice", 3: "three times", 4: "four times", 5: "five times"}[k]
    text = rng.choice((f"Then {pron.lower()} ends up with {word} as many.", f"{other} gives {'her' if pron == 'She' else 'him'} enough to have {word} as many."))
    return text, f"{x} * {k} = {x * k}.", x * k


def _op_div(rng: random.Random, x: int, pron: str, other: str) -> tuple[str, str, int] | None:
    choices = [k for k in range(2, 7) if x % k == 0 and x // k >= 1]
    if not choices:
        return None
    k = rng.choice(choices)
    text = rng.choice((
        f"{pron} splits them equally into {k} bags and keeps one bag.",
        f"{pron} shares them equally with {other}, {k} people in all, and keeps one share." if k > 2 else f"{pron} shares them equally with {other} and keeps half.",
    ))
    return text, f"{x} / {k} = {x // k}.", x // k


_OPS = (_op_add, _op_sub, _op_mul, _op_div)


def make_problem(rng: random.Random) -> Problem:
    """One random problem with 1 to 3 steps (whole numbers, results between 1 and MAX_VALUE)."""
    name, pron = rng.choice(NAMES)
    other = rng.choice([n for n, _ in NAMES if n != name])
    obj = rng.choice(OBJECTS)
    steps = rng.randint(1, 3)
    if rng.random() < 0.3:
        bags, per = rng.randint(2, 9), rng.randint(2, 12)
        x = bags * per
        sentences = [f"{name} buys {bags} bags with {per} {obj} in each bag."]
        trace = [f"{bags} * {per} = {x}."]
        steps -= 1
    else:
        x = rng.randint(5, 60)
        sentences = [f"{name} has {x} {obj}."]
        trace = []
    while steps > 0 or not trace:
        op = rng.choice(_OPS)(rng, x, pron, other)
        if op is None:
            continue
        text, equation, x = op
        sentences.append(text)
        trace.append(equation)
        steps -= 1
    sentences.append(f"How many {obj} does {name} have now?")
    return Problem(question=" ".join(sentences), trace=" ".join(trace), answer=x)


def iter_problems(seed: int, exclude: Iterable[str] = ()) -> Iterator[Problem]:
    """An endless, seed-determined stream of distinct problems whose questions are not in ``exclude``."""
    rng = random.Random(seed)
    seen = set(exclude)
    while True:
        problem = make_problem(rng)
        if problem.question in seen:
            continue
        seen.add(problem.question)
        yield problem


def make_splits(seed: int = 0, n_train: int = 5000, n_test: int = 500) -> tuple[list[Problem], list[Problem]]:
    """Disjoint (train, test) lists: the test split is drawn first, the train split never repeats a question."""
    stream = iter_problems(seed)
    test = [next(stream) for _ in range(n_test)]
    train = [next(stream) for _ in range(n_train)]
    return train, test


def write_jsonl(rows: Iterable[dict], path: str | Path) -> Path:
    """Write rows as JSONL (atomically)."""
    atomic_files.write_jsonl(path, rows)
    return Path(path)


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file (blank lines skipped)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_demo_data(folder: str | Path, seed: int = 0, n_train: int = 8000, n_test: int = 500) -> tuple[Path, Path]:
    """Write the demo's ``train.jsonl`` (questions and final answers only, no reasoning, as a user's data
    usually is) and ``test.jsonl`` (GSM8K style: the worked solution, then ``#### N``) into ``folder``."""
    train, test = make_splits(seed, n_train=n_train, n_test=n_test)
    folder = Path(folder)
    return (
        write_jsonl((p.to_row(with_trace=False) for p in train), folder / "train.jsonl"),
        write_jsonl((p.to_row(with_trace=True) for p in test), folder / "test.jsonl"),
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Write the demo task's train and test files (GSM8K-style JSONL).")
    parser.add_argument("--out", required=True, help="folder for train.jsonl and test.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--test", type=int, default=500)
    args = parser.parse_args(argv)
    for path in write_demo_data(args.out, args.seed, args.train, args.test):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
