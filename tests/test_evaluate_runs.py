"""Evaluation runs: logs, summaries, resume, compare, CLI, end to end on tiny models."""

from __future__ import annotations

import json

import pytest

from provex.models import build_tiny_model
from provex.prolog.engine import PrologPool
from provex.prolog.evaluate import (
    LOG_NAME,
    ResumeMismatchError,
    compare_runs,
    evaluate,
    read_log,
    summarize,
)
from provex.prolog.generation import (
    OpenAIGenerator,
    ScriptedGenerator,
    TransformersGenerator,
)
from provex.prolog.protocols import (
    PROTOCOL_NAMES,
    AgenticConfig,
    Executor,
    Question,
    build_protocol,
)
from provex.prolog.serving import OpenAIServer

IMPORT = ":- use_module(library(clpq)).\n"
RIGHT = (
    f"<answer>\n{IMPORT}helper(2).\nsolve(X) :- helper(H), {{X = H * 2}}.\n</answer>"
)
LITERAL = f"<answer>\n{IMPORT}solve(X) :- {{X = 4}}.\n</answer>"
RATIONAL = f"<answer>\n{IMPORT}solve(X) :- {{X = 15/2}}.\n</answer>"
QUESTIONS = [Question(f"q{i}", f"What is 2 + 2? ({i})", 4) for i in range(5)]
ATTEMPT_KEYS = {
    "text",
    "program",
    "status",
    "value",
    "error_class",
    "tokens",
    "gen_seconds",
    "prolog_seconds",
}


@pytest.fixture(scope="module")
def executor():
    with PrologPool(workers=1, time_limit=2.0) as pool:
        yield Executor(pool)


@pytest.fixture(scope="module")
def tiny():
    import torch

    torch.set_num_threads(1)
    model, tokenizer = build_tiny_model()
    return TransformersGenerator(model, tokenizer, batch_size=4)


def small_protocol(name):
    from provex.prolog.generation import SamplingParams

    return build_protocol(
        name,
        "S",
        params=SamplingParams(max_tokens=12),
        n=2,
        agentic=AgenticConfig(max_turns=3, max_tokens=12),
    )


def log_lines(run_dir):
    return [json.loads(line) for line in (run_dir / LOG_NAME).read_text().splitlines()]


# --- end to end on a tiny random model -------------------------------------------

EXPECTED_ATTEMPTS = {
    "single": 1,
    "best-of-n": 2,
    "agentic-internal": 3,
    "agentic-independent": 3,
}


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_transformers_end_to_end(tmp_path, executor, tiny, protocol):
    summary = evaluate(
        QUESTIONS[:2],
        small_protocol(protocol),
        tiny,
        tmp_path,
        executor=executor,
        progress=False,
    )
    records = log_lines(tmp_path)
    # Random weights never write a working program, so every protocol uses its
    # whole attempt budget.
    assert [r["num_attempts"] for r in records] == [EXPECTED_ATTEMPTS[protocol]] * 2
    assert set(records[0]["attempts"][0]) >= ATTEMPT_KEYS
    assert summary.questions == 2
    assert (tmp_path / "summary.png").stat().st_size > 0


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_http_end_to_end(tmp_path, executor, tiny, protocol):
    with OpenAIServer(tiny, model_name="tiny") as server:
        client = OpenAIGenerator(server.base_url, "tiny")
        evaluate(
            QUESTIONS[:2],
            small_protocol(protocol),
            client,
            tmp_path,
            executor=executor,
            progress=False,
        )
        requests = len(server.requests)
    records = log_lines(tmp_path)
    assert [r["num_attempts"] for r in records] == [EXPECTED_ATTEMPTS[protocol]] * 2
    assert requests == 2 * EXPECTED_ATTEMPTS[protocol]


def test_scripted_run_metrics(tmp_path, executor):
    # q0 structured and right, q1 literal and right, q2 rational three times.
    script = {0: [RIGHT], 1: [LITERAL], 2: [RATIONAL] * 3}

    def reply(prompt, params):
        index = int(prompt[-2])
        return script[index].pop(0)

    summary = evaluate(
        QUESTIONS[:3],
        build_protocol("best-of-n", "S", n=3),
        ScriptedGenerator(reply),
        tmp_path,
        executor=executor,
        progress=False,
    )
    assert summary.accuracy == pytest.approx(200 / 3)
    assert summary.structure == pytest.approx(100 / 3)
    assert summary.fully_correct == pytest.approx(100 / 3)
    assert summary.mean_attempts == pytest.approx(5 / 3)
    assert summary.attempts_to_success == 1.0
    assert summary.error_classes == {"rational": 3, "correct": 2}


def test_log_record_fields(tmp_path, executor):
    evaluate(
        QUESTIONS[:1],
        build_protocol("single", "S"),
        ScriptedGenerator([RIGHT]),
        tmp_path,
        executor=executor,
        progress=False,
    )
    record = log_lines(tmp_path)[0]
    assert record["prompt"] == "(SYSTEM) S\n(USER) What is 2 + 2? (0)"
    assert record["gold"] == 4
    assert record["prediction"] == 4.0
    assert (record["predicates"], record["constraints"]) == (1, 1)
    assert record["fully_correct"]


