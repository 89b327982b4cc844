"""Engine API: values, statuses, isolation, program structure, reference executor."""

from __future__ import annotations

import threading
from fractions import Fraction

import pytest

from provex.prolog.engine import (
    STATUSES,
    Atom,
    Compound,
    ProgramStructure,
    PrologPool,
    PrologResult,
    Var,
    run_reference,
    shared_pool,
)

CEMENT = """:- use_module(library(clpq)).
num_bags_cement(500).
price_per_bag_cement(10).
num_lorries_sand(20).
tons_per_lorry_sand(10).
price_per_ton_sand(40).
solve(Total) :- num_bags_cement(B), price_per_bag_cement(P), num_lorries_sand(L),
    tons_per_lorry_sand(T), price_per_ton_sand(S),
    {Cement = B * P}, {Sand = L * T * S}, {Total = Cement + Sand}.
"""

# The same problem written with four constraint blocks.
CEMENT_FOUR = CEMENT.replace("{Sand = L * T * S}", "{Tons = L * T}, {Sand = Tons * S}")

CLPQ = ":- use_module(library(clpq)).\n"


@pytest.fixture(scope="module")
def pool():
    with PrologPool(workers=2, time_limit=0.5, hard_time_limit=1.5) as pool:
        yield pool


def test_reference_program_value(pool):
    result = pool.run(CEMENT)
    assert result.status == "ok"
    assert result.value() == 13000
    assert result.texts["X"] == "13000"


def test_query_variable_name(pool):
    result = pool.run(CEMENT, "solve(Total)")
    assert result.value("Total") == 13000
    assert "X" not in result.bindings


def test_four_constraint_program_same_value(pool):
    assert pool.run(CEMENT_FOUR).value() == 13000


def test_rational_fraction(pool):
    result = pool.run(CLPQ + "solve(X) :- {X = 15/2}.")
    assert result.value() == Fraction(15, 2)
    assert isinstance(result.value(), Fraction)
    assert result.text() == "15r2"


def test_clpq_float_becomes_rational(pool):
    result = pool.run(CLPQ + "solve(X) :- {X = 3*0.75+1}.")
    assert result.value() == Fraction(13, 4)
    assert result.text() == "13r4"


def test_integer_division_exact(pool):
    result = pool.run("solve(X) :- X is 1200/80.")
    assert result.value() == 15
    assert type(result.value()) is int


def test_float_value(pool):
    result = pool.run("solve(X) :- X is 1.5 * 3.")
    assert result.value() == 4.5
    assert result.text() == "4.5"


def test_unbound_variable(pool):
    result = pool.run(CLPQ + "solve(X) :- {Y = 2}.")
    assert result.status == "ok"
    assert isinstance(result.value(), Var)
    assert result.text().startswith("_")


def test_big_integer(pool):
    result = pool.run("solve(X) :- X is 2^200.")
    assert result.value() == 2**200
    assert result.text() == str(2**200)


def test_huge_integer_text(pool):
    result = pool.run("solve(X) :- X is 3^20000.")
    assert result.value() == 3**20000


def test_atom_string_list_compound(pool):
    result = pool.run(
        "solve(X) :- X = f(abc, \"text\", [1, two], 'hello world', [], g(1.0))."
    )
    expected = Compound(
        "f",
        (
            Atom("abc"),
            "text",
            [1, Atom("two")],
            Atom("hello world"),
            [],
            Compound("g", (1.0,)),
        ),
    )
    assert result.value() == expected
    assert result.text() == "f(abc,text,[1,two],hello world,[],g(1.0))"


def test_partial_list(pool):
    value = pool.run("solve(X) :- X = [1|_].").value()
    assert value.name == "[|]"
    assert value.args[0] == 1
    assert isinstance(value.args[1], Var)


def test_several_variables(pool):
    result = pool.run("p(1, a).", "p(N, A)")
    assert result.bindings == {"N": 1, "A": Atom("a")}


