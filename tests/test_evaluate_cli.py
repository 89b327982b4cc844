"""The ``provex prolog eval`` and ``provex prolog compare`` commands."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from provex.commands import app

runner = CliRunner()


def run_eval(tmp_path, shared_data, *extra):
    return runner.invoke(
        app,
        [
            "prolog",
            "eval",
            "--model",
            "tiny-random-qwen2",
            "--data",
            str(shared_data / "gsm8k" / "test.jsonl"),
            "--limit",
            "2",
            "--max-tokens",
            "8",
            "--threads",
            "1",
            "--prolog-workers",
            "1",
            *extra,
        ],
    )


def test_eval_writes_run(tmp_path, shared_data):
    out = tmp_path / "run"
    result = run_eval(tmp_path, shared_data, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "| run | single | 2 |" in result.output
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    assert json.loads((out / "summary.json").read_text())["questions"] == 2


def test_eval_rejects_protocol(tmp_path, shared_data):
    result = run_eval(tmp_path, shared_data, "--protocol", "beam")
    assert result.exit_code != 0
    assert "'beam' is not one of" in result.output


def test_eval_resume_mismatch(tmp_path, shared_data):
    out = tmp_path / "run"
    assert run_eval(tmp_path, shared_data, "--out", str(out)).exit_code == 0
    result = run_eval(
        tmp_path, shared_data, "--out", str(out), "--protocol", "best-of-n", "--n", "1"
    )
    assert result.exit_code != 0
    message = " ".join(result.output.replace("│", " ").split())
    assert "contains a run with protocol='single'" in message


def test_compare_command(tmp_path, shared_data):
    out = tmp_path / "run"
    assert run_eval(tmp_path, shared_data, "--out", str(out)).exit_code == 0
    result = runner.invoke(
        app, ["prolog", "compare", str(out), "--out", str(tmp_path / "cmp")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cmp" / "compare.png").exists()
