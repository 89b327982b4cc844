"""Agentic protocols against a scripted model and real SWI-Prolog: every branch."""

from __future__ import annotations

import json

import pytest

from provex.prolog.engine import PrologPool
from provex.prolog.generation import ScriptedGenerator
from provex.prolog.protocols import (
    AgenticConfig,
    AgenticProtocol,
    Executor,
    Question,
    parse_tool_call,
    prepare_tool_program,
    run_episodes,
)
from provex.prolog.protocols.agentic import (
    NOTE_CONCISE,
    NOTE_EMPTY,
    NOTE_FRESH,
    NOTE_TOO_LONG,
)

IMPORT = ":- use_module(library(clpq)).\n"
BASE_PROMPT = "(SYSTEM) S\n\n(USER) Solve this problem: Q"


def answer(body: str) -> str:
    return f"<reasoning>\nsteps\n</reasoning>\n<answer>\n{IMPORT}{body}\n</answer>"


def tool_call(payload: str) -> str:
    return f"<reasoning>\ncheck\n</reasoning>\n<tool_call>{payload}</tool_call>"


RIGHT = answer("solve(X) :- {X = 4}.")
FAIL_1 = answer("solve(X) :- {X = 15/2}.")
FAIL_2 = answer("solve(X) :- {X = 17/2}.")
FAIL_3 = answer("solve(X) :- {X = 19/2}.")
QUESTION = Question("q1", "Q", 4)


@pytest.fixture(scope="module")
def executor():
    with PrologPool(workers=1, time_limit=2.0) as pool:
        yield Executor(pool)


def run_agentic(script, executor, independent=False, count_tokens=None, **config):
    protocol = AgenticProtocol(
        "S",
        independent=independent,
        config=AgenticConfig(**config),
        count_tokens=count_tokens,
    )
    generator = ScriptedGenerator(script)
    outcome = run_episodes([protocol.start(QUESTION, executor)], generator)[0]
    prompts = [prompt for prompt, _ in generator.calls]
    temperatures = [params.temperature for _, params in generator.calls]
    return outcome, prompts, temperatures


# --- agentic-internal ------------------------------------------------------


def test_internal_first_success(executor):
    outcome, prompts, _ = run_agentic([RIGHT], executor)
    assert outcome.prediction == 4.0
    assert outcome.correct
    assert len(outcome.attempts) == 1
    assert prompts == [BASE_PROMPT]


def test_internal_turn_sampling(executor):
    protocol = AgenticProtocol("S")
    generator = ScriptedGenerator([RIGHT])
    run_episodes([protocol.start(QUESTION, executor)], generator)
    params = generator.calls[0][1]
    assert params.max_tokens == 512
    assert params.top_p == 0.95
    assert params.stop == ("</answer>",)


def test_internal_feedback_then_reset(executor):
    outcome, prompts, _ = run_agentic([FAIL_1, FAIL_2, FAIL_3, RIGHT], executor)
    assert [a.events for a in outcome.attempts[:3]] == [
        ["feedback"],
        ["feedback"],
        ["reset:failures"],
    ]
    assert "did not give a number (result: X = 15r2" in prompts[1]
    assert prompts[2].count("(USER) Running your program") == 2
    assert prompts[3] == f"{BASE_PROMPT}\n\n(SYSTEM) {NOTE_FRESH}"
    assert outcome.success_attempt == 4


def test_internal_temperature_sequence(executor):
    outcome, prompts, temperatures = run_agentic([FAIL_1] * 10, executor, max_turns=10)
    expected = [0.2, 0.2, 0.2, 0.23, 0.23, 0.2645, 0.2645, 0.3, 0.2, 0.23]
    assert temperatures == pytest.approx(expected)
    assert outcome.stop_reason == "turns_exhausted"


def test_internal_duplicate_actions(executor):
    outcome, prompts, _ = run_agentic([FAIL_1] * 10, executor, max_turns=10)
    events = [a.events for a in outcome.attempts]
    assert events[1] == ["rerun_duplicate", "feedback"]
    assert events[2] == ["shake"]
    assert events[3] == ["rerun_duplicate", "reset:failures"]
    assert events[5] == ["reminder"]
    assert events[7] == ["reset:duplicates"]


def test_internal_duplicate_reminder(executor):
    _, prompts, _ = run_agentic([FAIL_1] * 10, executor, max_turns=10)
    assert "REMINDER" not in prompts[5]
    assert "(SYSTEM) REMINDER" in prompts[6]
    assert "solve(X) :- {X = final_number}." in prompts[6]


def test_internal_duplicate_skips_execution(executor):
    outcome, _, _ = run_agentic([FAIL_1] * 3, executor, max_turns=3)
    third = outcome.attempts[2]
    assert third.action == "duplicate"
    assert third.error_class is None
    assert third.prolog_seconds == 0.0


def test_internal_duplicate_limit(executor):
    outcome, _, _ = run_agentic([FAIL_1] * 3, executor, max_duplicates=2)
    assert outcome.stop_reason == "duplicate_limit"
    assert len(outcome.attempts) == 3


