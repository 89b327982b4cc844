"""Error classes, values and structure counts of executed programs."""

import pytest

from provex.prolog.answers import (
    ErrorClass,
    check,
    classify_result,
    read_output_line,
    reference_line,
)
from provex.prolog.engine import PrologPool, PrologResult, run_reference

CLPQ = ":- use_module(library(clpq)).\n"

REFERENCE = CLPQ + (
    "num_eggs(janet, 16).\n"
    "eggs_breakfast(janet, 3).\n"
    "eggs_muffins(janet, 4).\n"
    "price_per_egg(janet, 2).\n"
    "solve(Total) :-\n"
    "    num_eggs(janet, Eggs), eggs_breakfast(janet, B), eggs_muffins(janet, M),\n"
    "    {Left = Eggs - B - M},\n"
    "    price_per_egg(janet, P),\n"
    "    {Total = Left * P}.\n"
)


@pytest.fixture(scope="module")
def pool():
    with PrologPool(workers=2, time_limit=1.0) as pool:
        yield pool


CASES = [
    ("no_code", None, ErrorClass.NO_CODE),
    ("syntax", "solve(X :- .", ErrorClass.SYNTAX_ERROR),
    ("undefined", "solve(X) :- helper(X).", ErrorClass.UNDEFINED_PREDICATE),
    ("unbound", "solve(X) :- true.", ErrorClass.UNBOUND),
    ("rational", CLPQ + "solve(X) :- {X = 15/2}.", ErrorClass.RATIONAL),
    ("atom", "solve(X) :- X = abc.", ErrorClass.NON_NUMERIC),
    ("compound", "solve(X) :- X = 1 + 2.", ErrorClass.NON_NUMERIC),
    ("loop", "loop :- loop.\nsolve(X) :- loop, X = 1.", ErrorClass.TIMEOUT),
    ("wrong", CLPQ + "solve(X) :- {X = 13/1}.", ErrorClass.WRONG),
    ("correct", REFERENCE, ErrorClass.CORRECT),
]


