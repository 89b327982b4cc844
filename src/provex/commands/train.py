"""Commands: ``provex prolog sft``, ``provex prolog train`` (GRPO),
``provex prolog plot`` and ``provex prolog presets``."""

from __future__ import annotations

from pathlib import Path

import typer

from provex.commands.apps import app, models_app, moe_app, prolog_app  # noqa: F401

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}

_OPTIONS_HELP = """
Options are given TRL's way: --config FILE.yaml (or a preset name, see `provex prolog
presets`) sets defaults, and --KEY VALUE or --set KEY=VALUE overrides single keys. KEY
is a provex option (model, dataset, dataset_split, num_train_problems, system_prompt,
{extra}lora_r, lora_alpha, lora_dropout, lora_target_modules, use_lora, init_adapter,
resume, save_merged, metrics_file, num_threads, dtype) or any field of TRL's {cls}
({examples}). Lists take several words: --lora_target_modules q_proj v_proj.
"""


def _train(ctx: typer.Context, mode: str) -> None:
    from provex.prolog.train import (
        TrainingDataError,
        TrainingSetupError,
        parse_train_args,
        run_grpo,
        run_sft,
    )

    argv = list(ctx.args)
    if "--help-options" in argv:
        _print_option_help(mode)
        return
    try:
        provex_args, trl_args = parse_train_args(argv, mode=mode)
        runner = run_grpo if mode == "grpo" else run_sft
        result = runner(provex_args, trl_args)
    except (TrainingSetupError, TrainingDataError, ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(f"finished at step {result.global_step} in {result.wall_s:.1f} s")
    if result.resumed_from:
        typer.echo(f"resumed from {result.resumed_from}")
    typer.echo(f"adapter and tokenizer: {result.output_dir}")
    typer.echo(f"metrics per step:      {result.metrics_file}")
    if result.merged_dir:
        typer.echo(f"merged model:          {result.merged_dir}")
    typer.echo(f"peak memory:           {result.peak_rss_mb:.0f} MiB")


def _print_option_help(mode: str) -> None:
    from dataclasses import fields

    from provex.prolog.train.config import ProvexArguments, _trl_config_class

    typer.echo("provex options:")
    for f in fields(ProvexArguments):
        typer.echo(f"  --{f.name:<24} {f.metadata.get('help', '')}")
    cls = _trl_config_class(mode)
    typer.echo(f"\nTRL {cls.__name__} options:")
    for f in fields(cls):
        help_text = " ".join(str(f.metadata.get("help", "")).split())[:110]
        typer.echo(f"  --{f.name:<32} {help_text}")


@prolog_app.command(
    "train",
    context_settings=_PASS_THROUGH,
    help="Train with GRPO and Prolog rewards (TRL GRPOTrainer + PEFT LoRA). "
    + _OPTIONS_HELP.format(
        extra="reward_preset, reward_funcs, max_prompt_length, prompt_truncation, ",
        cls="GRPOConfig",
        examples="learning_rate, beta, temperature, num_generations, "
        "max_completion_length, reward_weights, use_vllm, vllm_mode, save_steps, "
        "report_to, ...",
    )
    + "\nExample: provex prolog train --config cpu-gemma-grpo --max_steps 10\n"
    "List every option with --help-options.",
)
def train_command(ctx: typer.Context) -> None:
    _train(ctx, "grpo")


@prolog_app.command(
    "sft",
    context_settings=_PASS_THROUGH,
    help="Supervised fine-tuning on reference programs (TRL SFTTrainer + PEFT LoRA): "
    "answer-only targets in the chat template, loss on the whole sequence. "
    + _OPTIONS_HELP.format(
        extra="",
        cls="SFTConfig",
        examples="learning_rate, max_length, per_device_train_batch_size, "
        "num_train_epochs, save_steps, report_to, ...",
    )
    + "\nExample: provex prolog sft --config cpu-gemma-sft --max_steps 40\n"
    "List every option with --help-options.",
)
def sft_command(ctx: typer.Context) -> None:
    _train(ctx, "sft")


@prolog_app.command("presets")
def presets_command() -> None:
    """List the training presets shipped with provex (names for --config) and the
    accelerate configs for multi-GPU runs."""
    from provex.prolog.train import list_presets
    from provex.prolog.train.config import accelerate_config

    for name, path in list_presets().items():
        typer.echo(f"{name:<22} {preset_summary(path.read_text())}")
    typer.echo("\naccelerate launch configs (--config_file):")
    for name in ("zero2", "zero3", "fsdp2"):
        typer.echo(f"  {name:<8} {accelerate_config(name)}")


def preset_summary(text: str) -> str:
    """First sentence of a preset file's leading comment block."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    words = " ".join(line for line in lines if line)
    end = words.find(". ")
    return words if end < 0 else words[: end + 1]


@prolog_app.command("plot")
def plot_command(
    run_dir: Path = typer.Argument(
        ..., help="Output directory of a training run (holds metrics.jsonl)."
    ),
    out: Path | None = typer.Option(
        None, help="PNG file to write (default: RUN_DIR/rewards.png)."
    ),
    smooth: int = typer.Option(
        1, help="Moving-average window over steps, in steps (1 = raw values)."
    ),
) -> None:
    """Draw per-step reward curves, correctness rate and KL of a run to a PNG."""
    from provex.prolog.train import plot_run

    try:
        path = plot_run(run_dir, out=out, smooth=smooth)
    except (FileNotFoundError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    typer.echo(str(path))