def test_internal_new_answer_resets_temperature(executor):
    script = [FAIL_1, FAIL_1, FAIL_1, FAIL_2]
    _, _, temperatures = run_agentic(script + [RIGHT], executor)
    assert temperatures == pytest.approx([0.2, 0.2, 0.2, 0.23, 0.2])


def test_internal_empty_hint(executor):
    outcome, prompts, temperatures = run_agentic(["", RIGHT], executor)
    assert temperatures == pytest.approx([0.2, 0.276])
    assert prompts[1] == f"{BASE_PROMPT}\n\n(SYSTEM) {NOTE_EMPTY}"
    assert outcome.attempts[0].action == "empty"


def test_internal_second_empty_resets(executor):
    outcome, prompts, temperatures = run_agentic(["", "  ", RIGHT], executor)
    assert temperatures == pytest.approx([0.2, 0.276, 0.2])
    assert prompts[2] == BASE_PROMPT
    assert outcome.attempts[1].events == ["reset:empty"]


def test_internal_empty_limit(executor):
    outcome, _, _ = run_agentic(["", "", "", RIGHT], executor, empty_retries=3)
    assert outcome.stop_reason == "empty_limit"
    assert len(outcome.attempts) == 3


def test_internal_no_answer_continues(executor):
    reply = "<reasoning>\nthinking\n</reasoning>"
    outcome, prompts, _ = run_agentic([reply, RIGHT], executor)
    assert outcome.attempts[0].action == "no_answer"
    assert prompts[1] == f"{BASE_PROMPT}\n\n(ASSISTANT) {reply}"


def test_internal_turn_budget(executor):
    outcome, prompts, _ = run_agentic(
        [FAIL_1, FAIL_2, FAIL_3, RIGHT], executor, max_turns=2
    )
    assert outcome.stop_reason == "turns_exhausted"
    assert len(prompts) == 2
    assert outcome.attempts[-1].events == ["feedback", "give_up"]


def ten_per_message(chat):
    return 10 * len(chat.messages)


def test_internal_budget_cut_before_turn(executor):
    # base 20 tokens; after reply and feedback 40 > 0.95 * 40, so the next turn
    # starts from system, user and the brevity note.
    outcome, prompts, _ = run_agentic(
        [FAIL_1, RIGHT], executor, count_tokens=ten_per_message, token_budget=40
    )
    assert prompts[1] == f"{BASE_PROMPT}\n\n(SYSTEM) {NOTE_CONCISE}"
    assert outcome.attempts[0].events == ["feedback", "reset:budget"]


def test_internal_overflow_after_reply(executor):
    # base 20 + reply 10 = 30 > 25: reset, but the reply is still run.
    outcome, prompts, _ = run_agentic(
        [FAIL_1, RIGHT], executor, count_tokens=ten_per_message, token_budget=25
    )
    assert outcome.attempts[0].events[:2] == ["reset:overflow", "feedback"]
    assert outcome.attempts[0].error_class == "rational"
    assert outcome.correct


def heavy_fail_1(chat):
    """One token per message, plus 100 while FAIL_1's reply is in the dialogue."""
    heavy = any(
        "15/2" in m["content"] and m["role"] == "assistant" for m in chat.messages
    )
    return len(chat.messages) + (100 if heavy else 0)


def test_internal_overflow_note(executor):
    _, prompts, _ = run_agentic(
        [FAIL_1, RIGHT], executor, count_tokens=heavy_fail_1, token_budget=50
    )
    assert prompts[1].startswith(f"{BASE_PROMPT}\n\n(SYSTEM) {NOTE_TOO_LONG}")
    assert "(USER) Running your program" in prompts[1]


# --- tool calls --------------------------------------------------------------


def test_tool_call_runs_and_feeds_back(executor):
    call = tool_call(
        '{"name": "run_prolog", "arguments": {"code": "solve(X) :- {X = 2+2}."}}'
    )
    outcome, prompts, _ = run_agentic([call, RIGHT], executor)
    assert outcome.attempts[0].action == "tool_call"
    assert prompts[1].endswith("(TOOL) 4")
    assert outcome.success_attempt == 2


def test_tool_call_wraps_solve(executor):
    call = tool_call(
        '{"name": "run_prolog", "arguments": {"code": "total(T) :- {T = 3*3}."}}'
    )
    _, prompts, _ = run_agentic([call, RIGHT], executor)
    assert prompts[1].endswith("(TOOL) 9")


