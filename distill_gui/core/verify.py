"""Answer verification: pull the final answer out of a model's text and check it against a reference.

The final answer is, in order of preference, the answer after the first ``####`` (GSM8K; a model that
runs on into a new question is graded on its first answer), the content of the last ``\\boxed{...}``
(MATH-style), or else the last number in the text. After ``####`` a LaTeX expression is kept whole
(``\\frac{3}{4}``, ``3\\sqrt{2}``), a plain line gives its first number. Numbers are normalised
(thousands separators, also thin spaces, a leading ``+``, the Unicode minus, ``-0``, trailing zeros, a
trailing full stop, ``\\frac{a}{b}`` with whole a and b) so that ``"1,000.50"`` and ``"1000.5"`` match.

Checkers are pluggable: a checker is ``fn(predicted_text, reference) -> bool``;
:func:`register_checker` adds one under a name and :func:`answers_match` takes ``checker=name``.
Built in: ``numeric`` (the default: extracted answers, normalised; two numbers compared exactly as
rationals, anything else only as equal text, never a number against an expression), ``math`` (LaTeX / symbolic equivalence through ``math-verify``)
and ``steps`` (``numeric``, and every arithmetic step written in the answer holds: no right answer by luck).
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction
from typing import Callable

Checker = Callable[[str, str], bool]

_HASHES = re.compile(r"####\s*(.*)")
_THIN = "\u2009\u202f\u00a0"  # thin space, narrow and plain no-break space: thousands separators
_NUMBER = re.compile(rf"[-+]?(?:\d{{1,3}}(?:,\d{{3}})+|\d{{1,3}}(?:[{_THIN}]\d{{3}})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|[-+]?\.\d+")
_CURRENCY = re.compile(r"[$€£¥%]|\\\$|\\%")
_LATEX = re.compile(r"[\\^_{}]")
_LATEX_FRACTION = re.compile(r"(-?)\\[dt]?frac\{\s*(\d+)\s*\}\{\s*(\d+)\s*\}")
_IS_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:/\d+)?")


def _clean(text: str) -> str:
    """Unicode minus to ``-``; LaTeX thin space ``\\,`` to a thin space and ``{,}`` to a comma."""
    return text.replace("\u2212", "-").replace("\\,", "\u2009").replace("{,}", ",")


def _boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` / ``\\fbox{...}`` in ``text`` (braces balanced)."""
    found = []
    for match in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    found.append(text[start:i])
                    break
    return found


def _last_number(text: str) -> str | None:
    numbers = _NUMBER.findall(text)
    return numbers[-1].strip() if numbers else None


def extract_answer(text: str | None) -> str | None:
    """The final answer in ``text``: after the first ``####``, else in the last ``\\boxed{}``, else the last number.

    After ``####`` the rest of that line is taken, without currency signs, ``$`` delimiters and a final
    full stop: a LaTeX expression (``\\frac{3}{4}``) is returned whole; otherwise its first number (so
    ``"#### $1,200."`` gives ``"1,200"``), or the line when it holds none. Only the first ``####``
    counts: later ones belong to text the model made up after answering. Returns None when nothing
    is found.
    """
    if not text:
        return None
    text = _clean(text)
    hashes = _HASHES.search(text)
    if hashes:
        line = _CURRENCY.sub("", hashes.group(1)).strip().rstrip(".").strip()
        if line:
            if _LATEX.search(line):
                return line
            number = _NUMBER.search(line)
            return number.group(0).strip() if number else line
    boxed = _boxed_contents(text)
    if boxed:
        inner = boxed[-1].strip()
        cleaned = _CURRENCY.sub("", inner).strip()
        if _NUMBER.fullmatch(cleaned):
            return cleaned
        return inner
    bare = _CURRENCY.sub("", text).strip().rstrip(".")
    if _LATEX.search(bare) and not re.search(r"\s", bare):  # a bare LaTeX answer, e.g. a majority vote's
        return bare
    return _last_number(_CURRENCY.sub("", text))


def normalize_number(s: str) -> str:
    """A canonical text for a number: ``"+5"``→``"5"``, ``"-0"``→``"0"``, ``"3.50"``→``"3.5"``, ``"1,000"``→``"1000"``.

    Fractions ``a/b`` (and ``\\frac{a}{b}``) are kept as fractions, with spaces removed and a sign
    normalised; text that is not a number comes back stripped, with thousands separators and a trailing
    full stop removed.
    """
    t = _clean(_CURRENCY.sub("", str(s))).strip().rstrip(".").strip()
    t = t.replace(",", "").replace(" ", "").translate({ord(c): None for c in _THIN})
    t = _LATEX_FRACTION.sub(lambda m: f"{m.group(1)}{m.group(2)}/{m.group(3)}", t) if _LATEX_FRACTION.fullmatch(t) else t
    if t.startswith("+"):
        t = t[1:]
    if re.fullmatch(r"-?\d+/\d+", t):
        num, den = t.split("/")
        num = str(int(num)) if num.lstrip("-").isdigit() else num
        return "0/" + str(int(den)) if int(num) == 0 else f"{num}/{int(den)}"
    if re.fullmatch(r"-?(?:\d+\.?\d*|\.\d+)", t):
        negative = t.startswith("-")
        body = t.lstrip("-")
        if "." in body:
            whole, frac = body.split(".", 1)
            frac = frac.rstrip("0")
            whole = whole.lstrip("0") or "0"
            body = f"{whole}.{frac}" if frac else whole
        else:
            body = body.lstrip("0") or "0"
        if body == "0":
            return "0"
        return f"-{body}" if negative else body
    return t


