"""GRPO on a tiny random Qwen2 with the real Prolog rewards: train, reload, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provex.prolog.train import parse_train_args, run_grpo
from provex.prolog.train.callbacks import read_metrics


def write_problems(shared_data: Path, out: Path, n: int = 8) -> Path:
    """First n GSM8K-Prolog test programs with the GSM8K gold numbers."""
    with (shared_data / "gsm8k_prolog" / "test.jsonl").open() as handle:
        programs = [json.loads(next(handle)) for _ in range(n)]
    with (shared_data / "gsm8k" / "test.jsonl").open() as handle:
        golds = [json.loads(next(handle)) for _ in range(n)]
    with out.open("w") as handle:
        for prog, gold in zip(programs, golds, strict=True):
            number = gold["answer"].split("####")[-1].strip().replace(",", "")
            row = {
                "question": prog["input"],
                "answer": prog["output"],
                "numerical_result": number,
            }
            handle.write(json.dumps(row) + "\n")
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from provex.models import build_tiny_model

    path = tmp_path_factory.mktemp("tiny") / "model"
    model, tokenizer = build_tiny_model()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def problems(shared_data, tmp_path_factory) -> Path:
    return write_problems(shared_data, tmp_path_factory.mktemp("data") / "p.jsonl")


def grpo_argv(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--config",
        "tiny-grpo",
        "--model",
        str(model),
        "--dataset",
        str(data),
        "--output_dir",
        str(out),
        *extra,
    ]


class StopAt:
    """Raise after the trainer logs a given step, like a killed process."""

    def __new__(cls, step: int):
        from transformers import TrainerCallback

        class _Stop(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if state.global_step == step and logs and "loss" in logs:
                    raise KeyboardInterrupt(f"stopped at step {step}")

        return _Stop()


@pytest.fixture(scope="module")
def trained(tiny_dir, problems, tmp_path_factory):
    out = tmp_path_factory.mktemp("grpo") / "run"
    args, config = parse_train_args(grpo_argv(tiny_dir, problems, out), mode="grpo")
    return run_grpo(args, config)


def test_grpo_two_steps(trained):
    assert trained.global_step == 2


def test_grpo_metrics_per_step(trained):
    steps = [r["step"] for r in read_metrics(trained.metrics_file) if "loss" in r]
    assert steps == [1, 2]


def test_grpo_metrics_have_correctness(trained):
    row = read_metrics(trained.metrics_file)[0]
    assert "rewards/correctness_reward_func/mean" in row


def test_grpo_metrics_have_rates(trained):
    row = read_metrics(trained.metrics_file)[0]
    assert {"prolog/correct_rate", "prolog/structure_rate", "kl"} <= set(row)


def test_grpo_correctness_floor(trained):
    # An untrained random model writes no answer block, which scores the 0.5 floor.
    row = read_metrics(trained.metrics_file)[0]
    assert row["rewards/correctness_reward_func/mean"] == pytest.approx(0.5)


def test_grpo_adapter_saved(trained):
    assert (trained.output_dir / "adapter_config.json").exists()


def test_grpo_adapter_generates(trained, tiny_dir):
    import torch

    from provex.models import load_causal_lm

    model, tokenizer = load_causal_lm(tiny_dir, adapter=trained.output_dir)
    ids = tokenizer("solve(X) :-", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5


def test_grpo_refuses_existing_checkpoints(trained, tiny_dir, problems):
    from provex.prolog.train import TrainingSetupError

    argv = grpo_argv(tiny_dir, problems, trained.output_dir)
    args, config = parse_train_args(argv, mode="grpo")
    with pytest.raises(TrainingSetupError, match="--resume"):
        run_grpo(args, config)


@pytest.fixture(scope="module")
def resumed(tiny_dir, problems, tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "run"
    argv = grpo_argv(tiny_dir, problems, out, "--max_steps", "4", "--save_steps", "2")
    args, config = parse_train_args(argv, mode="grpo")
    with pytest.raises(KeyboardInterrupt):
        run_grpo(args, config, callbacks=[StopAt(3)])
    before = [r["step"] for r in read_metrics(out / "metrics.jsonl")]
    args, config = parse_train_args([*argv, "--resume", "true"], mode="grpo")
    result = run_grpo(args, config)
    return before, result


@pytest.mark.slow
def test_resume_killed_run_logged_step_three(resumed):
    before, _ = resumed
    assert before == [1, 2, 3]


@pytest.mark.slow
def test_resume_starts_from_checkpoint_two(resumed):
    _, result = resumed
    assert result.resumed_from.name == "checkpoint-2"


@pytest.mark.slow
def test_resume_reaches_last_step(resumed):
    _, result = resumed
    assert result.global_step == 4


@pytest.mark.slow
def test_resume_no_step_repeated_or_lost(resumed):
    _, result = resumed
    steps = [r["step"] for r in read_metrics(result.metrics_file) if "loss" in r]
    assert steps == [1, 2, 3, 4]
