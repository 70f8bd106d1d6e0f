"""The arithmetic a solution writes out, checked: ``3 + 4 = 7`` holds, ``120 + 27 = 107`` does not.

A final answer can come out right by luck after a wrong step (``24 - 21 = 5. 5 + 1 = 6. #### 6``);
training a student on such a solution teaches it the wrong step. :func:`wrong_steps` finds the written
equations — ``a op b [op c ...] = r`` with ``+ - * / × ÷``, GSM8K's ``<<48/2=24>>`` included — and returns
those whose left side does not give the right side. Left sides are evaluated exactly (rationals, ``*`` and
``/`` before ``+`` and ``-``); a right side written with decimals may round (``10 / 3 = 3.33`` holds).
Equations with anything else in them (percent signs, units, variables, powers) are not judged.

:func:`ungrounded_numbers` finds the numbers a solution computes with that the question never gave (in digits
or as English number words) and no earlier step produced: a solution that misread its question.
"""

from __future__ import annotations

import re
from fractions import Fraction

_NUM = r"\$?\d[\d,]*(?:\.\d+)?"
_OP = r"[-+*/×÷]"
_EQUATION = re.compile(rf"(?<![\w.^])({_NUM}(?:\s*{_OP}\s*{_NUM})+)\s*=\s*({_NUM})(?![\w%^]|\.\d)")
_TOKEN = re.compile(rf"{_NUM}|{_OP}")


def _number(text: str) -> Fraction:
    return Fraction(text.lstrip("$").replace(",", ""))


def evaluate(expression: str) -> Fraction | None:
    """The exact value of ``a op b op c ...`` with the usual precedence; None when it divides by zero."""
    tokens = _TOKEN.findall(expression)
    terms: list[Fraction] = []
    sign, value = Fraction(1), _number(tokens[0])
    for op, operand in zip(tokens[1::2], tokens[2::2]):
        number = _number(operand)
        if op in "*×":
            value *= number
        elif op in "/÷":
            if number == 0:
                return None
            value /= number
        else:
            terms.append(sign * value)
            sign, value = (Fraction(1) if op == "+" else Fraction(-1)), number
    terms.append(sign * value)
    return sum(terms, Fraction(0))


def _holds(left: Fraction, written: str) -> bool:
    right = _number(written)
    decimals = len(written.split(".", 1)[1]) if "." in written else 0
    if left == right:
        return True
    # A rounded right side: 10 / 3 = 3.33 holds, 10 / 3 = 3 does not (nothing was rounded there).
    return decimals > 0 and abs(left - right) <= Fraction(1, 2 * 10**decimals)


def wrong_steps(text: str) -> list[str]:
    """The equations written in ``text`` that do not hold, as written (``"120 + 27 = 107"``)."""
    wrong = []
    for match in _EQUATION.finditer(text):
        left = evaluate(match.group(1))
        if left is None or not _holds(left, match.group(2)):
            wrong.append(match.group(0))
    return wrong


# ---- Where a step's numbers come from

_WORD_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "twice": 2, "double": 2, "doubles": 2, "triple": 3, "triples": 3, "half": 2,
    "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "dozen": 12, "hundred": 100,
}  # fmt: skip
_GIVEN_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def given_numbers(question: str) -> set[Fraction]:
    """The numbers a question gives: written in digits, or as English words (``four times``, ``twice``, ``half``)."""
    values = {_number(m) for m in _GIVEN_NUMBER.findall(question)}
    values |= {Fraction(_WORD_NUMBERS[w]) for w in re.findall(r"[a-z]+", question.lower()) if w in _WORD_NUMBERS}
    return values


def ungrounded_numbers(question: str, solution: str) -> list[str]:
    """Numbers the written steps of ``solution`` compute with that are neither given by ``question`` nor the result
    of an earlier step: a solution that misread the question (``sells 51`` computed as ``29 - 5``)."""
    known = given_numbers(question)
    ungrounded = []
    for match in _EQUATION.finditer(solution):
        ungrounded += [t for t in _TOKEN.findall(match.group(1))[0::2] if _number(t) not in known]
        known.add(_number(match.group(2)))
    return ungrounded


def unsound_steps(text: str, question: str | None = None) -> list[str]:
    """What is wrong with the arithmetic of the answer ``text``: the equations before its final answer (``####``)
    that do not hold, then, when the ``question`` is given, the numbers it computes with that the question never
    gave (:func:`ungrounded_numbers`). Empty for a sound answer."""
    unsound = wrong_steps(text.split("####", 1)[0])
    return unsound + ungrounded_numbers(question, text) if question is not None else unsound