def _as_fraction(normalized: str) -> Fraction | None:
    try:
        return Fraction(normalized)
    except (ValueError, ZeroDivisionError):
        return None


def _reference_answer(reference: str) -> str | None:
    """The answer inside a reference: a whole GSM8K solution, a boxed answer, or a bare value."""
    ref = str(reference).strip()
    if "####" in ref or "\\boxed" in ref or "\\fbox" in ref:
        return extract_answer(ref)
    return ref or None


def numeric_checker(predicted: str, reference: str) -> bool:
    """Extract the predicted answer and compare it with the reference's answer.

    Two numbers are compared as exact rationals (``0.75`` = ``3/4`` = ``\\frac{3}{4}``); anything else
    only as equal normalised text, so an expression never matches a number taken out of it.
    """
    pred = extract_answer(predicted)
    ref = _reference_answer(reference)
    if pred is None or ref is None:
        return False
    a, b = normalize_number(pred), normalize_number(ref)
    a_number, b_number = bool(_IS_NUMBER.fullmatch(a)), bool(_IS_NUMBER.fullmatch(b))
    if a_number and b_number:
        fa, fb = _as_fraction(a), _as_fraction(b)
        return fa is not None and fb is not None and fa == fb
    return not a_number and not b_number and a == b


def math_checker(predicted: str, reference: str) -> bool:
    """Symbolic equivalence with ``math-verify`` (LaTeX, fractions, sets, intervals), falling back to numeric."""
    if numeric_checker(predicted, reference):
        return True
    from math_verify import parse, verify

    # math-verify's timeouts use SIGALRM, which only works in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    ref = _reference_answer(reference) or ""
    pred = extract_answer(predicted) if "####" in predicted else predicted
    if pred is None:
        return False
    wrap = lambda s: s if ("$" in s or "\\boxed" in s or "\\(" in s) else f"${s}$"  # noqa: E731
    try:
        gold = parse(wrap(ref), parsing_timeout=timeout)
        target = parse(predicted if "\\boxed" in predicted else wrap(pred), parsing_timeout=timeout)
        if not gold or not target:
            return False
        return bool(verify(gold, target, timeout_seconds=timeout))
    except Exception:  # math-verify raises on malformed LaTeX; an unparsable answer is just wrong
        return False


def steps_checker(predicted: str, reference: str) -> bool:
    """``numeric``, and every arithmetic step the answer writes out holds (:mod:`distill_gui.core.arithmetic_steps`):
    a right final answer reached through a wrong step (``24 - 21 = 5``) does not count."""
    from distill_gui.core.arithmetic_steps import unsound_steps

    return numeric_checker(predicted, reference) and not unsound_steps(predicted)


_CHECKERS: dict[str, Checker] = {"numeric": numeric_checker, "math": math_checker, "steps": steps_checker}
DEFAULT_CHECKER = "numeric"


def register_checker(name: str, fn: Checker) -> None:
    """Make ``fn(predicted_text, reference) -> bool`` available as ``checker=name`` (replaces an existing one)."""
    if not name or not callable(fn):
        raise ValueError("register_checker needs a name and a callable fn(predicted, reference) -> bool")
    _CHECKERS[name] = fn


def get_checker(name: str = DEFAULT_CHECKER) -> Checker:
    """The checker registered under ``name``; a KeyError names the known ones."""
    try:
        return _CHECKERS[name]
    except KeyError:
        raise KeyError(f"unknown answer checker {name!r}; known: {', '.join(sorted(_CHECKERS))}") from None


def checker_names() -> list[str]:
    """Names of the registered checkers."""
    return sorted(_CHECKERS)


def answers_match(predicted: str | None, reference: str | None, checker: str | Checker = DEFAULT_CHECKER) -> bool:
    """True when the answer in ``predicted`` (a whole generation or a bare answer) matches ``reference``.

    ``reference`` may be a bare answer (``"42"``) or a whole GSM8K solution ending in ``#### 42``.
    """
    if predicted is None or reference is None:
        return False
    fn = checker if callable(checker) else get_checker(checker)
    return bool(fn(str(predicted), str(reference)))
