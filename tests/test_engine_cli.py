"""Command line: provex prolog run and provex prolog structure."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from provex.commands import app

RUNNER = CliRunner()
RATIONAL = ":- use_module(library(clpq)).\nsolve(X) :- {X = 15/2}.\n"


def test_run_single_file(tmp_path):
    path = tmp_path / "prog.pl"
    path.write_text(RATIONAL)
    result = RUNNER.invoke(app, ["prolog", "run", str(path)])
    row = json.loads(result.stdout)
    assert result.exit_code == 0
    assert row["status"] == "ok"
    assert row["bindings"] == {"X": "15r2"}


def test_run_query_option(tmp_path):
    path = tmp_path / "prog.pl"
    path.write_text("ans(4).\n")
    result = RUNNER.invoke(app, ["prolog", "run", str(path), "--query", "ans(A)"])
    assert json.loads(result.stdout)["bindings"] == {"A": "4"}


def test_run_reference_option(tmp_path):
    path = tmp_path / "prog.pl"
    path.write_text(RATIONAL)
    result = RUNNER.invoke(app, ["prolog", "run", str(path), "--reference"])
    assert json.loads(result.stdout) == {"reference": "15r2"}


def test_run_batch_resumes(tmp_path):
    rows = [{"output": f"solve({i})."} for i in range(3)]
    rows.append({"code": "solve(X) :- X is 2 * 21."})
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "out.jsonl"
    output.write_text(json.dumps({"index": 0, "status": "kept"}) + "\n")
    result = RUNNER.invoke(app, ["prolog", "run", str(source), "-o", str(output)])
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert result.exit_code == 0
    assert [line["index"] for line in lines] == [0, 1, 2, 3]
    assert lines[0]["status"] == "kept"
    assert [line["bindings"]["X"] for line in lines[1:]] == ["1", "2", "42"]


def test_run_batch_missing_field(tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text(json.dumps({"text": "solve(1)."}) + "\n")
    result = RUNNER.invoke(app, ["prolog", "run", str(source)])
    assert result.exit_code != 0
    assert "has no field program or output or code" in result.output


def test_run_batch_field_not_string(tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text(json.dumps({"program": 5}) + "\n")
    result = RUNNER.invoke(app, ["prolog", "run", str(source)])
    assert result.exit_code != 0
    assert "field 'program' is a JSON number" in result.output


def test_run_batch_empty_file(tmp_path, monkeypatch):
    # Short relative paths keep the error box from wrapping the message.
    monkeypatch.chdir(tmp_path)
    Path("rows.jsonl").write_text("\n\n")
    result = RUNNER.invoke(app, ["prolog", "run", "rows.jsonl"])
    assert result.exit_code != 0
    assert "has no programs" in result.output


def test_run_batch_partial_line_rewritten(tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text(
        "".join(json.dumps({"program": f"solve({i})."}) + "\n" for i in range(2))
    )
    output = tmp_path / "out.jsonl"
    output.write_text(json.dumps({"index": 0, "status": "kept"}) + '\n{"index": 1, "st')
    result = RUNNER.invoke(app, ["prolog", "run", str(source), "-o", str(output)])
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert result.exit_code == 0
    assert [line["index"] for line in lines] == [0, 1]
    assert lines[1]["bindings"] == {"X": "1"}


def test_run_output_directory_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("rows.jsonl").write_text(json.dumps({"program": "solve(1)."}) + "\n")
    Path("out").mkdir()
    result = RUNNER.invoke(app, ["prolog", "run", "rows.jsonl", "-o", "out"])
    assert result.exit_code != 0
    assert "is a directory" in result.output


def test_run_directory_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("progs").mkdir()
    result = RUNNER.invoke(app, ["prolog", "run", "progs"])
    assert result.exit_code != 0
    assert "is a directory" in result.output


def test_run_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = RUNNER.invoke(app, ["prolog", "run", "none.pl"])
    assert result.exit_code != 0
    assert "does not exist" in result.output


def test_run_time_limit_not_positive(tmp_path):
    path = tmp_path / "prog.pl"
    path.write_text("solve(1).\n")
    result = RUNNER.invoke(app, ["prolog", "run", str(path), "--time-limit", "0"])
    assert result.exit_code != 0
    assert "not a positive number of seconds" in result.output


def test_run_workers_zero(tmp_path):
    path = tmp_path / "prog.pl"
    path.write_text("solve(1).\n")
    result = RUNNER.invoke(app, ["prolog", "run", str(path), "--workers", "0"])
    assert result.exit_code != 0
    assert "give 1 or more" in result.output


def test_run_reference_query_variable(tmp_path):
    path = tmp_path / "prog.pl"
    path.write_text("ans(4).\n")
    result = RUNNER.invoke(
        app, ["prolog", "run", str(path), "--reference", "--query", "ans(A)"]
    )
    assert json.loads(result.stdout) == {"reference": "4"}


def test_run_batch_reference_query(tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text(json.dumps({"program": "ans(4)."}) + "\n")
    args = ["prolog", "run", str(source), "--reference", "--query", "ans(A)"]
    result = RUNNER.invoke(app, args)
    assert json.loads(result.stdout.splitlines()[-1]) == {"index": 0, "reference": "4"}


def test_structure_command(tmp_path):
    path = tmp_path / "prog.pl"
    path.write_text("a(1).\nsolve(X) :- a(Y), {X = Y}.\n")
    result = RUNNER.invoke(app, ["prolog", "structure", str(path)])
    row = json.loads(result.stdout)
    assert (row["predicates"], row["constraints"], row["valid"]) == (1, 1, True)
