"""Bad training input fails with a clear error before any training step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provex.prolog.train import (
    TrainingDataError,
    TrainingSetupError,
    parse_train_args,
    run_grpo,
)

PROGRAM = ":- use_module(library(clpq)).\nsolve(X) :- {X = 2 + 2}.\n"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from provex.models import build_tiny_model

    path = tmp_path_factory.mktemp("tiny") / "model"
    model, tokenizer = build_tiny_model()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def no_template_dir(tmp_path_factory) -> Path:
    from provex.models import build_tiny_model

    path = tmp_path_factory.mktemp("plain") / "model"
    model, tokenizer = build_tiny_model()
    tokenizer.chat_template = None
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture()
def good_data(tmp_path) -> Path:
    row = {"question": "What is 2 + 2?", "answer": PROGRAM, "numerical_result": "4"}
    return write_jsonl(tmp_path / "good.jsonl", [row] * 4)


def attempt(model: Path, data: Path, out: Path, *extra: str) -> None:
    argv = ["--config", "tiny-grpo", "--model", str(model), "--dataset", str(data)]
    args, config = parse_train_args([*argv, "--output_dir", str(out), *extra])
    run_grpo(args, config)


def test_missing_program_column(tiny_dir, tmp_path):
    data = write_jsonl(
        tmp_path / "d.jsonl", [{"question": "2 + 2?", "numerical_result": "4"}]
    )
    with pytest.raises(TrainingDataError, match="solve/1"):
        attempt(tiny_dir, data, tmp_path / "run")


def test_program_without_solve(tiny_dir, tmp_path):
    rows = [
        {"question": "q", "answer": PROGRAM, "numerical_result": "4"},
        {"question": "q", "answer": "go(X) :- X = 4.", "numerical_result": "4"},
    ]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(TrainingDataError, match=r"first rows: \[1\]"):
        attempt(tiny_dir, data, tmp_path / "run")


def test_missing_gold_column(tiny_dir, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": PROGRAM}])
    with pytest.raises(TrainingDataError, match="numerical_result"):
        attempt(tiny_dir, data, tmp_path / "run")


def test_empty_file(tiny_dir, tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    with pytest.raises(TrainingDataError, match="no rows"):
        attempt(tiny_dir, data, tmp_path / "run")


def test_zero_problems_selected(tiny_dir, good_data, tmp_path):
    with pytest.raises(TrainingDataError, match="no rows"):
        attempt(tiny_dir, good_data, tmp_path / "run", "--num_train_problems", "0")


def test_no_chat_template(no_template_dir, good_data, tmp_path):
    with pytest.raises(TrainingSetupError, match="no chat template"):
        attempt(no_template_dir, good_data, tmp_path / "run")


def test_lora_targets_match_nothing(tiny_dir, good_data, tmp_path):
    with pytest.raises(TrainingSetupError, match=r"\['qkv_proj'\] match no"):
        attempt(
            tiny_dir,
            good_data,
            tmp_path / "run",
            "--lora_target_modules",
            "q_proj",
            "qkv_proj",
        )


def test_error_leaves_no_checkpoint(tiny_dir, good_data, tmp_path):
    with pytest.raises(TrainingSetupError):
        attempt(tiny_dir, good_data, tmp_path / "run", "--lora_target_modules", "x")
    assert not list(tmp_path.glob("run/checkpoint-*"))


def test_wrong_number_of_weights(tiny_dir, good_data, tmp_path):
    with pytest.raises(TrainingSetupError, match="one weight per function"):
        attempt(tiny_dir, good_data, tmp_path / "run", "--reward_weights", "1", "2")


def test_prompt_limit_error(tiny_dir, good_data, tmp_path):
    with pytest.raises(TrainingDataError, match="max_prompt_length=8"):
        attempt(
            tiny_dir,
            good_data,
            tmp_path / "run",
            "--max_prompt_length",
            "8",
            "--prompt_truncation",
            "error",
        )


def test_prompt_limit_left_cut(tiny_dir, good_data):
    from provex.models import load_tokenizer
    from provex.prolog.train.inputs import (
        build_grpo_dataset,
        limit_prompt_length,
        load_rows,
    )

    tokenizer = load_tokenizer(tiny_dir)
    rows = build_grpo_dataset(load_rows(str(good_data)), "good", "struct")
    cut = limit_prompt_length(rows, tokenizer, 12, "left")
    ids = tokenizer(cut[0]["prompt"], add_special_tokens=False)["input_ids"]
    assert len(ids) <= 12


def test_cli_reports_error(tiny_dir, good_data, tmp_path):
    from typer.testing import CliRunner

    from provex.commands import app

    argv = ["prolog", "train", "--config", "tiny-grpo", "--model", str(tiny_dir)]
    argv += ["--dataset", str(good_data), "--output_dir", str(tmp_path / "run")]
    result = CliRunner().invoke(app, [*argv, "--lora_target_modules", "nope_proj"])
    assert result.exit_code == 2


def test_cli_error_names_target(tiny_dir, good_data, tmp_path):
    from typer.testing import CliRunner

    from provex.commands import app

    argv = ["prolog", "train", "--config", "tiny-grpo", "--model", str(tiny_dir)]
    argv += ["--dataset", str(good_data), "--output_dir", str(tmp_path / "run")]
    result = CliRunner().invoke(app, [*argv, "--lora_target_modules", "nope_proj"])
    assert "nope_proj" in result.output
