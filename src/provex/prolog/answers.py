"""Answer extraction, number parsing, error classes and batch checking.

API summary:

- ``extract_answer(text) -> str | None``: the content of the first
  ``<answer>...</answer>`` block, after cutting the text at the first end-of-text
  marker (``<|endoftext|>``, ``<|im_end|>``, ...). ``None`` when there is no
  complete block.
- ``completion_text(completion) -> str``: the assistant text of a plain or
  conversational (``[{"role": "assistant", "content": ...}]``) completion.
- ``parse_number(text) -> float | None``: a finite float from text such as
  ``"13000"``, ``"1,234"`` or ``"42."``; ``None`` for ``"15r2"``, ``"_123"`` or words.
- ``reference_line(result)`` and ``read_output_line(line)``: the last line that the
  reference executor (``swipl -g "solve(X), writeln(X), halt"``) would print for a
  pooled result, and how that line is read (``float()``, as the reference does).
- ``parse_exact(text) -> Fraction | None`` and ``format_number(value) -> str``: exact
  gold values (``"1,234"`` and ``"0.25"`` become fractions; fractions print as
  ``"1234"``, ``"0.25"`` or ``"1/3"``).
- ``ErrorClass``: ``no_code``, ``syntax_error``, ``undefined_predicate``, ``unbound``,
  ``rational``, ``non_numeric``, ``timeout``, ``wrong``, ``correct``.
- ``classify_result(result, gold) -> (ErrorClass, value)``: the class of one
  executed program against a gold value (tolerance 1e-6), with the reference
  executor's reading of the output.
- ``check(texts, golds, pool=None) -> list[Verdict]``: extracts, executes (one
  concurrent batch through the Prolog pool) and analyses every program, returning
  value, status, error class and structure counts per item.
- ``is_hardcoded(code)``: whether ``solve/1`` only states a literal number.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provex.prolog.engine import PrologPool, PrologResult

logger = logging.getLogger(__name__)

END_OF_TEXT_MARKERS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "</s>",
)
"""Tokens after which generated text is ignored."""

DEFAULT_TOLERANCE = 1e-6
DEFAULT_QUERY = "solve(X)"
DEFAULT_VARIABLE = "X"

_HARDCODE_RE = re.compile(r"solve\([^)]*\)\s*:-\s*\{[^}]*=\s*\d+\s*\}")
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?:\D|$))")
_GSM8K_FINAL_RE = re.compile(r"####\s*(.+?)\s*$", re.MULTILINE)


class ErrorClass(StrEnum):
    """Outcome of one attempt, from missing code to a correct number."""

    NO_CODE = "no_code"
    SYNTAX_ERROR = "syntax_error"
    UNDEFINED_PREDICATE = "undefined_predicate"
    UNBOUND = "unbound"
    RATIONAL = "rational"
    NON_NUMERIC = "non_numeric"
    TIMEOUT = "timeout"
    WRONG = "wrong"
    CORRECT = "correct"


@dataclass
class Verdict:
    """The checked outcome of one completion or program.

    ``value`` is the numeric answer (``None`` unless the error class is ``wrong`` or
    ``correct``); ``status`` is the engine status (``"no_code"`` when nothing was
    run); ``text`` is the answer variable as ``write/1`` prints it; ``line`` is the
    last output line the reference executor would print (``None`` when the query
    did not succeed); ``predicates`` and ``constraints`` are the structure counts
    (0 when the program was not analysed or could not be read).
    """

    code: str | None
    value: float | None
    status: str
    error_class: ErrorClass
    text: str | None = None
    predicates: int = 0
    constraints: int = 0
    elapsed: float = 0.0
    line: str | None = None

    @property
    def correct(self) -> bool:
        return self.error_class is ErrorClass.CORRECT

    @property
    def numeric(self) -> bool:
        """True when the program produced a number, right or wrong."""
        return self.error_class in (ErrorClass.CORRECT, ErrorClass.WRONG)

    @property
    def structure_valid(self) -> bool:
        """At least one non-``solve`` clause and at least one ``{}`` constraint."""
        return self.predicates >= 1 and self.constraints >= 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "value": self.value,
            "status": self.status,
            "error_class": str(self.error_class),
            "text": self.text,
            "line": self.line,
            "predicates": self.predicates,
            "constraints": self.constraints,
            "structure_valid": self.structure_valid,
            "elapsed": self.elapsed,
        }


def cut_at_end_of_text(text: str, markers: Sequence[str] = END_OF_TEXT_MARKERS) -> str:
    """Return ``text`` up to the first of ``markers`` (all of it if none occurs)."""
    cut = len(text)
    for marker in markers:
        index = text.find(marker)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


def extract_answer(
    text: str | None, markers: Sequence[str] = END_OF_TEXT_MARKERS
) -> str | None:
    """Return the stripped content of the first ``<answer>...</answer>`` block.

    The text is first cut at the first end-of-text marker. The block is the first
    ``<answer>`` and the next ``</answer>`` after it.

    Example:
        >>> extract_answer("<answer>\\nsolve(4).\\n</answer><answer>x</answer>")
        'solve(4).'
    """
    if not text:
        return None
    text = cut_at_end_of_text(text, markers)
    start = text.find("<answer>")
    if start == -1:
        return None
    start += len("<answer>")
    end = text.find("</answer>", start)
    if end == -1:
        return None
    return text[start:end].strip()


def completion_text(completion: Any) -> str:
    """Return the assistant text of a plain or conversational completion.

    Accepts a string, a message dict, or a list of message dicts (the contents of
    the assistant messages are joined with newlines). Message content may be a
    string or a list of ``{"type": "text", "text": ...}`` parts.
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, Sequence):
        parts = [
            _content_text(message.get("content"))
            for message in completion
            if isinstance(message, dict)
            and message.get("role", "assistant") == "assistant"
        ]
        return "\n".join(parts)
    raise TypeError(
        f"completion of type {type(completion).__name__} is not supported; pass a "
        "string or a list of chat messages"
    )


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") if isinstance(part, dict) else str(part)
            for part in content
        )
    return str(content)


