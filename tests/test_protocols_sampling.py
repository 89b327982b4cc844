"""Single and best-of-N protocols against a scripted model and real SWI-Prolog."""

from __future__ import annotations

import pytest

from provex.prolog.engine import PrologPool
from provex.prolog.generation import SamplingParams, ScriptedGenerator
from provex.prolog.protocols import (
    BestOfN,
    Executor,
    Question,
    Single,
    build_protocol,
    run_episodes,
)

IMPORT = ":- use_module(library(clpq)).\n"


def answer(body: str) -> str:
    return f"<reasoning>\nsteps\n</reasoning>\n<answer>\n{IMPORT}{body}\n</answer>"


RIGHT = answer("solve(X) :- {X = 4}.")
WRONG = answer("solve(X) :- {X = 5}.")
RATIONAL = answer("solve(X) :- {X = 15/2}.")
UNBOUND = answer("solve(X) :- true.")
SYNTAX = answer("solve(X) :- {X = .")
NO_ANSWER = "<reasoning>\nno program here\n</reasoning>"
QUESTION = Question("q1", "Q", 4)


@pytest.fixture(scope="module")
def executor():
    with PrologPool(workers=1, time_limit=2.0) as pool:
        yield Executor(pool)


def run_one(protocol, script, executor, question=QUESTION):
    generator = ScriptedGenerator(script)
    outcome = run_episodes([protocol.start(question, executor)], generator)[0]
    return outcome, generator


def test_single_correct(executor):
    outcome, _ = run_one(Single("S"), [RIGHT], executor)
    assert outcome.prediction == 4.0
    assert outcome.correct
    assert outcome.success_attempt == 1


def test_single_rational_fails(executor):
    outcome, _ = run_one(Single("S"), [RATIONAL], executor)
    assert outcome.prediction is None
    assert outcome.attempts[0].error_class == "rational"
    assert outcome.attempts[0].result_text == "15r2"
    assert outcome.stop_reason == "attempts_exhausted"


def test_single_prompt_plain(executor):
    _, generator = run_one(Single("S"), [RIGHT], executor)
    assert generator.calls[0][0] == "(SYSTEM) S\n(USER) Q"


def test_single_default_sampling(executor):
    _, generator = run_one(Single("S"), [RIGHT], executor)
    params = generator.calls[0][1]
    assert params.temperature == 0.2
    assert params.top_p == 0.95
    assert params.max_tokens == 1024
    assert params.stop == ("</answer>",)


def test_single_few_shot_prompt(executor):
    protocol = Single("S", few_shot=[("U1", "A1")])
    _, generator = run_one(protocol, [RIGHT], executor)
    assert generator.calls[0][0] == "(SYSTEM) S\n(USER) U1\n(ASSISTANT) A1\n(USER) Q"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (SYNTAX, "syntax_error"),
        (UNBOUND, "unbound"),
        (NO_ANSWER, "no_code"),
        (WRONG, "wrong"),
    ],
)
def test_single_error_classes(executor, text, expected):
    outcome, _ = run_one(Single("S"), [text], executor)
    assert outcome.attempts[0].error_class == expected


def test_best_of_n_stops_at_first_number(executor):
    # The 3rd attempt gives 5: a number, though wrong, so sampling stops there.
    script = [RATIONAL, UNBOUND, WRONG, RIGHT]
    outcome, generator = run_one(BestOfN("S", n=5), script, executor)
    assert len(generator.calls) == 3
    assert outcome.prediction == 5.0
    assert not outcome.correct
    assert outcome.success_attempt == 3
    assert outcome.stop_reason == "numeric"


def test_best_of_n_gives_up_after_n(executor):
    protocol = BestOfN("S", n=3)
    generator = ScriptedGenerator([RATIONAL], repeat_last=True)
    outcome = run_episodes([protocol.start(QUESTION, executor)], generator)[0]
    assert len(generator.calls) == 3
    assert outcome.prediction is None
    assert outcome.stop_reason == "attempts_exhausted"
    assert outcome.attempts[-1].events == ["give_up"]


def test_best_of_n_same_prompt_each_attempt(executor):
    _, generator = run_one(BestOfN("S", n=3), [RATIONAL, UNBOUND, RIGHT], executor)
    prompts = {prompt for prompt, _ in generator.calls}
    assert prompts == {"(SYSTEM) S\n(USER) Q"}


def test_best_of_n_seed_advances(executor):
    protocol = BestOfN("S", n=3, params=SamplingParams(seed=7))
    _, generator = run_one(protocol, [RATIONAL, UNBOUND, RIGHT], executor)
    assert [params.seed for _, params in generator.calls] == [7, 8, 9]


def test_majority_vote_picks_mode(executor):
    protocol = BestOfN("S", n=5, selection="majority")
    script = [WRONG, RIGHT, RATIONAL, RIGHT, SYNTAX]
    outcome, generator = run_one(protocol, script, executor)
    assert outcome.prediction == 4.0
    assert outcome.success_attempt == 2
    assert len(outcome.attempts) == 5
    assert generator.calls[0][1].n == 5


def test_majority_tie_goes_to_first(executor):
    protocol = BestOfN("S", n=2, selection="majority")
    outcome, _ = run_one(protocol, [WRONG, RIGHT], executor)
    assert outcome.prediction == 5.0


def test_majority_without_numbers(executor):
    protocol = BestOfN("S", n=2, selection="majority")
    outcome, _ = run_one(protocol, [RATIONAL, SYNTAX], executor)
    assert outcome.prediction is None
    assert outcome.stop_reason == "no_numeric"


def test_episodes_share_batches(executor):
    protocol = BestOfN("S", n=2)
    questions = [Question("a", "QA", 4), Question("b", "QB", 4)]

    def script(prompt, params):
        return RIGHT if prompt.endswith("QA") else RATIONAL

    generator = ScriptedGenerator(script)
    episodes = [protocol.start(q, executor) for q in questions]
    outcomes = run_episodes(episodes, generator)
    assert generator.batches == [2, 1]
    assert outcomes[0].correct
    assert outcomes[1].stop_reason == "attempts_exhausted"


def test_build_protocol_rejects_unknown():
    with pytest.raises(ValueError, match="unknown protocol 'beam'"):
        build_protocol("beam", "S")


def test_best_of_n_rejects_bad_selection():
    with pytest.raises(ValueError, match="unknown selection"):
        BestOfN("S", selection="vote")


def test_parallel_feed_same_outcomes(executor):
    protocol = BestOfN("S", n=3)
    questions = [Question(f"q{i}", f"Q{i}", 4) for i in range(6)]

    def script(prompt, params):
        return RIGHT if int(prompt[-1]) % 2 else RATIONAL

    episodes = [protocol.start(q, executor) for q in questions]
    outcomes = run_episodes(episodes, ScriptedGenerator(script), workers=2)
    assert [o.correct for o in outcomes] == [False, True] * 3
    assert [len(o.attempts) for o in outcomes] == [3, 1] * 3
