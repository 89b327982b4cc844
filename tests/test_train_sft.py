"""SFT on a tiny random Qwen2: answer-only targets, two steps, adapter reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provex.prolog.train import parse_train_args, run_sft
from provex.prolog.train.callbacks import read_metrics
from provex.prolog.train.inputs import answer_target, build_sft_dataset, load_rows


def write_problems(shared_data: Path, out: Path, n: int = 8) -> Path:
    """First n GSM8K-Prolog test programs (no gold column: SFT does not need it)."""
    with (shared_data / "gsm8k_prolog" / "test.jsonl").open() as handle:
        rows = [json.loads(next(handle)) for _ in range(n)]
    with out.open("w") as handle:
        for row in rows:
            handle.write(json.dumps({"input": row["input"], "output": row["output"]}))
            handle.write("\n")
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


@pytest.fixture(scope="module")
def trained(tiny_dir, problems, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "run"
    argv = [
        "--config",
        "tiny-sft",
        "--model",
        str(tiny_dir),
        "--dataset",
        str(problems),
        "--output_dir",
        str(out),
    ]
    args, config = parse_train_args(argv, mode="sft")
    return run_sft(args, config)


def test_answer_target_format():
    assert answer_target("solve(X) :- {X = 4}.\n") == (
        "<answer>\nsolve(X) :- {X = 4}.\n</answer>"
    )


def test_sft_rows_end_with_answer_turn(problems):
    rows = build_sft_dataset(load_rows(str(problems)), "p", "reflect")
    last = rows[0]["messages"][-1]
    assert last["content"].startswith("<answer>\n:- use_module(library(clpq)).")


def test_sft_rows_have_three_turns(problems):
    rows = build_sft_dataset(load_rows(str(problems)), "p", "reflect")
    roles = [m["role"] for m in rows[0]["messages"]]
    assert roles == ["system", "user", "assistant"]


def test_sft_two_steps(trained):
    assert trained.global_step == 2


def test_sft_loss_logged_each_step(trained):
    steps = [r["step"] for r in read_metrics(trained.metrics_file) if "loss" in r]
    assert steps == [1, 2]


def test_sft_adapter_generates(trained, tiny_dir):
    import torch

    from provex.models import load_causal_lm

    model, tokenizer = load_causal_lm(tiny_dir, adapter=trained.output_dir)
    ids = tokenizer("<answer>\n", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 4


def test_sft_plot_writes_png(trained, tmp_path):
    from provex.prolog.train import plot_run

    path = plot_run(trained.output_dir, out=tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
