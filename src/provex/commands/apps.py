"""Typer applications that the command modules attach their commands to."""

import logging

import typer

app = typer.Typer(
    help="Build small, verifiable LLM specialists: Prolog as a tool, and FlexMoRE.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
prolog_app = typer.Typer(
    help="Prolog as a verifiable tool: engine, data, rewards, training, evaluation.",
    no_args_is_help=True,
)
moe_app = typer.Typer(
    help="FlexMoRE: low-rank experts from FlexOlmo checkpoints, sweeps and analysis.",
    no_args_is_help=True,
)
models_app = typer.Typer(
    help="Model sources: prepare packaged weights, list what is cached.",
    no_args_is_help=True,
)
app.add_typer(prolog_app, name="prolog")
app.add_typer(moe_app, name="moe")
app.add_typer(models_app, name="models")


@app.callback()
def _configure(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="Log more: -v for INFO, -vv for DEBUG."
    ),
) -> None:
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
