"""Training configuration: presets, overrides and unknown keys."""

from __future__ import annotations

import pytest

from provex.prolog.train import list_presets, parse_train_args
from provex.prolog.train.config import expand_set_flags


@pytest.fixture(scope="module")
def reference():
    return parse_train_args(["--config", "reference-grpo"], mode="grpo")


def test_presets_listed():
    assert {"reference-grpo", "reference-sft", "cpu-gemma-grpo"} <= set(list_presets())


def test_reference_model(reference):
    args, _ = reference
    assert args.model == "Qwen/Qwen2.5-3B-Instruct"


def test_reference_lora(reference):
    args, _ = reference
    assert (args.lora_r, args.lora_alpha, len(args.lora_target_modules)) == (32, 64, 7)


def test_reference_learning_rate(reference):
    _, config = reference
    assert config.learning_rate == 5e-6


def test_reference_adam_betas(reference):
    _, config = reference
    assert (config.adam_beta1, config.adam_beta2) == (0.9, 0.99)


def test_reference_one_prompt_per_step(reference):
    _, config = reference
    per_step = config.per_device_train_batch_size // config.num_generations
    assert (config.num_generations, per_step) == (8, 1)


def test_reference_kl_and_temperature(reference):
    _, config = reference
    assert (config.beta, config.temperature) == (0.04, 0.9)


def test_reference_lengths(reference):
    args, config = reference
    assert (config.max_completion_length, args.num_train_problems) == (768, 1750)


def test_reference_clip_and_decay(reference):
    _, config = reference
    assert (config.max_grad_norm, config.weight_decay) == (0.1, 0.1)


def test_reference_schedule(reference):
    _, config = reference
    assert (str(config.lr_scheduler_type.value), config.warmup_steps) == (
        "cosine",
        0.1,
    )


def test_reference_seed(reference):
    _, config = reference
    assert config.seed == 42


def test_reference_sft_prompt():
    args, config = parse_train_args(["--config", "reference-sft"], mode="sft")
    assert (args.system_prompt, config.max_length) == ("reflect", 2048)


def test_flag_overrides_config():
    _, config = parse_train_args(
        ["--config", "reference-grpo", "--learning_rate", "1e-5"], mode="grpo"
    )
    assert config.learning_rate == 1e-5


def test_set_overrides_config():
    _, config = parse_train_args(
        ["--config", "reference-grpo", "--set", "beta=0.1"], mode="grpo"
    )
    assert config.beta == 0.1


def test_expand_set():
    assert expand_set_flags(["--set", "lora_r=8", "--x", "1"]) == [
        "--lora_r",
        "8",
        "--x",
        "1",
    ]


def test_unknown_key_suggests():
    with pytest.raises(ValueError, match="did you mean learning_rate"):
        parse_train_args(["--model", "m", "--learning_rat", "1"], mode="grpo")


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: m\nlora_rank: 8\n")
    with pytest.raises(ValueError, match="lora_rank"):
        parse_train_args(["--config", str(path)], mode="grpo")


def test_model_required():
    with pytest.raises(ValueError, match="no model given"):
        parse_train_args([], mode="sft")


def test_missing_config_lists_presets():
    with pytest.raises(FileNotFoundError, match="reference-grpo"):
        parse_train_args(["--config", "nope"], mode="grpo")


def test_preset_summary_joins_comment_lines():
    from provex.commands.train import preset_summary

    text = (
        "# Small run on a CPU: the model\n# (prepared once). Slow.\nmodel: x\n# late\n"
    )
    assert preset_summary(text) == "Small run on a CPU: the model (prepared once)."
    assert preset_summary("# No period here\nkey: 1\n") == "No period here"
    assert preset_summary("# First line\n#\n# second. More\n") == "First line second."
