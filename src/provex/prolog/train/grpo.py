"""GRPO with Prolog rewards on TRL's ``GRPOTrainer`` and a PEFT LoRA adapter."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from provex.prolog.train import common, inputs, reward_setup
from provex.prolog.train.callbacks import MetricsJsonl
from provex.prolog.train.config import ProvexArguments

logger = logging.getLogger(__name__)


def prepare_grpo(args: ProvexArguments, config: Any) -> dict[str, Any]:
    """Do every check and load everything a GRPO run needs, without training.

    Returns a dict with ``model``, ``tokenizer``, ``dataset``, ``reward_funcs``,
    ``peft_config`` and ``resume_from``. Every bad input is reported here, before
    any optimisation step.
    """
    common.set_threads(args.num_threads)
    output_dir = Path(config.output_dir)
    resume_from = common.checkpoint_to_resume(output_dir, args.resume)
    tokenizer = common.load_training_tokenizer(args.model)
    rows = inputs.load_rows(args.dataset, args.dataset_split)
    dataset = inputs.build_grpo_dataset(
        rows, args.dataset, args.system_prompt, args.num_train_problems
    )
    dataset = inputs.limit_prompt_length(
        dataset, tokenizer, args.max_prompt_length, args.prompt_truncation
    )
    funcs, preset_weights = reward_setup.resolve_rewards(
        args.reward_preset, args.reward_funcs
    )
    if config.reward_weights is None and preset_weights is not None:
        config.reward_weights = preset_weights
    if config.reward_weights is not None and len(config.reward_weights) != len(funcs):
        names = [reward_setup.reward_name(f) for f in funcs]
        raise common.TrainingSetupError(
            f"{len(config.reward_weights)} reward_weights for {len(funcs)} reward "
            f"functions {names}; give one weight per function"
        )
    funcs[0] = reward_setup.with_stats_probe(funcs[0])
    model = common.load_training_model(args, use_cpu=config.use_cpu)
    peft_config = common.lora_config(args)
    if peft_config is not None:
        common.check_lora_targets(model, list(args.lora_target_modules))
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return {
        "model": model,
        "tokenizer": tokenizer,
        "dataset": dataset,
        "reward_funcs": funcs,
        "peft_config": peft_config,
        "resume_from": resume_from,
    }


def run_grpo(
    args: ProvexArguments, config: Any, callbacks: list | None = None
) -> common.TrainResult:
    """Train with GRPO; save checkpoints, metrics and the final adapter.

    Args:
        args: provex options (model, data, prompt, rewards, LoRA, resume).
        config: a ``trl.GRPOConfig``; every GRPO setting passes through unchanged.
        callbacks: extra ``TrainerCallback`` objects.

    Returns:
        A ``TrainResult``; the adapter and tokenizer are in ``result.output_dir``.
    """
    from trl import GRPOTrainer

    started = time.time()
    parts = prepare_grpo(args, config)
    output_dir = Path(config.output_dir)
    metrics_path = output_dir / args.metrics_file
    common.write_run_record(
        output_dir,
        args,
        config,
        "grpo",
        {
            "reward_funcs": [
                reward_setup.reward_name(f) for f in parts["reward_funcs"]
            ],
            "num_problems": len(parts["dataset"]),
        },
    )
    trainer = GRPOTrainer(
        model=parts["model"],
        reward_funcs=parts["reward_funcs"],
        args=config,
        train_dataset=parts["dataset"],
        processing_class=parts["tokenizer"],
        peft_config=parts["peft_config"],
        callbacks=[MetricsJsonl(metrics_path), *(callbacks or [])],
    )
    return common.train_and_save(trainer, parts, args, metrics_path, started)