def test_tool_call_string_arguments(executor):
    arguments = json.dumps(json.dumps({"code": "solve(X) :- {X = 6}."}))
    call = tool_call(f'{{"name": "run_prolog", "arguments": {arguments}}}')
    _, prompts, _ = run_agentic([call, RIGHT], executor)
    assert prompts[1].endswith("(TOOL) 6")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"name": "run_prolog", "arguments": {"code": ', "not valid JSON"),
        ('{"name": "run_prolog", "arguments": [{"code": "solve(4)."}]}', "not a list"),
        ('{"name": "python", "arguments": {"code": "1"}}', "unknown tool 'python'"),
        (
            '{"name": "run_prolog", "arguments": {"program": "x"}}',
            'no non-empty "code"',
        ),
        ('["run_prolog"]', "must be a JSON object"),
    ],
)
def test_malformed_tool_call_feedback(executor, payload, message):
    outcome, prompts, _ = run_agentic([tool_call(payload), RIGHT], executor)
    assert outcome.attempts[0].action == "bad_tool_call"
    assert "(TOOL) The tool call was not run: " in prompts[1]
    assert message in prompts[1]
    assert outcome.correct


def test_unclosed_tool_call_feedback(executor):
    reply = '<tool_call>{"name": "run_prolog"'
    outcome, prompts, _ = run_agentic([reply, RIGHT], executor)
    assert outcome.attempts[0].action == "bad_tool_call"
    assert "not closed" in prompts[1]


def test_unclosed_tool_tag_before_answer_ignored(executor):
    outcome, _, _ = run_agentic(["<tool_call> maybe later\n" + RIGHT], executor)
    assert outcome.correct


def test_parse_tool_call_absent():
    assert parse_tool_call("<answer>solve(4).</answer>") is None


def test_prepare_adds_import():
    assert prepare_tool_program("solve(X) :- {X = 1}.") == (
        ":- use_module(library(clpq)).\nsolve(X) :- {X = 1}."
    )


def test_prepare_keeps_complete_program():
    program = ":- use_module(library(clpq)).\nsolve(X) :- {X = 1}."
    assert prepare_tool_program(program) == program


def test_prepare_wraps_first_unary_rule():
    program = ":- use_module(library(clpq)).\ncost(C) :- {C = 2}.\nf(a, b)."
    assert prepare_tool_program(program).endswith("\nsolve(X) :- cost(X).")


# --- agentic-independent ---------------------------------------------------------


def test_independent_third_failure_new_try(executor):
    outcome, prompts, _ = run_agentic(
        [FAIL_1, FAIL_2, FAIL_3, RIGHT], executor, independent=True
    )
    assert outcome.attempts[2].events == ["end_try:failures"]
    assert prompts[3] == BASE_PROMPT
    assert outcome.tries == 2
    assert outcome.attempts[3].try_index == 1
    assert outcome.correct


def test_independent_feedback_within_try(executor):
    _, prompts, _ = run_agentic([FAIL_1, RIGHT], executor, independent=True)
    assert "(USER) Running your program did not give a number" in prompts[1]


def test_independent_empty_ends_try(executor):
    outcome, prompts, temperatures = run_agentic(
        ["", RIGHT], executor, independent=True
    )
    assert prompts[1] == BASE_PROMPT
    assert temperatures == pytest.approx([0.2, 0.2])
    assert outcome.tries == 2


def test_independent_shared_turn_budget(executor):
    script = [FAIL_1, FAIL_2, FAIL_3] * 2 + [FAIL_1, RIGHT]
    outcome, prompts, _ = run_agentic(script, executor, independent=True, max_turns=7)
    assert len(prompts) == 7
    assert outcome.stop_reason == "turns_exhausted"
    assert outcome.tries == 3
    assert [a.try_index for a in outcome.attempts] == [0, 0, 0, 1, 1, 1, 2]


def test_independent_tracking_per_try(executor):
    # FAIL_1 opens the 2nd try again; it is new there, so it runs without a
    # duplicate mark.
    script = [FAIL_1, FAIL_2, FAIL_3, FAIL_1, RIGHT]
    outcome, _, _ = run_agentic(script, executor, independent=True)
    assert outcome.attempts[3].events == ["feedback"]


def test_independent_overflow_ends_try(executor):
    outcome, prompts, _ = run_agentic(
        [FAIL_1, RIGHT],
        executor,
        independent=True,
        count_tokens=heavy_fail_1,
        token_budget=50,
    )
    assert outcome.attempts[0].action == "overflow"
    assert outcome.attempts[0].events == ["end_try:overflow"]
    assert prompts[1] == BASE_PROMPT


def test_independent_budget_before_turn(executor):
    outcome, prompts, _ = run_agentic(
        [FAIL_1, RIGHT],
        executor,
        independent=True,
        count_tokens=ten_per_message,
        token_budget=40,
    )
    assert outcome.attempts[0].events == ["feedback", "end_try:budget"]
    assert prompts[1] == BASE_PROMPT


def test_independent_duplicate_reset_ends_try(executor):
    outcome, prompts, _ = run_agentic(
        [FAIL_1] * 8 + [RIGHT], executor, independent=True, failures_before_reset=10
    )
    assert outcome.attempts[7].events == ["end_try:duplicates"]
    assert prompts[8] == BASE_PROMPT
    assert outcome.tries == 2
