"""Command line: provex prolog run and provex prolog structure."""

from __future__ import annotations

import json

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
    assert "no string field" in result.output


def test_structure_command(tmp_path):
    path = tmp_path / "prog.pl"
    path.write_text("a(1).\nsolve(X) :- a(Y), {X = Y}.\n")
    result = RUNNER.invoke(app, ["prolog", "structure", str(path)])
    row = json.loads(result.stdout)
    assert (row["predicates"], row["constraints"], row["valid"]) == (1, 1, True)
