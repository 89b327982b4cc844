"""Build CLP(Q) programs from GSM8K's calculator-annotated solutions.

GSM8K solutions mark each calculation as ``<<48/2=24>>``. The builder turns those
steps (and plain-text equations such as ``20/4 = 5`` that lack the mark) into a
program in the reference style:

    :- use_module(library(clpq)).

    friends_april(48).
    half_clips_may(2).

    solve(Clips_altogether_april) :-
        friends_april(Friends_april),
        half_clips_may(Half_clips_may),
        {Clips_may = Friends_april / Half_clips_may},
        {Clips_altogether_april = Friends_april + Clips_may}.

Numbers that repeat an earlier step's result refer to that step's variable. Every
other number becomes a fact named after the words next to it in the question, or
in the solution when the question never states it. Only the steps that the answer
depends on are kept.
``build_dataset`` executes every program and keeps only those that reproduce the
gold answer.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provex.prolog.answers import (
    check,
    format_number,
    parse_exact,
    parse_gsm8k_answer,
)
from provex.prolog.prompts import INSTRUCTION

if TYPE_CHECKING:
    from provex.prolog.engine import PrologPool

logger = logging.getLogger(__name__)

VERIFIED = "verified"

_ANNOTATION_RE = re.compile(r"<<([^<>]*)>>")
_TOKEN_RE = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+|[-+*/()])")
_NUMBER = r"\$?\d[\d,]*(?:\.\d+)?"
_TEXT_EQUATION_RE = re.compile(
    r"(?<![\w.\x00])([($\d][\d$.,()%\s+\-*/x×÷−–]*?[\d)%])"
    r"\s*=\s*\$?(\d[\d,]*(?:\.\d+)?)(?![\d,]*\.?\d)"
)
_OPERAND_START_RE = re.compile(r"[($\d]")
_NUMERAL_RE = re.compile(r"(\$?)(\d[\d,]*(?:\.\d+)?|\.\d+)(\s*%|\s*percent)?")
_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_CLAUSE_MARK_RE = re.compile(r"[.,;:?!](?!\d)|\n")
_SENTENCE_END_RE = re.compile(r"[.?!](?!\d)|\n")
_CLAUSE_END_RE = re.compile(r"[.,;:?!\n()=<>\x00]|\d|\b(?:and|but|while|or)\b")

_SMALL_NUMBERS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
# Words that stand for a number in a calculation: "half" is the 2 in "48/2".
_FACTOR_WORDS = {
    "half": 2, "twice": 2, "double": 2, "doubles": 2, "triple": 3, "thrice": 3,
    "quarter": 4, "dozen": 12, "dozens": 12, "hundred": 100, "thousand": 1000,
    "percent": 100, "%": 100, "third": 3, "thirds": 3, "fourth": 4, "fourths": 4,
    "fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6, "eighth": 8, "eighths": 8,
    "tenth": 10, "tenths": 10,
}  # fmt: skip
_NUMBER_WORD_RE = re.compile(
    r"\b(?:("
    + "|".join(_TENS)
    + r")(?:[- ]("
    + "|".join(list(_SMALL_NUMBERS)[1:10])
    + r"))?|("
    + "|".join(_SMALL_NUMBERS)
    + r")|("
    + "|".join(_FACTOR_WORDS)
    + r"))\b",
    re.IGNORECASE,
)
_STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "from",
        "by",
        "with",
        "and",
        "or",
        "but",
        "if",
        "then",
        "than",
        "that",
        "this",
        "these",
        "those",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "it",
        "its",
        "he",
        "she",
        "they",
        "we",
        "you",
        "i",
        "his",
        "her",
        "their",
        "our",
        "your",
        "my",
        "me",
        "him",
        "them",
        "us",
        "so",
        "as",
        "each",
        "every",
        "per",
        "do",
        "does",
        "did",
        "has",
        "have",
        "had",
        "will",
        "would",
        "can",
        "could",
        "should",
        "there",
        "here",
        "what",
        "which",
        "who",
        "whom",
        "how",
        "much",
        "many",
        "more",
        "less",
        "all",
        "any",
        "some",
        "into",
        "out",
        "up",
        "down",
        "over",
        "about",
        "after",
        "before",
        "also",
        "only",
        "just",
        "very",
        "s",
        "t",
    ]
)  # "per" is re-added between words below, so "dollars per bag" keeps it.
# System predicates of arity 1 that a one-word fact name could clash with.
_RESERVED = frozenset(
    [
        "not",
        "nl",
        "throw",
        "float",
        "assert",
        "asserta",
        "assertz",
        "format",
        "shift",
        "shell",
        "atom",
        "retract",
        "ground",
        "close",
        "integer",
        "string",
        "skip",
        "put",
        "get",
        "call",
        "tab",
        "halt",
        "compound",
        "erase",
        "undo",
        "import",
        "see",
        "tell",
        "module",
        "append",
        "snapshot",
        "once",
        "var",
        "ignore",
        "version",
        "writeln",
        "read",
        "write",
        "number",
        "export",
        "require",
        "print",
        "prompt",
        "protocol",
        "rational",
        "table",
        "dynamic",
        "public",
        "license",
        "volatile",
        "abolish",
        "sleep",
        "visible",
        "leash",
        "deterministic",
        "transaction",
        "det",
        "initialization",
        "solve",
        "consult",
        "atomic",
        "callable",
        "nonvar",
        "attvar",
    ]
)


# Names for unit conversions that solutions use without the problem stating them:
# (value, words that must all occur in the question or solution, fact name).
_UNIT_CONSTANTS = (
    (60, ("second",), "seconds_per_minute"),
    (60, (), "minutes_per_hour"),
    (24, (), "hours_per_day"),
    (7, (), "days_per_week"),
    (30, (), "days_per_month"),
    (52, (), "weeks_per_year"),
    (365, (), "days_per_year"),
    (12, ("inch",), "inches_per_foot"),
    (12, ("month",), "months_per_year"),
    (12, (), "items_per_dozen"),
    (3, ("feet",), "feet_per_yard"),
    (16, ("ounce",), "ounces_per_pound"),
    (100, ("cent",), "cents_per_dollar"),
    (100, (), "percent_base"),
    (1000, (), "units_per_thousand"),
    (2, (), "half_factor"),
)


@dataclass
class _Step:
    tokens: list[str]
    value: Fraction
    start: int
    end: int
    text: str
    name: str = ""
    operands: list[tuple[str, Any]] = field(default_factory=list)


@dataclass
class BuildOutcome:
    """The result of building (and, after ``verify_programs``, checking) one row.

    ``reason`` is ``"verified"`` for a kept program, otherwise why it was dropped:
    ``no_steps`` (no calculation found), ``gold_not_computed`` (no step yields the
    gold answer), ``bad_gold`` (no ``#### N`` line), or the error class of the
    executed program (``wrong``, ``rational``, ``syntax_error``, ...).
    """

    index: int
    program: str | None
    reason: str
    gold: str = ""


@dataclass
class BuildSummary:
    """Counts of a ``build_dataset`` run (including rows done in earlier runs)."""

    total: int = 0
    verified: int = 0
    reasons: Counter = field(default_factory=Counter)

    @property
    def verified_share(self) -> float:
        return self.verified / self.total if self.total else 0.0


def _evaluate(tokens: list[str]) -> Fraction:
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def expression() -> Fraction:
        value = term()
        while peek() in ("+", "-"):
            value = value + term() if take() == "+" else value - term()
        return value

    def term() -> Fraction:
        value = factor()
        while peek() in ("*", "/"):
            if take() == "*":
                value *= factor()
            else:
                value /= factor()
        return value

    def factor() -> Fraction:
        token = peek()
        if token is None:
            raise ValueError("expression ends early")
        take()
        if token == "-":
            return -factor()
        if token == "+":
            return factor()
        if token == "(":
            value = expression()
            if peek() != ")":
                raise ValueError("unbalanced parenthesis")
            take()
            return value
        if token in "*/)":
            raise ValueError(f"unexpected {token!r}")
        return Fraction(token)

    value = expression()
    if position != len(tokens):
        raise ValueError("trailing tokens")
    return value


def _tokenize(expression: str) -> list[str] | None:
    expression = expression.replace(",", "").strip()
    tokens = []
    position = 0
    while position < len(expression):
        match = _TOKEN_RE.match(expression, position)
        if match is None:
            if expression[position:].strip() == "":
                break
            return None
        tokens.append(match.group(1))
        position = match.end()
    return tokens or None


def _normalise_text_expression(expression: str) -> str:
    expression = expression.replace("$", "").replace(",", "")
    for symbol, replacement in (("×", "*"), ("x", "*"), ("÷", "/"), ("−", "-")):
        expression = expression.replace(symbol, replacement)
    expression = expression.replace("–", "-")
    return re.sub(r"(\d+(?:\.\d+)?)\s*%", r"(\1/100)", expression)


def _find_steps(solution: str) -> list[_Step]:
    steps: list[_Step] = []
    masked = list(solution)
    for match in _ANNOTATION_RE.finditer(solution):
        for position in range(match.start(), match.end()):
            masked[position] = "\x00"
        body = match.group(1)
        if "=" not in body:
            continue
        left, right = body.rsplit("=", 1)
        tokens = _tokenize(left)
        try:
            value = Fraction(right.replace(",", "").strip())
        except (ValueError, ZeroDivisionError):
            continue
        if tokens is None:
            continue
        try:
            _evaluate(tokens)
        except (ValueError, ZeroDivisionError):
            continue
        steps.append(_Step(tokens, value, match.start(), match.end(), solution))
    masked_text = "".join(masked)
    steps.extend(_text_steps(masked_text, solution))
    steps.extend(_unit_equation_steps(masked_text, solution, steps))
    steps.sort(key=lambda step: step.start)
    return steps


_UNIT_AFTER_SLASH_RE = re.compile(r"(\d%?)\s*/\s*[A-Za-z]+\b(?!\s*\d)")
_UNIT_WORDS_RE = re.compile(
    r"(\d%?)\s+(?:[A-Za-z]+(?:/[A-Za-z]+)?\s+)?[A-Za-z]+(?:/[A-Za-z]+)?"
    r"(?=\s*[-+*/×÷−–=])"
)


def _text_steps(text: str, step_text: str) -> Iterator[_Step]:
    """Yield the plain-text equations of ``text`` that evaluate to their value.

    ``step_text`` is the text the steps point into (for naming them); it has the
    same length as ``text``.
    """
    for match in _TEXT_EQUATION_RE.finditer(text):
        try:
            value = Fraction(match.group(2).replace(",", ""))
        except ValueError:
            continue
        step = _text_step(match, value, step_text)
        if step is not None:
            yield step


def _first_text_step(variants: Sequence[str]) -> _Step | None:
    for variant in variants:
        step = next(_text_steps(variant, variant), None)
        if step is not None:
            return step
    return None


def _unit_equation_steps(
    masked_text: str, solution: str, found: list[_Step]
) -> list[_Step]:
    """Return equations written with units between the numbers, on lines without steps.

    "4.8 L / 1.2 L/hour = 4 hours" is read as ``4.8 / 1.2 = 4``. A percent sign is
    tried both as "/100" and dropped ("2 tbs / 50 tbs * 100% = 4%").
    """
    steps = []
    offset = 0
    for line in masked_text.split("\n"):
        start, offset = offset, offset + len(line) + 1
        if "\x00" in line or any(start <= step.start < offset for step in found):
            continue
        stripped = _UNIT_WORDS_RE.sub(r"\1", _UNIT_AFTER_SLASH_RE.sub(r"\1", line))
        if stripped == line:
            continue
        step = _first_text_step((stripped, stripped.replace("%", "")))
        if step is None:
            continue
        first = re.search(re.escape(step.tokens[0].lstrip("(")), line)
        result = re.search(r"=\s*\$?" + re.escape(format_number(step.value)), line)
        step.text = solution
        step.start = start + (first.start() if first else 0)
        step.end = start + (result.end() if result else len(line))
        steps.append(step)
    return steps


def _text_step(match: re.Match, value: Fraction, solution: str) -> _Step | None:
    """Return the longest suffix of a plain-text equation that evaluates to its value.

    "In 2 weeks 3+4=7" first reads "2 weeks 3+4" and fails, then "3+4" succeeds.
    """
    left = match.group(1)
    for start in range(len(left)):
        if not _OPERAND_START_RE.match(left, start):
            continue
        if start and (left[start - 1].isdigit() or left[start - 1] in ".,"):
            continue
        tokens = _tokenize(_normalise_text_expression(left[start:]))
        if tokens is None or not any(t in "+-*/" for t in tokens):
            continue
        try:
            if _evaluate(tokens) == value:
                begin = match.start(1) + start
                return _Step(tokens, value, begin, match.end(), solution)
        except (ValueError, ZeroDivisionError):
            continue
    return None


def _words_after(text: str, position: int, limit: int = 3) -> list[str]:
    end = _CLAUSE_END_RE.search(text, position)
    segment = text[position : end.start() if end else len(text)]
    return _content_words(segment)[:limit]


def _words_before(text: str, position: int, limit: int = 3) -> list[str]:
    start = 0
    for match in _CLAUSE_END_RE.finditer(text, 0, position):
        start = match.end()
    return _content_words(text[start:position])[-limit:]


def _content_words(segment: str) -> list[str]:
    words = [word.lower() for word in _WORD_RE.findall(segment)]
    kept = []
    for index, word in enumerate(words):
        between = 0 < index < len(words) - 1 and kept
        if word not in _STOP_WORDS or (word == "per" and between):
            kept.append(word)
    return kept


def _number_mentions(text: str) -> list[tuple[Fraction, int, int, str]]:
    """Return ``(value, start, end, kind)`` for numerals and number words."""
    mentions = []
    for match in _NUMERAL_RE.finditer(text):
        try:
            value = Fraction(match.group(2).replace(",", "").rstrip("."))
        except ValueError:
            continue
        kind = ""
        if match.group(1):
            kind = "dollars"
        elif match.group(3):
            kind = "percent"
        mentions.append((value, match.start(), match.end(), kind))
    for match in _NUMBER_WORD_RE.finditer(text):
        tens, unit, small, factor = match.groups()
        if tens:
            value = _TENS[tens.lower()] + (_SMALL_NUMBERS[unit.lower()] if unit else 0)
            kind = ""
        elif small:
            value, kind = _SMALL_NUMBERS[small.lower()], ""
        else:
            value, kind = _FACTOR_WORDS[factor.lower()], factor.lower()
        mentions.append((Fraction(value), match.start(), match.end(), kind))
    mentions.sort(key=lambda mention: mention[1])
    return mentions


def _constant_names(
    value: Fraction, question: str, solution: str
) -> list[tuple[list[str], list[str]]]:
    """Return ``(words, alternative)`` name candidates, one per mention of a constant.

    The alternative adds the word before the number and is used when the first
    name is taken ("eats 2 apples" after "4 apples" becomes ``eats_apples``).

    Mentions in the question come first. The solution is searched only when the
    question never states the value, and a table of unit conversions after that.
    """
    for text in (question, solution):
        names = []
        for mention_value, start, end, kind in _number_mentions(text):
            if mention_value != value:
                continue
            words = _words_after(text, end)
            if kind in _FACTOR_WORDS:
                words = [kind, "factor"] if not words else [kind, *words[:2]]
            elif not words:
                words = _words_before(text, start)
            if kind == "dollars" and words[:1] != ["dollars"]:
                words = ["dollars", *words[:2]]
            elif kind == "percent" and "percent" not in words:
                words = [*words[:2], "percent"]
            if words:
                before = _words_before(text, start, limit=1)
                names.append((words, before + words[:2]))
        if names:
            return names
    rate = _percent_rate_words(value, question)
    if rate:
        return [(rate, [])]
    text = f"{question} {solution}".lower()
    for known, required, name in _UNIT_CONSTANTS:
        if value == known and all(word in text for word in required):
            return [(name.split("_"), [])]
    fallback = [
        "constant",
        format_number(value).replace(".", "_").replace("-", "minus"),
    ]
    return [(fallback, [])]


def _percent_rate_words(value: Fraction, question: str) -> list[str]:
    """Return name words for a decimal rate that the question states as a percent.

    A solution that multiplies by 0.2 where the question states "20% of the
    price" gets ``price_rate``.
    """
    if not 0 < value < 1:
        return []
    for mention_value, start, end, kind in _number_mentions(question):
        if kind == "percent" and mention_value == value * 100:
            words = _words_after(question, end) or _words_before(question, start)
            return [*words[:2], "rate"]
    return []


class _Names:
    """Unique Prolog atom and variable names for one program."""

    def __init__(self) -> None:
        self.atoms: set[str] = set()
        self.variables: set[str] = set()

    def atom(
        self, words: list[str], fallback: str, alternative: Sequence[str] = ()
    ) -> str:
        if alternative and self._clean("_".join(words), fallback) in self.atoms:
            words = list(alternative)
        base = self._clean("_".join(words), fallback)
        if base in _RESERVED:
            base = f"{base}_value"
        return self._unique(base, self.atoms)

    @staticmethod
    def _clean(base: str, fallback: str) -> str:
        base = base or fallback
        base = re.sub(r"[^a-z0-9_]", "", base.lower())[:40].strip("_") or fallback
        if not base[0].isalpha():
            base = f"n_{base}"
        return base

    def variable(
        self, words: list[str], fallback: str, alternative: Sequence[str] = ()
    ) -> str:
        base = self._variable_base(words, fallback)
        if alternative and base in self.variables:
            base = self._variable_base(list(alternative), fallback)
        return self._unique(base, self.variables)

    @staticmethod
    def _variable_base(words: list[str], fallback: str) -> str:
        base = "_".join(words) or fallback
        base = re.sub(r"[^a-z0-9_]", "", base.lower())[:40].strip("_") or fallback
        if not base[0].isalpha():
            base = f"v_{base}"
        return base[0].upper() + base[1:]

    @staticmethod
    def _unique(base: str, used: set[str]) -> str:
        name = base
        suffix = 2
        while name in used:
            name = f"{base}_{suffix}"
            suffix += 1
        used.add(name)
        return name


def _step_words(step: _Step) -> tuple[list[str], list[str]]:
    """Return name words for a step's variable and an alternative for clashes.

    The words come from the text after the step's result ("24 clips in May"), or
    from the sentence before the calculation when nothing follows it. The
    alternative puts the first word of the clause first ("Johanna had 21 turtles -
    5 turtles = 16 turtles" gives ``johanna_turtles``).
    """
    text = step.text
    after = step.end
    number = re.match(r"\s*\$?\d[\d,]*(?:\.\d+)?", text[after:])
    if number:
        after += number.end()
    boundaries = list(_SENTENCE_END_RE.finditer(text, 0, step.start))
    sentence_start = boundaries[-1].end() if boundaries else 0
    before = _content_words(_ANNOTATION_RE.sub(" ", text[sentence_start : step.start]))
    words = _words_after(text, after)
    if not words:
        return before[-3:], []
    clauses = list(_CLAUSE_MARK_RE.finditer(text, 0, step.start))
    clause = text[clauses[-1].end() if clauses else 0 : step.start]
    subject = _content_words(re.split(r"[\d$]", clause, maxsplit=1)[0])
    return words, [*subject[:1], *words[:2]]


_QUESTION_TARGET_RE = re.compile(
    r"\b(?:how\s+(?:many|much|long|far|old)|what\s+(?:is|was|are|were))\b([^?]*)\?",
    re.IGNORECASE,
)
_OPERATION_WORDS = {"+": "plus", "-": "minus", "*": "times", "/": "per"}


def _question_target_words(question: str) -> list[str]:
    """Return name words for the answer from the last "how many ...?" question.

    "How many dollars did Lee earn mowing lawns?" gives ``dollars_lee_earn``.
    """
    matches = list(_QUESTION_TARGET_RE.finditer(question))
    if not matches:
        return []
    return _content_words(matches[-1].group(1))[:3]


def _operand_words(
    step: _Step,
    constants: dict[tuple[Fraction, int], tuple[str, str]],
    steps: list[_Step],
) -> list[str]:
    """Return name words built from a step's first two operands and operation.

    ``{V = Customers * Dollars_tip}`` gives ``customers_times_dollars_tip``, for a
    step whose text has no words to name it.
    """
    operands = []
    operations = []
    for kind, value in step.operands:
        if kind == "op":
            if value in _OPERATION_WORDS:
                operations.append(_OPERATION_WORDS[value])
        elif kind == "const":
            operands.append(constants[value][1].lower())
        else:
            operands.append(steps[value].name.lower())
    if len(operands) < 2 or not operations:
        return operands[:1]
    return [operands[0], operations[0], operands[1]]


def _format_constant(value: Fraction) -> str:
    text = format_number(value)
    if "/" in text:
        raise ValueError(f"constant {value} has no finite decimal form")
    return text


def build_program(question: str, solution: str, gold: Fraction | None = None) -> str:
    """Return a CLP(Q) program that computes a GSM8K solution's answer.

    Args:
        question: the problem text (names of the facts come from it).
        solution: the worked solution with ``<<expr=value>>`` annotations.
        gold: the expected answer; by default the value after ``####``.

    Returns:
        The program text (not yet executed; see ``verify_programs``).

    Raises:
        ValueError: with message ``no_steps`` when the solution has no
            calculation, or ``gold_not_computed`` when no step yields ``gold``.
    """
    if gold is None:
        gold = parse_gsm8k_answer(solution)
    steps = _find_steps(solution)
    if not steps:
        raise ValueError("no_steps")
    final = next(
        (i for i in range(len(steps) - 1, -1, -1) if steps[i].value == gold), None
    )
    if final is None:
        raise ValueError("gold_not_computed")

    for index, step in enumerate(steps[: final + 1]):
        step.operands = []
        used: set[int] = set()
        for token in step.tokens:
            if token in "+-*/()":
                step.operands.append(("op", token))
                continue
            value = Fraction(token)
            # A step used twice in one calculation ("12/12 = 1") almost always
            # means a second quantity that has the same value, so the repeat
            # takes another step with that value, or else becomes a constant.
            source = next(
                (
                    j
                    for j in range(index - 1, -1, -1)
                    if steps[j].value == value and j not in used
                ),
                None,
            )
            if source is None:
                step.operands.append(("const", value))
            else:
                used.add(source)
                step.operands.append(("step", source))

    needed: set[int] = set()
    pending = [final]
    while pending:
        index = pending.pop()
        if index in needed:
            continue
        needed.add(index)
        pending.extend(v for kind, v in steps[index].operands if kind == "step")

    names = _Names()
    # The k-th use of a value takes the k-th mention of it in the question, so
    # "$10 per bag" and "10 tons" become two facts.
    constants: dict[tuple[Fraction, int], tuple[str, str]] = {}
    uses: Counter = Counter()
    for index in sorted(needed):
        for position, (kind, value) in enumerate(steps[index].operands):
            if kind != "const":
                continue
            candidates = _constant_names(value, question, solution)
            key = (value, min(uses[value], len(candidates) - 1))
            uses[value] += 1
            steps[index].operands[position] = ("const", key)
            if key not in constants:
                words, alternative = candidates[key[1]]
                atom = names.atom(words, "value", alternative)
                variable = names.variable(atom.split("_"), "Value")
                constants[key] = (atom, variable)
    for index in sorted(needed):
        words, alternative = _step_words(steps[index])
        if not words and index == final:
            words = _question_target_words(question)
        if not words:
            words = _operand_words(steps[index], constants, steps)
        steps[index].name = names.variable(words, "Step", alternative)

    lines = [":- use_module(library(clpq)).", ""]
    for (value, _), (atom, _) in constants.items():
        lines.append(f"{atom}({_format_constant(value)}).")
    lines.append("")
    body = [f"{atom}({variable})" for atom, variable in constants.values()]
    for index in sorted(needed):
        step = steps[index]
        parts = []
        for kind, value in step.operands:
            if kind == "op":
                parts.append(value)
            elif kind == "const":
                parts.append(constants[value][1])
            else:
                parts.append(steps[value].name)
        expression = " ".join(parts).replace("( ", "(").replace(" )", ")")
        body.append(f"{{{step.name} = {expression}}}")
    lines.append(f"solve({steps[final].name}) :-")
    lines.append(",\n".join(f"    {goal}" for goal in body) + ".")
    return "\n".join(lines) + "\n"


def verify_programs(
    programs: Sequence[str | None],
    golds: Sequence[Any],
    *,
    pool: PrologPool | None = None,
    progress: bool = False,
) -> list[str]:
    """Run programs in one concurrent batch; return ``"verified"`` or the error class.

    A program is verified when ``solve(X)`` binds X to a number within 1e-6 of its
    gold answer. A rational result such as ``5r2`` is not a number here, as in the
    reference executor, so such programs are dropped as ``rational``.
    """
    verdicts = check(
        programs, golds, pool=pool, extract=False, analyze=False, progress=progress
    )
    return [VERIFIED if v.correct else str(v.error_class) for v in verdicts]


def _build_one(index: int, row: dict[str, Any]) -> BuildOutcome:
    solution = row.get("solution") or row.get("answer") or ""
    # The row's numerical_result wins over the "####" line, so corrected gold
    # answers (load_gsm8k(corrections=True)) are the ones verified.
    gold = parse_exact(row.get("numerical_result"))
    if gold is None:
        try:
            gold = parse_gsm8k_answer(solution)
        except ValueError:
            return BuildOutcome(index, None, "bad_gold")
    try:
        program = build_program(row["question"], solution, gold)
    except ValueError as error:
        return BuildOutcome(index, None, str(error), format_number(gold))
    return BuildOutcome(index, program, "", format_number(gold))


def build_outcomes(
    rows: Sequence[dict[str, Any]],
    *,
    pool: PrologPool | None = None,
    start: int = 0,
    progress: bool = False,
) -> list[BuildOutcome]:
    """Build and verify programs for GSM8K rows (``question`` and ``solution``).

    ``start`` is the index of the first row, used in the outcomes.
    """
    outcomes = [_build_one(start + i, row) for i, row in enumerate(rows)]
    pending = [o for o in outcomes if o.program is not None]
    reasons = verify_programs(
        [o.program for o in pending],
        [o.gold for o in pending],
        pool=pool,
        progress=progress,
    )
    for outcome, reason in zip(pending, reasons, strict=True):
        outcome.reason = reason
    return outcomes


def _done_indices(path: Path) -> dict[int, str]:
    done: dict[int, str] = {}
    if not path.exists():
        return done
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                done[int(record["index"])] = record.get("reason", VERIFIED)
    return done


def rejects_path(out: Path) -> Path:
    """Return the file beside ``out`` that lists the dropped rows and reasons."""
    return out.with_name(out.stem + ".rejected.jsonl")


def build_dataset(
    rows: Sequence[dict[str, Any]],
    out: str | Path,
    *,
    pool: PrologPool | None = None,
    chunk_size: int = 256,
    progress: bool = True,
) -> BuildSummary:
    """Build, verify and append programs for GSM8K rows to a JSONL file.

    Kept rows go to ``out`` with ``index``, ``instruction``, ``input``, ``output``
    (the program) and ``numerical_result``, so ``load_gsm8k_prolog(out)`` reads
    them. Dropped rows go to ``<out stem>.rejected.jsonl`` with their reason.
    Rows already present in either file are skipped, so an interrupted run
    resumes where it stopped.

    Args:
        rows: GSM8K rows from ``load_gsm8k`` (``question``, ``solution``).
        out: the output JSONL path.
        pool: the Prolog pool; ``shared_pool()`` by default.
        chunk_size: rows built and executed per batch before appending.
        progress: show a progress bar.

    Returns:
        A ``BuildSummary`` over all rows (earlier runs included).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rejected = rejects_path(out)
    done = {**_done_indices(out), **_done_indices(rejected)}
    todo = [
        (row.get("index", i), row)
        for i, row in enumerate(rows)
        if row.get("index", i) not in done
    ]
    logger.info("%d rows already done, %d to build", len(done), len(todo))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(rows), initial=len(rows) - len(todo), unit="row")
    for begin in range(0, len(todo), chunk_size):
        chunk = todo[begin : begin + chunk_size]
        outcomes = build_outcomes([row for _, row in chunk], pool=pool)
        with (
            out.open("a", encoding="utf-8") as kept,
            rejected.open("a", encoding="utf-8") as dropped,
        ):
            for (index, row), outcome in zip(chunk, outcomes, strict=True):
                outcome.index = index
                done[index] = outcome.reason
                if outcome.reason == VERIFIED:
                    record = {
                        "index": index,
                        "instruction": INSTRUCTION,
                        "input": row["question"],
                        "output": outcome.program,
                        "numerical_result": outcome.gold,
                    }
                    kept.write(json.dumps(record, ensure_ascii=False) + "\n")
                else:
                    record = {
                        "index": index,
                        "reason": outcome.reason,
                        "numerical_result": outcome.gold,
                        "program": outcome.program,
                    }
                    dropped.write(json.dumps(record, ensure_ascii=False) + "\n")
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    wanted = {row.get("index", i) for i, row in enumerate(rows)}
    reasons = Counter(reason for index, reason in done.items() if index in wanted)
    return BuildSummary(total=len(wanted), verified=reasons[VERIFIED], reasons=reasons)
