"""Correctness and structure rewards, run through the real Prolog pool."""

import pytest

from provex.prolog.engine import PrologPool
from provex.prolog.rewards import (
    RewardConfig,
    make_correctness_reward,
    make_structure_reward,
)

CLPQ = ":- use_module(library(clpq)).\n"


def wrap(program: str) -> str:
    return f"<reasoning>\nr\n</reasoning>\n<answer>\n{program}\n</answer>\n"


@pytest.fixture(scope="module")
def pool():
    with PrologPool(workers=2, time_limit=1.0) as pool:
        yield pool


FOUR = wrap(CLPQ + "solve(X) :- {X = 2 + 2}.")
HALF = wrap(CLPQ + "solve(X) :- {X = 15/2}.")
UNBOUND = wrap("solve(X) :- true.")
SYNTAX = wrap("solve(X :- .")
# The reference reads the last output line, so text printed before the value
# spoils it, and a clause that does not parse is skipped while solve/1 still runs.
PRINTED = wrap(CLPQ + 'solve(X) :- {X = 4}, format("X = ", []).')
SKIPPED_CLAUSE = wrap(CLPQ + "helper(N) :- N #= 3.\nsolve(X) :- {X = 4}.")


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        (FOUR, "4", 2.0),
        (FOUR, "5", 1.0),
        (HALF, "7.5", 0.5),
        (UNBOUND, "4", 0.5),
        (SYNTAX, "4", 0.5),
        ("no answer block", "4", 0.5),
        ("", "4", 0.5),
        (FOUR, None, 0.5),
        (FOUR, "4.0000001", 2.0),
        (FOUR, "4.00001", 1.0),
        (PRINTED, "4", 0.5),
        (SKIPPED_CLAUSE, "4", 2.0),
    ],
    ids=[
        "correct",
        "wrong",
        "rational",
        "unbound",
        "syntax",
        "no_block",
        "empty",
        "no_gold",
        "within_tolerance",
        "outside_tolerance",
        "printed_before_value",
        "unparsable_clause_skipped",
    ],
)
def test_correctness_values(pool, completion, gold, expected):
    reward = make_correctness_reward(pool=pool)
    assert reward([completion], numerical_result=[gold]) == [expected]


def test_correctness_batch_keeps_order(pool):
    reward = make_correctness_reward(pool=pool)
    scores = reward([FOUR, "x", FOUR, HALF], numerical_result=["4", "4", "3", "4"])
    assert scores == [2.0, 0.5, 1.0, 0.5]


def test_correctness_conversational(pool):
    reward = make_correctness_reward(pool=pool)
    completion = [{"role": "assistant", "content": FOUR}]
    assert reward([completion], numerical_result=["4"]) == [2.0]


def test_correctness_configurable(pool):
    config = RewardConfig(correct_score=1.0, numeric_score=0.0, fallback_score=0.0)
    reward = make_correctness_reward(config, pool=pool)
    assert reward([FOUR, FOUR, "x"], numerical_result=["4", "5", "4"]) == [1.0, 0, 0]


def test_correctness_gold_length_mismatch(pool):
    reward = make_correctness_reward(pool=pool)
    with pytest.raises(ValueError, match="numerical_result has 1 values"):
        reward([FOUR, FOUR], numerical_result=["4"])


def test_correctness_default_shared_pool():
    reward = make_correctness_reward()
    assert reward([FOUR], numerical_result=["4"]) == [2.0]


def test_correctness_name():
    assert make_correctness_reward().__name__ == "correctness_reward_func"


TWO_FACTS = CLPQ + "a(2).\nb(3).\nsolve(X) :- a(A), b(B), {Y = A * B}, {X = Y + 1}."
FOUR_FACTS = CLPQ + "a(1).\nb(1).\nc(1).\nd(1).\nsolve(X) :- a(X), {X = 1}."


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (wrap(TWO_FACTS), 1.1),  # min(0.6, 1) + min(1.0, 0.5)
        (wrap(FOUR_FACTS), 1.5),  # min(1.2, 1) + min(0.5, 0.5)
        (wrap(CLPQ + "solve(X) :- {X = 4}."), 0.1),  # 0.5 * 0.2
        (wrap(CLPQ + "n(3).\nsolve(X) :- {X = 4}."), 0.16),  # (0.3 + 0.5) * 0.2
        (wrap("solve(X) :- X is 1200/80."), 0.0),
        (wrap("p(1).\nsolve(X :- ."), 0.0),
        ("no answer block", 0.0),
    ],
    ids=[
        "two_facts",
        "four_facts",
        "hardcoded",
        "hardcoded_fact",
        "is",
        "syntax",
        "none",
    ],
)
def test_structure_values(pool, completion, expected):
    reward = make_structure_reward(pool=pool)
    assert reward([completion]) == [pytest.approx(expected)]


def test_structure_configurable(pool):
    config = RewardConfig(hardcode_factor=1.0)
    reward = make_structure_reward(config, pool=pool)
    assert reward([wrap(CLPQ + "solve(X) :- {X = 4}.")]) == [pytest.approx(0.5)]


def test_rewards_accept_trl_keywords(pool):
    from types import SimpleNamespace

    from provex.prolog.rewards import get_preset

    completion = [{"role": "assistant", "content": FOUR}]
    trl_kwargs = {
        "prompts": [[{"role": "user", "content": "q"}]],
        "completion_ids": [[1, 2, 3]],
        "answer": [CLPQ + "solve(X) :- {X = 4}."],
        "numerical_result": ["4"],
        "question": ["q"],
        "trainer_state": SimpleNamespace(global_step=0, max_steps=10),
        "log_extra": lambda *args: None,
        "log_metric": lambda *args: None,
    }
    scores = [f([completion], **trl_kwargs)[0] for f in get_preset("suite1", pool=pool)]
    assert scores == [0.5, 0.5, 0.5, 1.0, 2.0]
