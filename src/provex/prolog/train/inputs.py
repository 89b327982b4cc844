"""Training data for SFT and GRPO: load, check, and shape into TRL's formats.

Both trainers need, per problem, the question (or ready chat messages), a reference
program defining ``solve/1`` and the gold number. Column names accepted:

- question: ``question``, ``input`` or ``problem``; or ``prompt`` holding chat
  messages (then the system prompt is replaced by the configured one);
- reference program: ``answer`` when it holds a program, or ``output``/``program``;
- gold number: ``numerical_result``.

GRPO rows become ``{"prompt": [system, user], "answer": program,
"numerical_result": gold}``; the reward functions get ``answer`` and
``numerical_result`` as keyword arguments. SFT rows become ``{"messages": [system,
user, assistant]}`` where the assistant turn is ``<answer>\\n{program}\\n</answer>``,
so the loss covers the whole rendered conversation.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

QUESTION_COLUMNS = ("question", "input", "problem")
PROGRAM_COLUMNS = ("answer", "output", "program")
GOLD_COLUMN = "numerical_result"


class TrainingDataError(ValueError):
    """Invalid training data; the message names the rows and the reason."""


def load_rows(source: str, split: str = "train") -> Any:
    """Load a ``datasets.Dataset`` from a local file or folder, a name or the hub.

    Local ``.jsonl``/``.json``/``.parquet``/``.csv`` files and directories written
    by ``save_to_disk`` are read directly; other names go to
    ``datasets.load_dataset``. ``gsm8k-prolog`` names the GSM8K-Prolog training
    set on the hub, cut to the reference split ``split``.
    """
    import datasets

    path = Path(source).expanduser()
    if path.is_file():
        kind = {
            ".jsonl": "json",
            ".json": "json",
            ".parquet": "parquet",
            ".csv": "csv",
        }.get(path.suffix)
        if kind is None:
            raise TrainingDataError(
                f"cannot read {path}: use a .jsonl, .json, .parquet or .csv file"
            )
        if kind == "json" and not path.read_text(errors="replace").strip():
            return datasets.Dataset.from_list([])
        return datasets.load_dataset(kind, data_files=str(path), split="train")
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            loaded = datasets.load_from_disk(str(path))
            return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        files = sorted(path.glob(f"{split}*.jsonl")) or sorted(path.glob("*.jsonl"))
        if files:
            return datasets.load_dataset(
                "json", data_files=[str(f) for f in files], split="train"
            )
    try:
        loaded = _load_with_provex_data(source, split)
    except Exception as err:
        raise TrainingDataError(
            f"could not load {source!r} (split {split!r}): {err}. Without hub "
            "access, build verified programs locally with `provex prolog build-data` "
            "and pass the JSONL file as the dataset."
        ) from err
    if loaded is not None:
        return loaded
    try:
        return datasets.load_dataset(source, split=split)
    except Exception as err:
        raise TrainingDataError(
            f"could not load training data {source!r} (split {split!r}): {err}. Pass "
            "a local JSONL file with question, answer (program) and numerical_result "
            "columns, e.g. the output of `provex prolog build-data`."
        ) from err


GSM8K_PROLOG_NAMES = ("gsm8k-prolog", "Thomas-X-Yang/gsm8k-prolog")


def _load_with_provex_data(source: str, split: str) -> Any | None:
    """GSM8K-Prolog by name: the hub training split, cut to the reference split.

    ``split`` is ``train`` (1,750 rows), ``validation`` (375), ``test`` (375) of
    the seeded 2,500-row reference subset, or ``full`` for all 7,473 rows. The gold
    numbers come from running every reference program.
    """
    if source not in GSM8K_PROLOG_NAMES:
        return None
    import datasets

    from provex.prolog.data import load_gsm8k_prolog, select_split

    rows = load_gsm8k_prolog(GSM8K_PROLOG_NAMES[1], "train", execute=True)
    if split != "full":
        rows = select_split(rows, split)
    return datasets.Dataset.from_list(rows)


def _first_column(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    return next((name for name in candidates if name in columns), None)


def _program_column(rows: Any) -> str | None:
    columns = list(rows.column_names)
    for name in PROGRAM_COLUMNS:
        if name in columns and len(rows) > 0:
            sample = [str(v or "") for v in rows[name][: min(len(rows), 20)]]
            if any("solve" in text for text in sample):
                return name
    return None


def check_rows(rows: Any, source: str, need_gold: bool = True) -> tuple[str, str]:
    """Check the dataset before training; return (question column, program column).

    Raises:
        TrainingDataError: the dataset is empty, lacks a question, program or gold
            column, or has programs that do not define ``solve/1``.
    """
    if len(rows) == 0:
        raise TrainingDataError(
            f"training data {source!r} has no rows; check the path, the split and "
            "num_train_problems"
        )
    columns = list(rows.column_names)
    question = _first_column(columns, (*QUESTION_COLUMNS, "prompt"))
    if question is None:
        raise TrainingDataError(
            f"training data {source!r} has no question column; columns are "
            f"{columns}. Add one of {', '.join(QUESTION_COLUMNS)} or a 'prompt' "
            "column of chat messages."
        )
    program = _program_column(rows)
    if program is None:
        raise TrainingDataError(
            f"training data {source!r} has no column of reference programs defining "
            f"solve/1 (looked in {', '.join(PROGRAM_COLUMNS)}; columns are "
            f"{columns}). Build verified programs with `provex prolog build-data`."
        )
    bad = [i for i, text in enumerate(rows[program]) if "solve(" not in str(text or "")]
    if bad:
        raise TrainingDataError(
            f"{len(bad)} of {len(rows)} reference programs in column {program!r} of "
            f"{source!r} do not define solve/1 (first rows: {bad[:5]}); drop or fix "
            "them"
        )
    if need_gold and GOLD_COLUMN not in columns:
        raise TrainingDataError(
            f"training data {source!r} has no {GOLD_COLUMN!r} column (the gold "
            "number each program prints); `provex prolog build-data` adds it"
        )
    return question, program


def _messages(row: dict, question_col: str, system: str) -> list[dict]:
    from provex.prolog.prompts import user_message

    if question_col == "prompt":
        value = row["prompt"]
        if isinstance(value, list):
            turns = [m for m in value if m.get("role") != "system"]
            return [{"role": "system", "content": system}, *turns]
        question = str(value)
    else:
        question = str(row[question_col])
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": user_message(question)},
    ]


def answer_target(program: str) -> str:
    """The SFT assistant turn: the program inside an answer block, nothing else."""
    return f"<answer>\n{program.strip()}\n</answer>"


def build_grpo_dataset(
    rows: Any,
    source: str,
    system_prompt: str,
    num_problems: int | None = None,
) -> Any:
    """Shape rows into GRPO prompts with ``answer`` and ``numerical_result`` columns."""
    from provex.prolog.prompts import load_prompt

    if num_problems is not None:
        rows = rows.select(range(min(num_problems, len(rows))))
    question_col, program_col = check_rows(rows, source, need_gold=True)
    system = load_prompt(system_prompt)

    def shape(row: dict) -> dict:
        return {
            "prompt": _messages(row, question_col, system),
            "answer": str(row[program_col]),
            "numerical_result": str(row[GOLD_COLUMN]),
        }

    keep = ["prompt", "answer", "numerical_result"]
    drop = [c for c in rows.column_names if c not in keep]
    return rows.map(shape, remove_columns=drop)


def build_sft_dataset(
    rows: Any,
    source: str,
    system_prompt: str,
    num_problems: int | None = None,
) -> Any:
    """Shape rows into SFT conversations ending in the answer-only assistant turn."""
    from provex.prolog.prompts import load_prompt

    if num_problems is not None:
        rows = rows.select(range(min(num_problems, len(rows))))
    question_col, program_col = check_rows(rows, source, need_gold=False)
    system = load_prompt(system_prompt)

    def shape(row: dict) -> dict:
        messages = _messages(row, question_col, system)
        target = {"role": "assistant", "content": answer_target(str(row[program_col]))}
        return {"messages": [*messages, target]}

    return rows.map(shape, remove_columns=list(rows.column_names))


def limit_prompt_length(
    dataset: Any, tokenizer: Any, max_tokens: int | None, mode: str = "left"
) -> Any:
    """Apply the prompt token limit to GRPO prompts.

    TRL 1.16 never cuts prompts. With ``max_tokens`` unset nothing changes. When set,
    each prompt is rendered with the chat template and counted:

    - ``left``: every prompt is replaced by its rendered text, keeping only the last
      ``max_tokens`` tokens, so generation and loss both see the same cut prompt
      (the start of the system prompt goes first);
    - ``drop``: problems whose prompt is longer are left out;
    - ``error``: a longer prompt stops the run before training.
    """
    if max_tokens is None:
        return dataset

    def rendered(row: dict) -> str:
        return tokenizer.apply_chat_template(
            row["prompt"], tokenize=False, add_generation_prompt=True
        )

    lengths = [
        len(tokenizer(rendered(row), add_special_tokens=False)["input_ids"])
        for row in dataset
    ]
    over = [i for i, n in enumerate(lengths) if n > max_tokens]
    logger.info(
        "prompt tokens: min %d, max %d; %d of %d over %d",
        min(lengths),
        max(lengths),
        len(over),
        len(lengths),
        max_tokens,
    )
    if not over:
        return dataset
    if mode == "error":
        raise TrainingDataError(
            f"{len(over)} prompts are longer than max_prompt_length={max_tokens} "
            f"tokens (longest {max(lengths)}); raise the limit, shorten the system "
            "prompt, or set prompt_truncation to left or drop"
        )
    if mode == "drop":
        keep = [i for i in range(len(dataset)) if i not in set(over)]
        if not keep:
            raise TrainingDataError(
                f"every prompt is longer than max_prompt_length={max_tokens} tokens"
            )
        return dataset.select(keep)

    def cut(row: dict) -> dict:
        ids = tokenizer(rendered(row), add_special_tokens=False)["input_ids"]
        return {"prompt": tokenizer.decode(ids[-max_tokens:])}

    return dataset.map(cut)