def test_first_solution_only(pool):
    assert pool.run("solve(X) :- member(X, [3, 4]).").value() == 3


def test_output_captured(pool):
    program = (
        "solve(X) :- write(a), nl, print(b), format('~w~n', [c]), writeln(d), X = 1."
    )
    result = pool.run(program)
    assert result.output == "a\nbc\nd\n"


def test_load_warning_in_messages(pool):
    result = pool.run("solve(X) :- Y = 1, X = 2.")
    assert result.status == "ok"
    assert any("Singleton" in message for message in result.messages)


def test_elapsed_measured(pool):
    assert 0 < pool.run("solve(1).").elapsed < 1.5


def test_status_fail(pool):
    result = pool.run("solve(X) :- X = 1, X = 2.")
    assert result.status == "fail"
    assert result.bindings == {}


def test_status_syntax_error(pool):
    result = pool.run("solve(X) :- X is 1 +.\n")
    assert result.status == "syntax_error"
    assert "Syntax error" in result.error


def test_status_syntax_error_position(pool):
    result = pool.run("solve(1).\nfoo( .\n")
    assert result.status == "syntax_error"
    assert result.error.startswith("program:2:")


def test_status_query_syntax_error(pool):
    assert pool.run("solve(1).", "solve(X").status == "syntax_error"


def test_status_undefined_predicate(pool):
    result = pool.run("solve(X) :- helper(X).")
    assert result.status == "undefined_predicate"
    assert "helper" in result.error


def test_status_undefined_solve(pool):
    assert pool.run("answer(1).").status == "undefined_predicate"


def test_status_undefined_without_clpq(pool):
    # {}/1 is CLP(Q) syntax: without the use_module directive it is undefined.
    assert pool.run("solve(X) :- {X = 1}.").status == "undefined_predicate"


def test_status_unsafe(pool):
    result = pool.run("solve(X) :- shell('ls'), X = 1.")
    assert result.status == "unsafe"
    assert "shell" in result.error


def test_status_timeout():
    # The loop would reach the default inference limit first on an idle machine.
    with PrologPool(workers=1, time_limit=0.5, inference_limit=10**11) as single:
        result = single.run("solve(X) :- repeat, atom_length(abc, _), fail.")
    assert result.status == "timeout"


def test_status_inference_limit(pool):
    # A generous time limit, so that the inference limit is hit first on a busy machine.
    result = pool.run("solve(X) :- loop. loop :- loop.", time_limit=5.0)
    assert result.status == "inference_limit"


def test_status_resource_error(pool):
    result = pool.run("solve(X) :- length(X, 500000000).")
    assert result.status == "resource_error"
    assert "Stack limit" in result.error


def test_status_error(pool):
    result = pool.run("solve(X) :- X is foo + 1.")
    assert result.status == "error"


def test_status_error_thrown(pool):
    assert pool.run("solve(X) :- throw(oops).").status == "error"


# Squaring a 64 MiB integer makes GMP's allocation fail under a 400 MiB
# address-space limit, and GMP aborts the worker process (SIGABRT).
CRASH = "solve(X) :- X is 2^(2^29), Y is X*X, Y > 0."


def test_status_crashed():
    with PrologPool(workers=1, memory_limit=400 * 1024**2, time_limit=2.0) as small:
        result = small.run(CRASH)
        after = small.run("solve(X) :- X is 6*7.")
        restarts = small.restarts
    assert result.status == "crashed"
    assert restarts == 1
    assert after.value() == 42


def test_time_limit_per_call(pool):
    program = "solve(X) :- numlist(1, 300000, L), sum_list(L, X)."
    assert pool.run(program, time_limit=5.0).value() == 300000 * 300001 // 2


def test_statuses_listed():
    assert len(STATUSES) == 10


