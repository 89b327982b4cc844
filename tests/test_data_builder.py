"""Programs built from GSM8K calculator annotations, verified by execution."""

import json
import re
from collections import Counter

import pytest
from typer.testing import CliRunner

from provex.commands import app
from provex.prolog.data import build_dataset, build_program, load_gsm8k, verify_programs
from provex.prolog.data.builder import build_outcomes, rejects_path
from provex.prolog.engine import PrologPool

QUESTION = "Tom has 3 boxes with 4 apples each. He eats 2 apples. How many are left?"
SOLUTION = "Tom has 3*4=<<3*4=12>>12 apples.\nHe has 12-2=10 apples left.\n#### 10"
EXPECTED = """:- use_module(library(clpq)).

boxes(3).
apples(4).
eats_apples(2).

solve(Apples_left) :-
    boxes(Boxes),
    apples(Apples),
    eats_apples(Eats_apples),
    {Tom_apples = Boxes * Apples},
    {Apples_left = Tom_apples - Eats_apples}.
"""


@pytest.fixture(scope="module")
def pool():
    with PrologPool(workers=2) as pool:
        yield pool


@pytest.fixture(scope="module")
def train_rows(shared_data):
    return load_gsm8k(str(shared_data / "gsm8k" / "train.jsonl"))


def test_build_program_text():
    assert build_program(QUESTION, SOLUTION) == EXPECTED


def test_build_program_verifies(pool):
    assert verify_programs([EXPECTED], ["10"], pool=pool) == ["verified"]


def test_build_unannotated_final_step():
    # "12-2=10" has no <<>> mark and is read from the text.
    assert "Tom_apples - Eats_apples" in build_program(QUESTION, SOLUTION)


def test_build_drops_unused_steps():
    solution = "a 2*3=<<2*3=6>>6 b.\nc 5+5=<<5+5=10>>10 d.\n#### 6"
    assert "5" not in build_program("2 cats and 3 dogs, 5 birds", solution)


def test_build_no_steps():
    with pytest.raises(ValueError, match="no_steps"):
        build_program("q", "The answer is five.\n#### 5")


def test_build_gold_not_computed():
    with pytest.raises(ValueError, match="gold_not_computed"):
        build_program("q", "2+2=<<2+2=4>>4\n#### 5")


def test_build_decimal_fact():
    program = build_program("A pen costs $1.50.", "1.50*2=<<1.50*2=3>>3\n#### 3")
    assert "dollars_pen_costs(1.5)." in program


def test_build_unit_constant_name():
    program = build_program("He works 2 hours.", "2*60=<<2*60=120>>120 min\n#### 120")
    assert "minutes_per_hour(60)." in program


def test_build_reserved_name_avoided():
    program = build_program("Pick a number: 7 number", "7*2=<<7*2=14>>14\n#### 14")
    assert "\nnumber(" not in program


def test_verify_rational_dropped(pool):
    program = ":- use_module(library(clpq)).\nsolve(X) :- {X = 9/2}."
    assert verify_programs([program], ["4.5"], pool=pool) == ["rational"]


def test_verify_no_program(pool):
    assert verify_programs([None], ["1"], pool=pool) == ["no_code"]


def test_builder_first_200_train(train_rows, pool):
    outcomes = build_outcomes(train_rows[:200], pool=pool)
    reasons = Counter(outcome.reason for outcome in outcomes)
    assert reasons["verified"] >= 180  # the builder verifies 192 of these 200


def test_builder_programs_in_reference_style(train_rows, pool):
    outcomes = build_outcomes(train_rows[:50], pool=pool)
    kept = [o.program for o in outcomes if o.reason == "verified"]
    assert all(p.startswith(":- use_module(library(clpq)).\n") for p in kept)
    assert all("solve(" in p for p in kept)
    assert all("{" in p for p in kept)
    assert not any("write" in p or "format(" in p for p in kept)


def test_build_dataset_resumes(train_rows, pool, tmp_path):
    out = tmp_path / "built.jsonl"
    first = build_dataset(train_rows[:6], out, pool=pool, progress=False)
    second = build_dataset(train_rows[:12], out, pool=pool, progress=False)
    kept = out.read_text().splitlines()
    dropped = (
        rejects_path(out).read_text().splitlines() if rejects_path(out).exists() else []
    )
    assert first.total == 6
    assert second.total == 12
    assert len(kept) + len(dropped) == 12
    assert [json.loads(line)["index"] for line in kept] == sorted(
        json.loads(line)["index"] for line in kept
    )


