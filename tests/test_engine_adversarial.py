"""Hostile programs: exact status, no file touched, and a working pool afterwards."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from provex.prolog.engine import PrologPool

# Placeholders: {target} is a path the program tries to create or delete,
# {evil} an existing Prolog file it tries to load.
HOSTILE = [
    ("halt_body", "solve(X) :- halt.", "unsafe"),
    ("halt_status", "solve(X) :- halt(3).", "unsafe"),
    ("halt_directive", ":- halt.\nsolve(1).", "unsafe"),
    ("halt_initialization", ":- initialization(halt).\nsolve(1).", "unsafe"),
    (
        "halt_initialization_main",
        ":- initialization(solve(_), main).\nsolve(1).",
        "unsafe",
    ),
    ("halt_through_call", "solve(X) :- G = halt, call(G).", "unsafe"),
    ("halt_through_univ", "solve(X) :- G =.. [halt, 0], call(G).", "unsafe"),
    ("halt_in_catch", "solve(X) :- catch(halt, _, true).", "unsafe"),
    ("shell", "solve(X) :- shell('touch {target}').", "unsafe"),
    ("shell_status", "solve(X) :- shell('touch {target}', X).", "unsafe"),
    (
        "process_create",
        ":- use_module(library(process)).\n"
        "solve(X) :- process_create(path(touch), ['{target}'], []).",
        "unsafe",
    ),
    (
        "open_write",
        "solve(X) :- open('{target}', write, S), write(S, x), close(S).",
        "unsafe",
    ),
    ("tell_write", "solve(X) :- tell('{target}'), write(x), told.", "unsafe"),
    ("read_file", "solve(X) :- read_file_to_string('/etc/passwd', X, []).", "unsafe"),
    (
        "open_read",
        "solve(X) :- open('/etc/passwd', read, S), read_term(S, X, []).",
        "unsafe",
    ),
    ("see_read", "solve(X) :- see('/etc/passwd'), read(X).", "unsafe"),
    ("delete_file", "solve(X) :- delete_file('{evil}').", "unsafe"),
    (
        "socket",
        ":- use_module(library(socket)).\n"
        "solve(X) :- tcp_connect('127.0.0.1':9, S, []), X = S.",
        "unsafe",
    ),
    (
        "http",
        ":- use_module(library(http/http_open)).\n"
        "solve(X) :- http_open('http://127.0.0.1:9/', X, []).",
        "unsafe",
    ),
    ("consult_goal", "solve(X) :- consult('{evil}'), X = 1.", "unsafe"),
    ("consult_directive", ":- consult('{evil}').\nsolve(1).", "unsafe"),
    ("include_directive", ":- include('{evil}').\nsolve(1).", "unsafe"),
    ("ensure_loaded", ":- ensure_loaded('{evil}').\nsolve(1).", "unsafe"),
    ("infinite_loop", "solve(X) :- loop.\nloop :- loop.", "inference_limit"),
    (
        "catch_all_once",
        "solve(X) :- catch(l, _, true).\nl :- repeat, _ is 3^100000, fail.",
        "timeout",
    ),
    (
        "catch_all_forever",
        "solve(X) :- p.\np :- catch(q, _, true), p.\nq :- q.",
        "timeout",
    ),
    ("directive_loop", ":- between(1, inf, _), fail.\nsolve(1).", "timeout"),
    (
        "initialization_loop",
        ":- initialization((between(1, inf, _), fail)).\nsolve(1).",
        "timeout",
    ),
    (
        "directive_catch_all",
        "l :- repeat, _ is 3^100000, fail.\n:- catch(l, _, true).\nsolve(1).",
        "timeout",
    ),
    (
        "deep_recursion",
        "solve(X) :- f(X).\nf(N) :- f(M), N is M + 1.",
        "resource_error",
    ),
    ("huge_list", "solve(X) :- length(X, 500000000).", "resource_error"),
    ("huge_integer", "solve(X) :- X is 2^(2^36).", "resource_error"),
    (
        "atom_table_bomb",
        "solve(X) :- between(1, inf, N), atom_concat(a, N, _), fail.",
        "timeout",
    ),
    ("output_bomb", "solve(X) :- repeat, write(aaaaaaaaaaaaaaaa), fail.", "timeout"),
    ("thread_create", "solve(X) :- thread_create(true, X, []).", "unsafe"),
    ("mutex", "solve(X) :- with_mutex(m, X = 1).", "unsafe"),
    ("set_flag", "solve(X) :- set_prolog_flag(occurs_check, true), X = 1.", "unsafe"),
    (
        "set_flag_directive",
        ":- set_prolog_flag(double_quotes, codes).\nsolve(1).",
        "unsafe",
    ),
    ("nb_setval", "solve(X) :- nb_setval(key, 1), X = 1.", "unsafe"),
    ("b_setval", "solve(X) :- b_setval(key, 1), X = 1.", "unsafe"),
    ("assert_rule", "solve(X) :- assertz((q :- true)), X = 1.", "unsafe"),
    ("assert_other_module", "solve(X) :- assertz(user:q(1)), X = 1.", "unsafe"),
    ("clause_other_module", "user:q(1).\nsolve(1).", "unsafe"),
    ("global_operator", ":- op(700, xfx, user:(===>)).\nsolve(1).", "unsafe"),
    ("read_stdin", "solve(X) :- read(X).", "unsafe"),
    ("read_user_input", "solve(X) :- read_term(user_input, X, []).", "unsafe"),
    ("get_char_stdin", "solve(X) :- get_char(X).", "unsafe"),
    ("write_user_error", "solve(X) :- write(user_error, x), X = 1.", "unsafe"),
    ("setenv", "solve(X) :- setenv(provex_attack, 1), X = 1.", "unsafe"),
    ("malformed_utf8_in_code", "solve(X) :- X = 1 \udcff\udcfe.", "syntax_error"),
    (
        "ten_megabyte_program",
        "fact(1).\n" * 1_250_000 + "solve(X) :- fact(X).",
        "resource_error",
    ),
]

# Squaring a 64 MiB integer makes GMP's allocation fail under a 400 MiB
# address-space limit, and GMP aborts the worker process.
CRASH = "solve(X) :- X is 2^(2^29), Y is X*X, Y > 0."

ANSWERS = itertools.count(1000)


# A 32 MiB stack makes runaway recursion overflow well within the time limit.
LIMITS = dict(
    workers=1,
    time_limit=0.5,
    hard_time_limit=1.5,
    memory_limit=400 * 1024**2,
    stack_limit=32 * 1024**2,
)


@pytest.fixture(scope="module")
def pool():
    with PrologPool(**LIMITS) as pool:
        yield pool


@pytest.fixture(scope="module")
def timing_pool():
    # An inference limit that no loop reaches within the time limit, so that the
    # timeout cases end by time on a fast, idle machine too.
    with PrologPool(**LIMITS, inference_limit=10**11) as pool:
        yield pool


@pytest.fixture(scope="module")
def arena(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arena")
    (path / "evil.pl").write_text("solve(666).\n")
    return path


def _check_sandbox(pool: PrologPool, arena: Path) -> None:
    assert sorted(os.listdir(arena)) == ["evil.pl"]
    assert os.listdir(pool.workdir) == []


def _check_recovery(pool: PrologPool) -> None:
    answer = next(ANSWERS)
    result = pool.run(f"solve(X) :- X is {answer} * 7.")
    assert result.status == "ok"
    assert result.value() == answer * 7


@pytest.mark.parametrize(("name", "program", "status"), HOSTILE)
def test_hostile_program(pool, timing_pool, arena, name, program, status):
    target = arena / f"{name}.out"
    text = program.replace("{target}", str(target)).replace(
        "{evil}", str(arena / "evil.pl")
    )
    # Only the timeout cases run under the short limit. The others get a generous
    # one, so that a busy machine or a first library load cannot turn them into
    # timeouts, and loops reach the inference limit first.
    if status == "timeout":
        pool = timing_pool
    time_limit = None if status == "timeout" else 5.0
    result = pool.run(text, time_limit=time_limit)
    assert result.status == status, result.error
    _check_sandbox(pool, arena)
    _check_recovery(pool)


def test_hostile_suite_size():
    assert len(HOSTILE) >= 30


def test_gmp_abort_crashes_worker(arena):
    with PrologPool(workers=1, time_limit=2.0, memory_limit=400 * 1024**2) as pool:
        before = pool.worker_pids()
        result = pool.run(CRASH)
        after = pool.worker_pids()
        assert result.status == "crashed"
        assert before != after
        _check_sandbox(pool, arena)
        _check_recovery(pool)


@pytest.mark.parametrize("query", ["halt", "halt(0)", "solve(X), halt", "shell(ls)"])
def test_hostile_query(pool, arena, query):
    assert pool.run("solve(1).", query).status == "unsafe"
    _check_sandbox(pool, arena)
    _check_recovery(pool)


def test_catch_all_forever_restarts(arena):
    with PrologPool(workers=1, time_limit=0.3, hard_time_limit=1.0) as pool:
        before = pool.worker_pids()
        result = pool.run("solve(X) :- p.\np :- catch(q, _, true), p.\nq :- q.")
        after = pool.worker_pids()
        assert result.status == "timeout"
        assert result.error.startswith("hard time limit")
        assert pool.restarts == 1
        assert before != after
        _check_recovery(pool)


def test_malformed_utf8_in_atom(pool):
    program = b"solve(X) :- X = '\xff\xfe'.".decode("utf-8", errors="surrogateescape")
    result = pool.run(program)
    assert result.status == "ok"
    assert result.text() == "??"


def test_output_bomb_output_dropped(pool):
    result = pool.run("solve(X) :- repeat, write(aaaaaaaaaaaaaaaa), fail.")
    assert result.output == ""


def test_worker_stdout_is_not_protocol(pool):
    # Writes that reach the real standard output must not corrupt replies.
    result = pool.run("solve(X) :- format(user_output, 'x~n', []).")
    assert result.status == "unsafe"
    _check_recovery(pool)
