"""Answer extraction, number normalisation and pluggable checkers."""

from __future__ import annotations

import pytest

from distill_gui.core import verify
from distill_gui.core.verify import answers_match, extract_answer, get_checker, normalize_number, register_checker


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Tom has 3 + 4 = 7 apples.\n#### 7", "7"),
        ("#### 1,200", "1,200"),
        ("so the total is\n####  $1,200.\n", "1,200"),
        ("the answer is #### -5", "-5"),
        ("first 3 then 4 #### 10 and later 99", "10"),
        ("We get \\boxed{42}.", "42"),
        ("We get \\boxed{\\frac{1}{2}} in the end", "\\frac{1}{2}"),
        ("nested \\boxed{\\sqrt{x^{2}}} end", "\\sqrt{x^{2}}"),
        ("3 apples and 4 pears make 7 fruits.", "7"),
        ("it costs $3.50 in total", "3.50"),
        ("half is 1/2", "1/2"),
        ("no numbers here", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("+5", "5"),
        ("-0", "0"),
        ("-0.00", "0"),
        ("3.50", "3.5"),
        ("3.0", "3"),
        ("1,000", "1000"),
        ("1,000.250", "1000.25"),
        ("007", "7"),
        (" 42. ", "42"),
        ("$12", "12"),
        ("1/2", "1/2"),
        ("- 3", "-3"),
        (".5", "0.5"),
        ("abc", "abc"),
    ],
)
def test_normalize_number(raw, expected):
    assert normalize_number(raw) == expected


@pytest.mark.parametrize(
    "predicted, reference, ok",
    [
        ("3 + 4 = 7\n#### 7", "7", True),
        ("3 + 4 = 7\n#### 7", "Janet has 3 + 4 = 7.\n#### 7", True),
        ("#### 1,000", "1000", True),
        ("#### 3.50", "3.5", True),
        ("#### +5", "5", True),
        ("#### -0", "0", True),
        ("#### 0.5", "1/2", True),
        ("#### 8", "7", False),
        ("the answer is 7", "7", True),
        ("nothing", "7", False),
        ("\\boxed{12}", "#### 12", True),
        ("#### 12", "\\boxed{12}", True),
        (None, "7", False),
    ],
)
def test_answers_match_numeric(predicted, reference, ok):
    assert answers_match(predicted, reference) is ok


def test_math_checker_uses_symbolic_equivalence():
    assert answers_match("so \\boxed{\\frac{1}{2}}", "0.5", checker="math")
    assert answers_match("so \\boxed{\\frac{2}{4}}", "\\frac{1}{2}", checker="math")
    assert not answers_match("so \\boxed{\\frac{1}{3}}", "\\frac{1}{2}", checker="math")
    assert answers_match("#### 7", "7", checker="math")


def test_register_and_get_checker():
    def exact(predicted: str, reference: str) -> bool:
        return predicted.strip() == reference.strip()

    register_checker("exact-test", exact)
    try:
        assert get_checker("exact-test") is exact
        assert answers_match(" yes ", "yes", checker="exact-test")
        assert not answers_match("#### 7", "7", checker="exact-test")
        assert "exact-test" in verify.checker_names()
    finally:
        verify._CHECKERS.pop("exact-test", None)


def test_unknown_checker_names_known_ones():
    with pytest.raises(KeyError, match="numeric"):
        get_checker("nope")
    with pytest.raises(ValueError):
        register_checker("", lambda a, b: True)


def test_callable_checker_passed_directly():
    assert answers_match("x", "y", checker=lambda p, r: True)


# ---- Answers that are expressions, several answers, Unicode numbers (issue 9) ----------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so the answer is\n#### \\frac{3}{4}", "\\frac{3}{4}"),
        ("#### $\\frac{3}{4}$.", "\\frac{3}{4}"),
        ("#### 3\\sqrt{2}", "3\\sqrt{2}"),
        ("#### 2^{10}\n", "2^{10}"),
        ("#### 5\nQuestion: what is 2 + 2?\nAnswer: 4\n#### 4", "5"),
        ("#### 7\n#### 9", "7"),
        ("#### \u22125", "-5"),
        ("it is \u22123 degrees", "-3"),
        ("\\boxed{\u22122}", "-2"),
        ("#### 1\u2009000", "1\u2009000"),
        ("#### 1\u202f234\u202f567", "1\u202f234\u202f567"),
        ("#### 1\\,000", "1\u2009000"),
        ("\\frac{3}{4}", "\\frac{3}{4}"),
        ("$3\\sqrt{2}$.", "3\\sqrt{2}"),
    ],
)
def test_extract_answer_takes_the_whole_expression_and_the_first_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("\u22125", "-5"),
        ("1\u2009000", "1000"),
        ("1\u202f000", "1000"),
        ("\\frac{3}{4}", "3/4"),
        ("-\\dfrac{6}{8}", "-6/8"),
    ],
)
def test_normalize_number_unicode_and_latex_fractions(raw, expected):
    assert normalize_number(raw) == expected


@pytest.mark.parametrize("checker", ["numeric", "math"])
@pytest.mark.parametrize(
    "predicted, reference, ok",
    [
        ("#### \\frac{3}{4}", "\\frac{3}{4}", True),
        ("#### \\frac{3}{4}", "3/4", True),
        ("#### \\frac{3}{4}", "0.75", True),
        ("#### \\frac{3}{4}", "\\frac{3}{5}", False),
        ("#### \\frac{3}{4}", "3", False),
        ("#### 3\\sqrt{2}", "3", False),
        ("#### 12\nQuestion: and 5 + 6?\n#### 11", "12", True),
        ("#### 12\nQuestion: and 5 + 6?\n#### 11", "11", False),
        ("#### \u22125", "-5", True),
        ("#### \u22125", "5", False),
        ("#### 1\u2009000", "1000", True),
        ("#### 1\u2009000", "#### 1,000", True),
        ("\\frac{3}{4}", "\\frac{3}{4}", True),
        ("\\frac{3}{4}", "\\frac{3}{5}", False),
    ],
)
def test_checkers_grade_expressions_first_answers_and_unicode(checker, predicted, reference, ok):
    assert answers_match(predicted, reference, checker=checker) is ok
