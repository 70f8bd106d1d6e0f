"""The ``steps`` checker: a right final answer reached through a wrong written step does not count."""

from __future__ import annotations

from fractions import Fraction

import pytest

from distill_gui.core.arithmetic_steps import evaluate, wrong_steps
from distill_gui.core.verify import answers_match, checker_names


@pytest.mark.parametrize(
    "text, wrong",
    [
        ("60 * 2 = 120. 120 + 27 = 107. 107 + 33 = 140.\n#### 140", ["120 + 27 = 107"]),
        ("4 * 6 = 24. 24 - 21 = 5. 5 / 3 = 1.\n#### 1", ["24 - 21 = 5", "5 / 3 = 1"]),
        ("He has <<48/2=24>>24 clips, then <<48+24=72>>72.\n#### 72", []),  # GSM8K's calculator annotations
        ("<<48/2=23>>23", ["48/2=23"]),
        ("2 + 3 * 4 = 14 and 20 - 2 * 3 = 14", []),  # * and / before + and -
        ("10 / 3 = 3.33 and 2 / 3 = 0.667", []),  # a rounded right side
        ("10 / 3 = 3", ["10 / 3 = 3"]),  # nothing rounded there
        ("$1,000 + 500 = $1,500; 1,200 × 3 = 3,600; 12 ÷ 4 = 3", []),
        ("3 + 4 = 7.5", ["3 + 4 = 7.5"]),
        ("1/0 = 1", ["1/0 = 1"]),
        # Not judged: percentages, powers, variables, a bare number.
        ("50% of 20 = 10. 2^3 + 1 = 10. x = 3 + 4. 7 = 7. 25% + 5 = 3", []),
    ],
)
def test_written_steps_are_checked(text, wrong):
    assert wrong_steps(text) == wrong


def test_evaluate_is_exact():
    assert evaluate("1 / 3 + 1 / 6") == Fraction(1, 2)
    assert evaluate("7 - 2 - 1") == 4 and evaluate("8 / 2 / 2") == 2
    assert evaluate("5 / 0") is None


def test_the_steps_checker_refuses_a_lucky_answer():
    assert "steps" in checker_names()
    lucky, sound = "24 - 21 = 5. 5 + 1 = 4.\n#### 4", "24 - 21 = 3. 3 + 1 = 4.\n#### 4"
    assert answers_match(lucky, "4", "numeric") and not answers_match(lucky, "4", "steps")
    assert answers_match(sound, "4", "steps") and not answers_match(sound, "5", "steps")
    # What follows the final answer (a model running on into another question) is not judged.
    assert answers_match(sound + "\nQuestion: 2 + 2 = 5?", "4", "steps")