def test_isolation_facts(pool):
    pool.run("secret(42).\nsolve(X) :- secret(X).")
    assert pool.run("solve(X) :- secret(X).").status == "undefined_predicate"


def test_isolation_asserted_facts(pool):
    first = pool.run(":- dynamic f/1.\nsolve(X) :- assertz(f(7)), f(X).")
    second = pool.run(":- dynamic f/1.\nsolve(X) :- findall(Y, f(Y), X).")
    assert first.value() == 7
    assert second.value() == []


def test_isolation_operators(pool):
    pool.run(":- op(700, xfx, ===>).\nsolve(1).")
    assert pool.run("solve(X) :- X = (a ===> b).").status == "syntax_error"


def test_isolation_module_file(pool):
    pool.run(":- module(mine, [shared/1]).\nshared(5).\nsolve(1).")
    assert pool.run("solve(X) :- shared(X).").status == "undefined_predicate"


def test_isolation_initialization(pool):
    pool.run(":- initialization(writeln(leaked)).\nsolve(1).")
    assert pool.run("solve(X) :- X = 2.").output == ""


def test_isolation_every_worker(pool):
    # Each of the two workers loads the definition, then neither keeps it.
    pool.run_many(["kept(1).\nsolve(1)."] * 4)
    results = pool.run_many(["solve(X) :- kept(X)."] * 4)
    assert [r.status for r in results] == ["undefined_predicate"] * 4


def test_run_many_order(pool):
    programs = [f"solve(X) :- X is {i} * 11." for i in range(50)]
    values = [r.value() for r in pool.run_many(programs)]
    assert values == [i * 11 for i in range(50)]


def test_run_many_empty(pool):
    assert pool.run_many([]) == []


def test_run_many_query(pool):
    results = pool.run_many(["ans(1).", "ans(2)."], query="ans(A)")
    assert [r.value("A") for r in results] == [1, 2]


def test_threads_share_pool(pool):
    results: dict[int, PrologResult] = {}

    def work(i: int) -> None:
        results[i] = pool.run(f"solve(X) :- X is {i} + 1000.")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {i: r.value() for i, r in results.items()} == {i: i + 1000 for i in range(8)}


def test_result_to_dict(pool):
    row = pool.run(CLPQ + "solve(X) :- {X = 15/2}.").to_dict()
    assert row["status"] == "ok"
    assert row["bindings"] == {"X": "15r2"}


def test_closed_pool_raises():
    pool = PrologPool(workers=1)
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.run("solve(1).")


def test_invalid_workers():
    with pytest.raises(ValueError, match="workers"):
        PrologPool(workers=0)


def test_analyze_cement(pool):
    structure = pool.analyze(CEMENT)
    assert structure.predicates == 5
    assert structure.constraints == 3


def test_analyze_four_constraints(pool):
    structure = pool.analyze(CEMENT_FOUR)
    assert (structure.predicates, structure.constraints) == (5, 4)
    assert structure.valid


def test_analyze_solve_only(pool):
    structure = pool.analyze("solve(X) :- {X = 4}.")
    assert (structure.predicates, structure.constraints) == (0, 1)
    assert not structure.valid


def test_analyze_is_program(pool):
    structure = pool.analyze("solve(X) :- X is 1200/80.")
    assert (structure.predicates, structure.constraints) == (0, 0)


def test_analyze_syntax_error(pool):
    structure = pool.analyze("a(1).\nsolve(X) :- {X = 4.\n")
    assert structure == ProgramStructure(0, 0, structure.syntax_error)
    assert "Syntax error" in structure.syntax_error


def test_analyze_does_not_execute(pool):
    structure = pool.analyze(":- halt.\nfact(1).\nfact(2).\nsolve(X) :- fact(X).")
    assert structure.predicates == 2
    assert pool.run("solve(X) :- X = 3.").value() == 3


def test_analyze_nested_curly(pool):
    assert pool.analyze("p :- X = {{a}}, q(X).").constraints == 2


