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


def test_eval_survives_kill(tmp_path, shared_data):
    """SIGKILL the command mid-run, rerun it, and find every question once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from provex.prolog.generation import ScriptedGenerator
    from provex.prolog.serving import OpenAIServer

    answer = "<answer>\n:- use_module(library(clpq)).\nsolve(X) :- {X = 1}.\n</answer>"

    def slow(prompt, params):
        time.sleep(0.4)
        return answer

    out = tmp_path / "run"
    with OpenAIServer(ScriptedGenerator(slow)) as server:
        command = [
            sys.executable,
            "-m",
            "provex.cli",
            "prolog",
            "eval",
            "--backend",
            "openai",
            "--base-url",
            server.base_url,
            "--model",
            "scripted",
            "--data",
            str(shared_data / "gsm8k" / "test.jsonl"),
            "--limit",
            "6",
            "--batch-size",
            "1",
            "--prolog-workers",
            "1",
            "--out",
            str(out),
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        log = out / "log.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if log.exists() and len(log.read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        killed_at = len(log.read_text().splitlines())
        finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    ids = [json.loads(line)["id"] for line in log.read_text().splitlines()]
    assert killed_at < 6
    assert finished.returncode == 0, finished.stderr
    assert ids == [f"gsm8k-{i}" for i in range(6)]