def parse_number(text: str | None) -> float | None:
    """Parse a number written in text, such as a gold answer, as a finite float.

    Strips whitespace and one trailing ``.``, removes thousands separators, and
    returns ``None`` when ``float()`` rejects the rest (``"15r2"``, ``"_G123"``,
    ``"abc"``) or the value is not finite. Program output is read more strictly,
    by ``read_output_line``.

    Example:
        >>> parse_number("1,234."), parse_number("15r2")
        (1234.0, None)
    """
    if text is None:
        return None
    text = text.strip()
    if text.endswith("."):
        text = text[:-1]
    text = _THOUSANDS_RE.sub("", text)
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_exact(text: str | None) -> Fraction | None:
    """Parse a gold answer exactly: ``"1,234"``, ``"$5"``, ``"-0.25"``, ``"7/2"``.

    Returns ``None`` for anything that is not a plain number.

    Example:
        >>> parse_exact("1,234.5")
        Fraction(2469, 2)
    """
    if text is None:
        return None
    text = text.strip().rstrip(".").replace("$", "").replace(",", "").strip()
    if not text:
        return None
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    return value


def parse_gsm8k_answer(solution: str) -> Fraction:
    """Return the exact value after ``####`` in a GSM8K worked solution.

    Raises:
        ValueError: when the solution has no ``#### N`` line or N is not a number.
    """
    match = _GSM8K_FINAL_RE.search(solution)
    if match is None:
        raise ValueError(
            f"GSM8K solution has no '#### N' final line: {solution[-80:]!r}"
        )
    value = parse_exact(match.group(1))
    if value is None:
        raise ValueError(f"GSM8K final answer is not a number: {match.group(1)!r}")
    return value


def format_number(value: Fraction | int | float) -> str:
    """Format an exact value as the gold string: ``"1234"``, ``"0.25"``, ``"1/3"``.

    Fractions with a terminating decimal expansion print as decimals.
    """
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    denominator = value.denominator
    twos = fives = 0
    while denominator % 2 == 0:
        denominator //= 2
        twos += 1
    while denominator % 5 == 0:
        denominator //= 5
        fives += 1
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    digits = max(twos, fives)
    scaled = value * 10**digits
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled.numerator), 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d}"


def gold_value(gold: Any) -> float | None:
    """Return a gold answer (string, number or ``None``) as a float, or ``None``."""
    if gold is None:
        return None
    if isinstance(gold, bool):
        return None
    if isinstance(gold, int | float | Fraction):
        value = float(gold)
        return value if math.isfinite(value) else None
    exact = parse_exact(str(gold))
    if exact is not None:
        return float(exact)
    return parse_number(str(gold))


def is_hardcoded(code: str | None) -> bool:
    """Return whether ``solve/1`` is a single constraint equal to a literal integer.

    Matches ``solve(X) :- {X = 42}`` (the pattern the structure reward penalises).
    """
    return bool(code) and _HARDCODE_RE.search(code) is not None