def test_build_dataset_rows_load_back(train_rows, pool, tmp_path):
    from provex.prolog.data import load_gsm8k_prolog

    out = tmp_path / "built.jsonl"
    build_dataset(train_rows[:4], out, pool=pool, progress=False)
    rows = load_gsm8k_prolog(str(out))
    assert rows[0]["numerical_result"] == "72"
    assert rows[0]["answer"].startswith(":- use_module(library(clpq)).")


def test_cli_build_data(shared_data, tmp_path):
    out = tmp_path / "cli.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "prolog",
            "build-data",
            "--source",
            str(shared_data / "gsm8k" / "train.jsonl"),
            "--limit",
            "10",
            "--workers",
            "2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "of 10 rows" in result.output


def test_cli_build_data_reference_split(shared_data, tmp_path):
    out = tmp_path / "cli.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "prolog",
            "build-data",
            "--source",
            str(shared_data / "gsm8k" / "train.jsonl"),
            "--reference-split",
            "validation",
            "--limit",
            "3",
            "--workers",
            "2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    dropped = rejects_path(out)
    lines = out.read_text().splitlines()
    lines += dropped.read_text().splitlines() if dropped.exists() else []
    assert sorted(json.loads(line)["index"] for line in lines) == [4574, 5023, 5812]


def test_cli_check_gold(shared_data, tmp_path):
    programs = tmp_path / "p.jsonl"
    gold = tmp_path / "g.jsonl"
    lines_p = (shared_data / "gsm8k_prolog" / "test.jsonl").read_text().splitlines()
    lines_g = (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()
    programs.write_text("\n".join(lines_p[420:430]) + "\n")
    gold.write_text("\n".join(lines_g[420:430]) + "\n")
    report = tmp_path / "report.json"
    result = CliRunner().invoke(
        app,
        [
            "prolog",
            "check-gold",
            "--programs",
            str(programs),
            "--gold",
            str(gold),
            "--workers",
            "2",
            "--report",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "agreement: 9 of 10" in result.output
    assert json.loads(report.read_text())["mismatches"][0]["index"] == 3


def test_build_uses_row_gold(pool):
    # A corrected gold answer replaces the "####" line of the solution.
    row = {"question": "2 cats", "solution": "2*3=<<2*3=6>>6\n2*4=<<2*4=8>>8\n#### 8"}
    outcomes = build_outcomes([{**row, "numerical_result": "6"}], pool=pool)
    assert outcomes[0].reason == "verified"
    assert outcomes[0].gold == "6"


def test_build_unit_equation():
    solution = "Jo has 5-3=<<5-3=2>>2 cups.\nSo 2 cups / 1 cup/day = 2 days\n#### 2"
    program = build_program("Jo has 5 cups and uses 3 cups, 1 cup a day.", solution)
    assert program.splitlines()[-1].startswith("    {Days = ")


def test_build_unit_equation_percent():
    solution = "Then 2 tbs / 50 tbs * 100% = 4%\n#### 4"
    program = build_program("2 tbs of powder in 50 tbs of water", solution)
    assert "Tbs_powder / Tbs_water * Percent_factor}." in program


def test_build_answer_named_from_question(train_rows):
    # Lee mows lawns: no words follow the final step, so the question names it.
    row = train_rows[65]
    program = build_program(row["question"], row["solution"])
    assert "solve(Dollars_lee_earn) :-" in program


def test_build_step_named_from_operands(train_rows):
    row = train_rows[65]
    program = build_program(row["question"], row["solution"])
    assert "{Dollars_charges_times_lawns = Dollars_charges * Lawns}" in program


def test_build_percent_rate_name(train_rows):
    # "He earns 20% less" while the solution multiplies by 0.2.
    row = train_rows[64]
    program = build_program(row["question"], row["solution"])
    assert "earns_rate(0.2)." in program


def test_build_no_step_fallback_names(train_rows):
    programs = []
    for row in train_rows[:200]:
        try:
            programs.append(build_program(row["question"], row["solution"]))
        except ValueError:
            continue
    assert not [p for p in programs if re.search(r"\bStep(_\d+)?\b", p)]


def test_build_repeated_value_second_quantity():
    # "12/12": the first 12 is the earlier step, the second the 12 boxes.
    question = "Ann has 6 red and 6 green apples and puts them in 12 boxes. How many?"
    solution = (
        "Ann has 6+6=<<6+6=12>>12 apples.\nEach box gets 12/12=<<12/12=1>>1.\n#### 1"
    )
    program = build_program(question, solution)
    assert "boxes(12)." in program
    assert "/ Boxes}." in program


def test_build_ordinal_fraction_name():
    question = "A store makes a third of its 36 sales in fabric. How many fabric sales?"
    solution = "Fabric sales are 36/3=<<36/3=12>>12.\n#### 12"
    program = build_program(question, solution)
    assert "third_factor(3)." in program