# --- resume -----------------------------------------------------------------------


class Interrupted(Exception):
    pass


def test_resume_after_interrupt(tmp_path, executor):
    calls = {"n": 0}

    def flaky(prompt, params):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupted
        return RIGHT

    protocol = build_protocol("single", "S")
    with pytest.raises(Interrupted):
        evaluate(
            QUESTIONS,
            protocol,
            ScriptedGenerator(flaky),
            tmp_path,
            executor=executor,
            batch_size=1,
            progress=False,
        )
    assert [r["id"] for r in log_lines(tmp_path)] == ["q0", "q1"]
    second = ScriptedGenerator([RIGHT], repeat_last=True)
    summary = evaluate(
        QUESTIONS,
        protocol,
        second,
        tmp_path,
        executor=executor,
        batch_size=1,
        progress=False,
    )
    ids = [r["id"] for r in log_lines(tmp_path)]
    assert ids == ["q0", "q1", "q2", "q3", "q4"]
    assert len(second.calls) == 3
    assert summary.questions == 5


def test_resume_drops_torn_line(tmp_path, executor):
    protocol = build_protocol("single", "S")
    generator = ScriptedGenerator([RIGHT], repeat_last=True)
    evaluate(
        QUESTIONS[:2], protocol, generator, tmp_path, executor=executor, progress=False
    )
    with open(tmp_path / LOG_NAME, "a") as handle:
        handle.write('{"id": "q2", "attem')  # a write cut off by a kill
    evaluate(
        QUESTIONS[:3], protocol, generator, tmp_path, executor=executor, progress=False
    )
    assert [r["id"] for r in log_lines(tmp_path)] == ["q0", "q1", "q2"]


def test_resume_rejects_other_protocol(tmp_path, executor):
    generator = ScriptedGenerator([RIGHT], repeat_last=True)
    evaluate(
        QUESTIONS[:1],
        build_protocol("single", "S"),
        generator,
        tmp_path,
        executor=executor,
        progress=False,
    )
    with pytest.raises(ResumeMismatchError, match="protocol='single'"):
        evaluate(
            QUESTIONS[:1],
            build_protocol("best-of-n", "S"),
            generator,
            tmp_path,
            executor=executor,
            progress=False,
        )


def test_read_log_rejects_corrupt_middle(tmp_path):
    path = tmp_path / LOG_NAME
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=":2 is not valid JSON"):
        read_log(path)


def test_duplicate_ids_rejected(tmp_path, executor):
    questions = [Question("same", "a", 1), Question("same", "b", 2)]
    with pytest.raises(ValueError, match="repeated: \\['same'\\]"):
        evaluate(
            questions,
            build_protocol("single", "S"),
            ScriptedGenerator([RIGHT]),
            tmp_path,
            executor=executor,
            progress=False,
        )


# --- summaries and comparison -------------------------------------------------


def record(correct, valid, attempts, success, classes):
    return {
        "id": "x",
        "protocol": "single",
        "correct": correct,
        "structure_valid": valid,
        "fully_correct": correct and valid,
        "prediction": 1.0 if success else None,
        "num_attempts": attempts,
        "success_attempt": success,
        "stop_reason": "numeric" if success else "attempts_exhausted",
        "prolog_seconds": 0.5,
        "attempts": [
            {"error_class": c, "action": "executed", "gen_seconds": 1.0, "tokens": 10}
            for c in classes
        ],
    }


def test_summarize_hand_computed():
    records = [
        record(True, True, 1, 1, ["correct"]),
        record(True, False, 3, 3, ["no_code", "unbound", "correct"]),
        record(False, False, 2, None, ["rational", "no_code"]),
        record(False, True, 1, 1, ["wrong"]),
    ]
    summary = summarize(records)
    assert summary.accuracy == 50.0
    assert summary.structure == 50.0
    assert summary.fully_correct == 25.0
    assert summary.executed == 75.0
    assert summary.mean_attempts == 1.75
    assert summary.attempts_to_success == 2.0
    assert summary.first_attempt_success == 50.0
    assert summary.error_classes["no_code"] == 2
    assert summary.generation_seconds_per_attempt == 1.0
    assert summary.prolog_seconds == 2.0


def test_compare_two_runs(tmp_path, executor):
    for name, text in (("run-a", RIGHT), ("run-b", RATIONAL)):
        evaluate(
            QUESTIONS[:2],
            build_protocol("single", "S"),
            ScriptedGenerator([text], repeat_last=True),
            tmp_path / name,
            executor=executor,
            progress=False,
        )
    text = compare_runs([tmp_path / "run-a", tmp_path / "run-b"], tmp_path / "cmp")
    assert "| run-a | single | 2 | 100.00 |" in text
    assert "| run-b | single | 2 | 0.00 |" in text
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0


def test_compare_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither summary.json nor log.jsonl"):
        compare_runs([tmp_path])
