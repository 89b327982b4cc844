"""The SFT baseline on TRL's ``SFTTrainer``: answer-only targets, full-sequence loss.

Each example is the system prompt, the user turn and an assistant turn holding only
``<answer>\\n{reference program}\\n</answer>`` (there is no gold reasoning to imitate),
rendered with the model's chat template. The loss covers every token of the
rendered conversation, prompt included, as in the reference baseline.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from provex.prolog.train import common, inputs
from provex.prolog.train.callbacks import MetricsJsonl
from provex.prolog.train.config import ProvexArguments

logger = logging.getLogger(__name__)


def prepare_sft(args: ProvexArguments, config: Any) -> dict[str, Any]:
    """Check inputs and load model, tokenizer and dataset for SFT, without training."""
    common.set_threads(args.num_threads)
    output_dir = Path(config.output_dir)
    resume_from = common.checkpoint_to_resume(output_dir, args.resume)
    tokenizer = common.load_training_tokenizer(args.model)
    rows = inputs.load_rows(args.dataset, args.dataset_split)
    dataset = inputs.build_sft_dataset(
        rows, args.dataset, args.system_prompt, args.num_train_problems
    )
    config.assistant_only_loss = False
    config.completion_only_loss = False
    model = common.load_training_model(args, use_cpu=config.use_cpu)
    peft_config = common.lora_config(args)
    if peft_config is not None:
        common.check_lora_targets(model, list(args.lora_target_modules))
    return {
        "model": model,
        "tokenizer": tokenizer,
        "dataset": dataset,
        "peft_config": peft_config,
        "resume_from": resume_from,
    }


def run_sft(
    args: ProvexArguments, config: Any, callbacks: list | None = None
) -> common.TrainResult:
    """Fine-tune on reference programs; save checkpoints, metrics and the adapter.

    Args:
        args: provex options (model, data, prompt, LoRA, resume).
        config: a ``trl.SFTConfig``.
        callbacks: extra ``TrainerCallback`` objects.
    """
    from trl import SFTTrainer

    started = time.time()
    parts = prepare_sft(args, config)
    output_dir = Path(config.output_dir)
    metrics_path = output_dir / args.metrics_file
    common.write_run_record(
        output_dir, args, config, "sft", {"num_problems": len(parts["dataset"])}
    )
    trainer = SFTTrainer(
        model=parts["model"],
        args=config,
        train_dataset=parts["dataset"],
        processing_class=parts["tokenizer"],
        peft_config=parts["peft_config"],
        callbacks=[MetricsJsonl(metrics_path), *(callbacks or [])],
    )
    return common.train_and_save(trainer, parts, args, metrics_path, started)