@pytest.mark.parametrize(
    ("name", "program", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_check_error_class(pool, name, program, expected):
    verdict = check([program], ["18"], pool=pool, extract=False)[0]
    assert verdict.error_class is expected


def test_check_value_correct(pool):
    verdict = check([REFERENCE], ["18"], pool=pool, extract=False)[0]
    assert verdict.value == 18.0


def test_check_value_unset_for_rational(pool):
    verdict = check(
        [CLPQ + "solve(X) :- {X = 15/2}."], ["7.5"], pool=pool, extract=False
    )
    assert verdict[0].value is None


def test_check_text_rational(pool):
    verdict = check([CLPQ + "solve(X) :- {X = 15/2}."], None, pool=pool, extract=False)
    assert verdict[0].text == "15r2"


def test_check_float_within_tolerance(pool):
    verdict = check(
        ["solve(X) :- X is 1/3."], ["0.3333333333"], pool=pool, extract=False
    )
    assert verdict[0].error_class is ErrorClass.CORRECT


def test_check_float_outside_tolerance(pool):
    verdict = check(["solve(X) :- X = 0.334."], ["0.333"], pool=pool, extract=False)
    assert verdict[0].error_class is ErrorClass.WRONG


def test_check_extracts_completion(pool):
    text = f"<reasoning>\nr\n</reasoning>\n<answer>\n{REFERENCE}</answer>\n"
    verdict = check([text], ["18"], pool=pool)[0]
    assert verdict.error_class is ErrorClass.CORRECT


def test_check_gold_count_mismatch(pool):
    with pytest.raises(ValueError, match="one gold answer per text"):
        check(["a", "b"], ["1"], pool=pool)


def test_structure_reference(pool):
    verdict = check([REFERENCE], ["18"], pool=pool, extract=False)[0]
    assert (verdict.predicates, verdict.constraints) == (4, 2)


def test_structure_hardcoded(pool):
    verdict = check([CLPQ + "solve(X) :- {X = 4}."], ["4"], pool=pool, extract=False)[0]
    assert (verdict.predicates, verdict.constraints) == (0, 1)


def test_structure_is_program(pool):
    verdict = check(["solve(X) :- X is 1200/80."], ["15"], pool=pool, extract=False)[0]
    assert (verdict.predicates, verdict.constraints) == (0, 0)


def test_structure_valid_flag(pool):
    verdicts = check(
        [REFERENCE, CLPQ + "solve(X) :- {X = 4}."], None, pool=pool, extract=False
    )
    assert [v.structure_valid for v in verdicts] == [True, False]


def test_structure_syntax_error_zero(pool):
    verdict = check(["p(1).\nsolve(X :- ."], None, pool=pool, extract=False)[0]
    assert (verdict.predicates, verdict.constraints) == (0, 0)


def test_classify_unknown_gold_is_wrong():
    result = PrologResult(status="ok", bindings={"X": 5}, texts={"X": "5"})
    assert classify_result(result, None) == (ErrorClass.WRONG, 5.0)


def test_classify_integral_fraction_is_number():
    from fractions import Fraction

    result = PrologResult(status="ok", bindings={"X": Fraction(4, 1)})
    assert classify_result(result, "4") == (ErrorClass.CORRECT, 4.0)


def test_classify_resource_error_is_timeout():
    assert classify_result(PrologResult(status="resource_error"), "1")[0] is (
        ErrorClass.TIMEOUT
    )


def test_classify_crashed_is_non_numeric():
    assert classify_result(PrologResult(status="crashed"), "1")[0] is (
        ErrorClass.NON_NUMERIC
    )


# Programs whose printed line differs from the bound value, and programs the
# reference still runs after a load error. Gold is 5 throughout.
PARITY = [
    ("atom_number", "solve(X) :- X = '5'.", ErrorClass.CORRECT),
    ("atom_exponent", "solve(X) :- X = '5e0'.", ErrorClass.CORRECT),
    ("string_commas", 'solve(X) :- X = "1,234".', ErrorClass.NON_NUMERIC),
    ("value_after_newline", 'solve(X) :- X = "7\\n5".', ErrorClass.CORRECT),
    ("print_no_newline", CLPQ + 'solve(X) :- {X = 5}, format("ans ~w", [X]).',
     ErrorClass.NON_NUMERIC),
    ("print_value_twice", CLPQ + "solve(X) :- {X = 5}, write(X).", ErrorClass.WRONG),
    ("print_with_newline", CLPQ + 'solve(X) :- {X = 5}, format("ans ~w~n", [X]).',
     ErrorClass.CORRECT),
    ("initialization_write", CLPQ + ":- initialization(write(1)).\nsolve(5).",
     ErrorClass.WRONG),
    ("syntax_error_elsewhere", CLPQ + "helper(N) :- N #= 3.\nsolve(5).",
     ErrorClass.CORRECT),
    ("directive_error", ":- X is foo + 1.\nsolve(5).", ErrorClass.CORRECT),
    ("directive_undefined", ":- missing_goal.\nsolve(5).", ErrorClass.CORRECT),
    ("infinity", "solve(X) :- X is inf.", ErrorClass.NON_NUMERIC),
    ("minus_compound", "solve(X) :- X = -(5).", ErrorClass.NON_NUMERIC),
    ("float_five", "solve(X) :- X is 10 / 4 * 2.", ErrorClass.CORRECT),
    ("rational", CLPQ + "solve(X) :- {X = 15/2}.", ErrorClass.RATIONAL),
    ("constrained_unbound", CLPQ + "solve(X) :- {X >= 3}.", ErrorClass.UNBOUND),
]  # fmt: skip


def reference_score(line):
    """Correctness score of the reference rule: float() of the last line, gold 5."""
    try:
        value = float(line)
    except (TypeError, ValueError):
        return 0.5
    return 2.0 if abs(value - 5.0) < 1e-6 else 1.0


SCORES = {ErrorClass.CORRECT: 2.0, ErrorClass.WRONG: 1.0}


@pytest.mark.parametrize(
    ("name", "program", "expected"), PARITY, ids=[c[0] for c in PARITY]
)
def test_check_parity_class(pool, name, program, expected):
    verdict = check([program], ["5"], pool=pool, extract=False, analyze=False)[0]
    assert verdict.error_class is expected


@pytest.mark.parametrize(
    ("name", "program", "expected"), PARITY, ids=[c[0] for c in PARITY]
)
def test_check_parity_reference_score(pool, name, program, expected):
    verdict = check([program], ["5"], pool=pool, extract=False, analyze=False)[0]
    assert SCORES.get(verdict.error_class, 0.5) == reference_score(
        run_reference(program)
    )


def test_check_line_joins_output(pool):
    program = CLPQ + 'solve(X) :- {X = 5}, format("ans ~w", [X]).'
    verdict = check([program], ["5"], pool=pool, extract=False, analyze=False)[0]
    assert verdict.line == "ans 55"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("13000", (None, 13000.0)),
        ("42.", (None, 42.0)),
        ("1_000", (None, 1000.0)),
        ("1,234", (ErrorClass.NON_NUMERIC, None)),
        ("15r2", (ErrorClass.RATIONAL, None)),
        ("-15r2", (ErrorClass.RATIONAL, None)),
        ("_123", (ErrorClass.UNBOUND, None)),
        ("1.0Inf", (ErrorClass.NON_NUMERIC, None)),
        (None, (ErrorClass.UNBOUND, None)),
    ],
)
def test_read_output_line(line, expected):
    assert read_output_line(line) == expected


def test_reference_line_last_line():
    result = PrologResult(status="ok", texts={"X": "5"}, output="a\nb ")
    assert reference_line(result) == "b 5"


def test_reference_line_failed_query():
    result = PrologResult(status="syntax_error", query_status="fail")
    assert reference_line(result) is None


def test_reference_line_blank_output():
    result = PrologResult(status="ok", texts={"X": ""}, output="\n")
    assert reference_line(result) is None
