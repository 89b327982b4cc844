"""The demo's Markdown report, its plots, and the summary printed in the terminal."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from provex.demo.flexmore import expert_table, mixture_table, sweep_dir
from provex.demo.prolog import (
    PROTOCOLS,
    eval_dir,
    grpo_dir,
    grpo_result,
    prolog_dir,
)
from provex.demo.settings import DemoSettings
from provex.demo.stages import StageRecord

logger = logging.getLogger(__name__)

REPORT_NAME = "report.md"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _summaries(settings: DemoSettings) -> list[Any]:
    from provex.prolog.evaluate import load_summary

    found = []
    for trained in (False, True):
        for protocol in PROTOCOLS:
            folder = eval_dir(settings, protocol, trained)
            if not (folder / "summary.json").exists():
                continue
            summary = load_summary(folder)
            summary.run = f"{protocol} ({'GRPO' if trained else 'base'})"
            found.append(summary)
    return found


def protocol_rows(settings: DemoSettings) -> list[list[Any]]:
    """Return ``[protocol, accuracy before, accuracy after, structure before,
    structure after]`` rows (percent of questions) for the evaluations found."""
    by_key = {}
    for trained in (False, True):
        for protocol in PROTOCOLS:
            path = eval_dir(settings, protocol, trained) / "summary.json"
            if path.exists():
                by_key[protocol, trained] = json.loads(path.read_text())
    rows = []
    for protocol in PROTOCOLS:
        before = by_key.get((protocol, False), {})
        after = by_key.get((protocol, True), {})
        if not before and not after:
            continue
        rows.append(
            [
                protocol,
                before.get("accuracy"),
                after.get("accuracy"),
                before.get("structure"),
                after.get("structure"),
            ]
        )
    return rows


def _prolog_section(settings: DemoSettings, records: dict[str, StageRecord]) -> str:
    from provex.prolog.evaluate import plot_runs, summary_table

    parts = ["## Prolog as a tool", ""]
    data = records.get("prolog/data")
    if data is not None:
        info = data.info
        parts += [
            f"- Model: `{settings.model}`",
            f"- Training programs: {info.get('train_verified')} verified of "
            f"{info.get('train_rows')} rows ({info.get('train_source')}), built with "
            "`provex prolog build-data`.",
            f"- Evaluation: {info.get('eval_source')}, {info.get('eval_problems')} "
            "problems, disjoint from the training rows.",
            f"- Budgets: {settings.max_tokens} new tokens per sample, best-of-"
            f"{settings.best_of_n}, {settings.max_turns} agentic turns of "
            f"{settings.turn_tokens} tokens, temperature {settings.temperature}, "
            f"seed {settings.seed}.",
            "",
        ]
    summaries = _summaries(settings)
    if summaries:
        chart = prolog_dir(settings) / "protocols.png"
        plot_runs(summaries, chart)
        parts += [
            "### Four protocols, before and after GRPO",
            "",
            "Percentages are of questions. Accuracy: the final program's value "
            "matches the gold answer. Structure: the answer is a well-formed program.",
            "",
            summary_table(summaries),
            "",
            f"![protocols]({chart.relative_to(settings.out)})",
            "",
        ]
    grpo = records.get("prolog/grpo")
    plot = grpo_dir(settings) / "rewards.png"
    if grpo is not None and plot.exists():
        parts += [
            "### GRPO fine-tune",
            "",
            f"{settings.grpo_steps} optimiser steps, {settings.num_generations} "
            "completions of "
            f"at most {settings.completion_tokens} tokens per prompt, LoRA rank "
            f"{settings.lora_r}, reward preset suite1. Final mean reward: "
            f"{_number(grpo_result(settings)['final_reward'])}. Adapter and metrics: "
            f"`{grpo_dir(settings).relative_to(settings.out)}/`; options: "
            "`prolog/grpo-config.yaml`.",
            "",
            f"![rewards]({plot.relative_to(settings.out)})",
            "",
        ]
    return "\n".join(parts)


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _moe_section(settings: DemoSettings, records: dict[str, StageRecord]) -> str:
    parts = ["## FlexMoRE", ""]
    build = records.get("moe/build")
    if build is not None:
        heldout = build.info.get("heldout", {})
        parts += [
            f"Build folder (reused by later runs): `{build.info.get('build')}`. "
            "Held-out loss per domain, in nats per token:",
            "",
            _table(
                ["domain", "public model", "public + own expert", "merged mixture"],
                [
                    [
                        domain,
                        value,
                        heldout.get("expert", {}).get(domain),
                        heldout.get("merged", {}).get(domain),
                    ]
                    for domain, value in heldout.get("public", {}).items()
                ],
            ),
            "",
        ]
    experts = expert_table(settings)
    if experts:
        parts += [
            "### Each expert as a low-rank adapter",
            "",
            "2-expert models (public expert plus one domain expert at the given "
            "rank). Loss: held-out loss on the expert's own domain (nats/token). "
            "Parameters: total of the 2-expert model; expert parameters: what the "
            "expert and its router row add to the public model.",
            "",
            _table(
                [
                    "expert",
                    "rank",
                    "parameters",
                    "expert parameters",
                    "share of full expert",
                    "loss",
                    "loss - full",
                    "public model loss",
                ],
                [
                    [
                        row["expert"],
                        row["rank"],
                        row["params"],
                        row["expert_params"],
                        _ratio(
                            row["expert_params"],
                            _minus(
                                row["full_params"], row["params"] - row["expert_params"]
                            )
                            if row["expert_params"] is not None
                            else None,
                        ),
                        row["loss"],
                        _diff(row["loss"], row["full_loss"]),
                        row["public_loss"],
                    ]
                    for row in experts
                ],
            ),
            "",
        ]
    mixtures = mixture_table(settings)
    if mixtures:
        parts += [
            "### The whole mixture at one rank for every expert",
            "",
            _table(
                ["rank", "top-k", "parameters", "active per token", "mean loss"],
                [
                    [r["rank"], r["top_k"], r["params"], r["active"], r["loss"]]
                    for r in mixtures
                ],
            ),
            "",
        ]
    analysis = sweep_dir(settings) / "analysis"
    for name, title in (
        ("loss_vs_rank.png", "held-out loss against rank"),
        ("params_vs_score.png", "parameters against mean task accuracy"),
    ):
        if (analysis / name).exists():
            parts += [f"![{title}]({(analysis / name).relative_to(settings.out)})", ""]
    if (analysis / "report.md").exists():
        parts += [
            "Regressions and best ranks: "
            f"[{(analysis / 'report.md').relative_to(settings.out)}]"
            f"({(analysis / 'report.md').relative_to(settings.out)}).",
            "",
        ]
    return "\n".join(parts)


def _ratio(value: int | None, reference: int | None) -> str:
    return f"{value / reference:.2f}" if value is not None and reference else "-"


def _minus(value: int | None, other: int) -> int | None:
    return value - other if value is not None else None


def _diff(value: float, reference: float | None) -> str:
    return f"{value - reference:+.3f}" if reference is not None else "-"


def timing_rows(records: list[StageRecord]) -> list[list[Any]]:
    """Return ``[stage, wall seconds, CPU seconds, reused]`` rows and a total row."""
    rows: list[list[Any]] = [
        [r.title, round(r.seconds), round(r.cpu_seconds), "yes" if r.reused else "no"]
        for r in records
    ]
    rows.append(
        [
            "total",
            round(sum(r.seconds for r in records)),
            round(sum(r.cpu_seconds for r in records)),
            "",
        ]
    )
    return rows


def write_report(settings: DemoSettings, records: list[StageRecord]) -> Path:
    """Write ``<out>/report.md`` (with PNG plots beside it) and return its path."""
    by_name = {r.name: r for r in records}
    parts = [
        "# provex demo",
        "",
        f"Written {time.strftime('%Y-%m-%d %H:%M:%S')}"
        + (
            " (quick variant: random tiny models, tiny budgets)."
            if settings.quick
            else "."
        ),
        "",
    ]
    if not settings.skip_prolog:
        parts.append(_prolog_section(settings, by_name))
    if not settings.skip_moe:
        parts.append(_moe_section(settings, by_name))
    parts += [
        "## Timings",
        "",
        "Wall and CPU seconds per stage on this machine; reused stages show the time "
        "of the run that built them.",
        "",
        _table(["stage", "wall s", "CPU s", "reused"], timing_rows(records)),
        "",
    ]
    path = settings.out / REPORT_NAME
    path.write_text("\n".join(parts))
    return path


def terminal_summary(settings: DemoSettings, records: list[StageRecord]) -> str:
    """Return the plain-text summary printed at the end of the demo."""
    lines = []
    rows = protocol_rows(settings)
    if rows:
        lines += [
            "Prolog as a tool (% of questions)",
            _text_table(
                ["protocol", "acc base", "acc GRPO", "struct base", "struct GRPO"],
                rows,
            ),
            "",
        ]
    experts = expert_table(settings)
    if experts:
        lines += [
            "FlexMoRE experts (held-out loss on own domain, nats/token)",
            _text_table(
                ["expert", "rank", "expert params", "loss", "loss - full"],
                [
                    [
                        r["expert"],
                        r["rank"],
                        r["expert_params"],
                        r["loss"],
                        _diff(r["loss"], r["full_loss"]),
                    ]
                    for r in experts
                ],
            ),
            "",
        ]
    lines += [
        "Timings (seconds)",
        _text_table(["stage", "wall", "CPU", "reused"], timing_rows(records)),
    ]
    return "\n".join(lines)


def _text_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.2f}"
        return str(value)

    body = [[cell(v) for v in row] for row in rows]
    widths = [
        max(len(str(h)), *(len(r[i]) for r in body)) if body else len(str(h))
        for i, h in enumerate(header)
    ]
    out = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    for row in body:
        out.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    return "\n".join(out)