def test_analyze_many_order(pool):
    programs = ["a.\nb.\nsolve(1).", "solve(X) :- {X = 1}, {X = 1}."]
    counts = [(s.predicates, s.constraints) for s in pool.analyze_many(programs)]
    assert counts == [(2, 0), (0, 2)]


def test_shared_pool_reused():
    first = shared_pool(workers=1)
    second = shared_pool()
    assert first is second
    assert first.run("solve(X) :- X = 5.").value() == 5


def test_reference_cement():
    assert run_reference(CEMENT) == "13000"


def test_reference_rational():
    assert run_reference(CLPQ + "solve(X) :- {X = 15/2}.") == "15r2"


def test_reference_unbound():
    assert run_reference(CLPQ + "solve(X) :- {Y = 1}.").startswith("_")


def test_reference_missing_solve():
    assert run_reference("answer(1).") is None


def test_reference_timeout():
    assert run_reference("solve(X) :- loop. loop :- loop.", timeout=1.0) is None


def test_syntax_error_query_still_runs(pool):
    # The unparsable clause is skipped, as plain swipl does, and the query runs.
    # Without library(clpfd), #= is not an operator.
    result = pool.run("helper(N) :- N #= 3.\nsolve(7).\n")
    assert result.status == "syntax_error"
    assert result.query_status == "ok"
    assert result.value() == 7


def test_syntax_error_reference_agrees():
    assert run_reference("helper(N) :- N #= 3.\nsolve(7).\n") == "7"


def test_query_status_defaults_to_status(pool):
    assert pool.run("solve(X) :- X = 1, X = 2.").query_status == "fail"


def test_clpr_float_value(pool):
    result = pool.run(":- use_module(library(clpr)).\nsolve(X) :- {X = 3/2}.")
    assert result.value() == 1.5
    assert result.text() == "1.5"


def test_clpfd_labeling(pool):
    program = (
        ":- use_module(library(clpfd)).\nsolve(X) :- X in 1..10, X #> 8, label([X])."
    )
    assert pool.run(program).value() == 9


def test_library_autoload(pool):
    program = "solve(X) :- numlist(1, 4, L), sum_list(L, S), nth1(2, L, N), X is S + N."
    assert pool.run(program).value() == 12


def test_failed_library_load_replaces_worker():
    # library(persistency) cannot load under the sandbox and would stay half-loaded.
    with PrologPool(workers=1, time_limit=5.0) as single:
        result = single.run(":- use_module(library(persistency)).\nsolve(1).")
        restarts = single.restarts
        after = single.run("solve(X) :- X = 3.")
    assert result.status == "unsafe"
    assert restarts == 1
    assert after.value() == 3


def test_directive_error_query_still_runs(pool):
    result = pool.run(":- X is foo + 1.\nsolve(7).\n")
    assert result.status == "error"
    assert result.query_status == "ok"
    assert result.value() == 7


def test_directive_undefined_query_still_runs(pool):
    result = pool.run(":- missing_goal.\nsolve(7).\n")
    assert result.status == "undefined_predicate"
    assert result.query_status == "ok"
    assert result.value() == 7


def test_unsafe_directive_query_not_run(pool):
    result = pool.run(":- shell(ls).\nsolve(7).\n")
    assert result.status == "unsafe"
    assert result.query_status == "unsafe"
    assert result.bindings == {}


def test_load_output_before_query_output(pool):
    program = (
        ":- format('a~n').\n:- initialization(write(b)).\nsolve(X) :- write(c), X = 1."
    )
    assert pool.run(program).output == "a\nbc"


def test_directive_error_reference_agrees():
    assert run_reference(":- X is foo + 1.\nsolve(7).\n") == "7"


def test_run_time_limit_not_positive(pool):
    with pytest.raises(ValueError, match="time_limit must be positive"):
        pool.run("solve(1).", time_limit=0)