def numeric_binding(value: Any) -> tuple[ErrorClass | None, float | None]:
    """Classify one engine binding: ``(None, number)`` or ``(error class, None)``.

    Integers, finite floats and integral fractions are numbers. A non-integral
    ``Fraction`` (printed by SWI-Prolog as ``15r2``) is ``rational``, an unbound
    variable is ``unbound``, anything else (atoms, compound terms, strings) is
    ``non_numeric``.
    """
    if isinstance(value, bool):
        return ErrorClass.NON_NUMERIC, None
    if isinstance(value, int):
        return None, float(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return None, value
        return ErrorClass.NON_NUMERIC, None
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return None, float(value)
        return ErrorClass.RATIONAL, None
    if value is None or type(value).__name__ == "Var":
        return ErrorClass.UNBOUND, None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("_"):
            return ErrorClass.UNBOUND, None
        if re.fullmatch(r"-?\d+r\d+", text):
            return ErrorClass.RATIONAL, None
        number = parse_number(text)
        if number is not None:
            return None, number
    return ErrorClass.NON_NUMERIC, None


_STATUS_CLASSES = {
    "syntax_error": ErrorClass.SYNTAX_ERROR,
    "undefined_predicate": ErrorClass.UNDEFINED_PREDICATE,
    "timeout": ErrorClass.TIMEOUT,
    "inference_limit": ErrorClass.TIMEOUT,
    "resource_error": ErrorClass.TIMEOUT,
}
_RATIONAL_RE = re.compile(r"-?\d+r\d+")


def reference_line(result: Any, variable: str = DEFAULT_VARIABLE) -> str | None:
    """Return the last output line the reference executor would print for a result.

    The reference runs ``swipl -g "solve(X), writeln(X), halt"`` and keeps the last
    line of standard output. So text that the program printed without a final
    newline joins the line: ``format("ans ~w", [X])`` makes ``"ans 55"``. A value
    that contains newlines is cut to its last line.

    Args:
        result: a ``PrologResult`` of a pooled run.
        variable: the query variable that the reference prints.

    Returns:
        The stripped line, or ``None`` when the query did not succeed, the
        variable is not in the query, or the output is blank.

    Example:
        >>> reference_line(PrologResult("ok", texts={"X": "5"}, output="ans "))
        'ans 5'
    """
    if result is None:
        return None
    query_status = getattr(result, "query_status", None) or result.status
    if query_status != "ok":
        return None
    text = (getattr(result, "texts", None) or {}).get(variable)
    bindings = getattr(result, "bindings", None) or {}
    if text is None and variable in bindings:
        text = _write_text(bindings[variable])
    if text is None:
        return None
    stdout = f"{getattr(result, 'output', '') or ''}{text}\n"
    lines = stdout.strip().splitlines()
    return lines[-1].strip() if lines else None


def _write_text(value: Any) -> str:
    # For results built by hand without texts: the binding as write/1 prints it.
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        return f"{value.numerator}r{value.denominator}"
    return str(value)


def read_output_line(line: str | None) -> tuple[ErrorClass | None, float | None]:
    """Read an output line as the reference executor does: ``float(line)``.

    Returns ``(None, number)`` when Python's ``float()`` accepts the line, which
    includes ``"42."``, ``"1e3"``, ``"1_000"``, ``"nan"`` and ``"inf"``. Otherwise
    the error class: ``unbound`` for a line starting with ``_`` (an unbound
    variable such as ``_123``), ``rational`` for ``15r2``, ``non_numeric`` for the
    rest (``"1,234"``, ``"1.0Inf"``, ``"- 5"``, words).

    Example:
        >>> read_output_line("15r2")
        (<ErrorClass.RATIONAL: 'rational'>, None)
    """
    if line is None:
        return ErrorClass.UNBOUND, None
    if line.startswith("_"):
        return ErrorClass.UNBOUND, None
    try:
        return None, float(line)
    except ValueError:
        pass
    if _RATIONAL_RE.fullmatch(line):
        return ErrorClass.RATIONAL, None
    return ErrorClass.NON_NUMERIC, None


def classify_result(
    result: PrologResult | None,
    gold: Any,
    *,
    variable: str = DEFAULT_VARIABLE,
    tolerance: float = DEFAULT_TOLERANCE,
) -> tuple[ErrorClass, float | None]:
    """Return the error class and numeric value of one executed program.

    The value is read from ``reference_line(result)`` with ``float()``, so a
    program gets the class that the reference executor's output would give it.
    A program whose load reported a syntax error or a directive error still gets
    its query's value, because plain ``swipl`` loads the rest of the file.

    Args:
        result: the engine result, or ``None`` when no code was extracted.
        gold: the gold answer (string, number, or ``None`` when unknown).
        variable: the query variable holding the answer.
        tolerance: numbers within this absolute distance of gold are correct.

    Returns:
        ``(error_class, value)``. ``value`` is set for ``correct`` and ``wrong``.
        When the query did not succeed, the statuses ``timeout``,
        ``inference_limit`` and ``resource_error`` give ``timeout``.
        ``syntax_error`` and ``undefined_predicate`` keep their names, and an
        ``error`` caused by an instantiation error is ``unbound``. ``fail``,
        ``unsafe``, ``crashed`` and other errors are ``non_numeric``. When the
        query succeeded, the output line decides (see ``read_output_line``). A
        number with an unknown gold is ``wrong``.
    """
    if result is None:
        return ErrorClass.NO_CODE, None
    status = str(result.status)
    query_status = str(getattr(result, "query_status", None) or status)
    if query_status != "ok":
        for name in (status, query_status):
            if name in _STATUS_CLASSES:
                return _STATUS_CLASSES[name], None
        error = f"{getattr(result, 'error', '') or ''}"
        if "error" in (status, query_status) and "instantiation" in error:
            return ErrorClass.UNBOUND, None
        return ErrorClass.NON_NUMERIC, None
    error_class, value = read_output_line(reference_line(result, variable))
    if error_class is not None:
        return error_class, None
    target = gold_value(gold)
    if target is not None and abs(value - target) < tolerance:
        return ErrorClass.CORRECT, value
    return ErrorClass.WRONG, value


def check(
    texts: Sequence[Any],
    golds: Sequence[Any] | None = None,
    *,
    pool: PrologPool | None = None,
    extract: bool = True,
    analyze: bool = True,
    query: str = DEFAULT_QUERY,
    variable: str = DEFAULT_VARIABLE,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: bool = False,
) -> list[Verdict]:
    """Extract, execute and analyse a batch of completions or programs.

    All programs run in one concurrent ``run_many`` call (and one ``analyze_many``
    call); identical programs in the batch run once.

    Args:
        texts: completions (plain or conversational) or, with ``extract=False``,
            programs (``None`` or empty for "no code").
        golds: gold answers, one per text, or ``None`` to only execute.
        pool: the Prolog pool; the process-wide ``shared_pool()`` by default.
        extract: take the first ``<answer>`` block of each text as its program.
        analyze: count predicates and constraints by reading the program terms.
        query: the goal to run.
        variable: the query variable holding the answer.
        tolerance: absolute tolerance of the numeric comparison.
        progress: show a progress bar while the programs run.

    Returns:
        One ``Verdict`` per text, in order.

    Example:
        >>> v = check(["<answer>solve(X) :- X = 4.</answer>"], ["4"])[0]
        >>> v.error_class, v.value
        (<ErrorClass.CORRECT: 'correct'>, 4.0)
    """
    if golds is None:
        golds = [None] * len(texts)
    if len(golds) != len(texts):
        raise ValueError(
            f"check got {len(texts)} texts but {len(golds)} gold answers; pass one "
            "gold answer per text"
        )
    codes: list[str | None] = []
    for text in texts:
        code = extract_answer(completion_text(text)) if extract else text
        codes.append(code if code else None)
    if analyze:
        # Reading and running go to the pool together, so no worker idles
        # between the two batches.
        with ThreadPoolExecutor(max_workers=1) as executor:
            pending = executor.submit(analyze_programs, codes, pool=pool)
            results = execute_programs(codes, pool=pool, query=query, progress=progress)
            structures = pending.result()
    else:
        results = execute_programs(codes, pool=pool, query=query, progress=progress)
        structures = {}
    verdicts = []
    for code, result, gold in zip(codes, results, golds, strict=True):
        error_class, value = classify_result(
            result, gold, variable=variable, tolerance=tolerance
        )
        structure = structures.get(code) if code else None
        texts_map = getattr(result, "texts", None) or {}
        verdicts.append(
            Verdict(
                code=code,
                value=value,
                status=str(result.status) if result is not None else "no_code",
                error_class=error_class,
                text=texts_map.get(variable),
                line=reference_line(result, variable),
                predicates=getattr(structure, "predicates", 0) or 0,
                constraints=getattr(structure, "constraints", 0) or 0,
                elapsed=float(getattr(result, "elapsed", 0.0) or 0.0),
            )
        )
    return verdicts


def _pool(pool: PrologPool | None) -> PrologPool:
    if pool is not None:
        return pool
    from provex.prolog.engine import shared_pool

    return shared_pool()


def execute_programs(
    codes: Sequence[str | None],
    *,
    pool: PrologPool | None = None,
    query: str = DEFAULT_QUERY,
    progress: bool = False,
) -> list[PrologResult | None]:
    """Run each distinct non-empty program once, concurrently; ``None`` for no code."""
    unique = list(dict.fromkeys(code for code in codes if code))
    if not unique:
        return [None] * len(codes)
    results = _pool(pool).run_many(unique, query=query, progress=progress)
    by_code = dict(zip(unique, results, strict=True))
    return [by_code[code] if code else None for code in codes]


def analyze_programs(
    codes: Sequence[str | None], *, pool: PrologPool | None = None
) -> dict[str, Any]:
    """Return ``{program: ProgramStructure}`` for each distinct non-empty program."""
    unique = list(dict.fromkeys(code for code in codes if code))
    if not unique:
        return {}
    structures = _pool(pool).analyze_many(unique)
    return dict(zip(unique, structures, strict=True))
