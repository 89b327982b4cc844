"""Demo building blocks: settings checks, stage reuse, command calls, tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provex.demo import DemoError, DemoSettings, StageRecord, quick_settings
from provex.demo.report import _text_table, timing_rows
from provex.demo.stages import Stages, run_cli


def test_settings_reject_overlap() -> None:
    settings = DemoSettings(problems=400)
    with pytest.raises(ValueError, match="disjoint"):
        settings.check()


def test_settings_accept_defaults() -> None:
    DemoSettings().check()


def test_settings_hub_split_skips_overlap_check() -> None:
    DemoSettings(problems=300, gsm8k="openai/gsm8k").check()


def test_quick_uses_tiny_model() -> None:
    assert quick_settings(DemoSettings()).model == "tiny-random-qwen2"


def test_quick_keeps_given_model() -> None:
    assert quick_settings(DemoSettings(model="some/model")).model == "some/model"


def test_stage_runs_once(tmp_path: Path) -> None:
    calls = []
    first = Stages(tmp_path, 1, lambda line: None)
    first.run("a", "stage a", {"x": 1}, lambda: calls.append(1) or {"value": 7})
    second = Stages(tmp_path, 1, lambda line: None)
    record = second.run("a", "stage a", {"x": 1}, lambda: calls.append(2))
    assert calls == [1]
    assert record.reused
    assert record.info == {"value": 7}


def test_stage_reruns_on_new_params(tmp_path: Path) -> None:
    owned = tmp_path / "owned"
    stages = Stages(tmp_path, 2, lambda line: None)
    stages.run(
        "a", "stage a", {"x": 1}, lambda: (owned / "old").write_text("1"), [owned]
    )
    stages.run("a", "stage a", {"x": 2}, lambda: None, [owned])
    assert not (owned / "old").exists()
    assert json.loads((tmp_path / "stages" / "a.json").read_text())["params"] == {
        "x": 2
    }


def test_stage_keeps_output_of_same_params(tmp_path: Path) -> None:
    owned = tmp_path / "owned"

    def fail() -> None:
        (owned / "partial").write_text("1")
        raise RuntimeError("interrupted")

    stages = Stages(tmp_path, 2, lambda line: None)
    with pytest.raises(RuntimeError):
        stages.run("a", "stage a", {"x": 1}, fail, [owned])
    stages.run("a", "stage a", {"x": 1}, lambda: None, [owned])
    assert (owned / "partial").exists()


def test_run_cli_bad_option() -> None:
    with pytest.raises(DemoError, match="--limit"):
        run_cli(["prolog", "eval", "--model", "tiny-random-qwen2", "--limit", "0"])


def test_timing_rows_total() -> None:
    records = [
        StageRecord("a", "stage a", 10.4, 15.0, False),
        StageRecord("b", "stage b", 2.0, 3.2, True),
    ]
    assert timing_rows(records)[-1] == ["total", 12, 18, ""]


def test_text_table_aligns() -> None:
    text = _text_table(["name", "loss"], [["math", 1.5], ["python", None]])
    assert text.splitlines() == [
        "name    loss",
        "------  ----",
        "math    1.50",
        "python  -   ",
    ]


def test_data_stage_wheel_slices(tmp_path: Path) -> None:
    from provex.demo.prolog import _data_stage

    settings = DemoSettings(out=tmp_path, train_rows=12, problems=3)
    train_file, eval_file = _data_stage(settings, Stages(tmp_path, 1, print))
    evaluation = [json.loads(line) for line in eval_file.read_text().splitlines()]
    kept = [json.loads(line)["index"] for line in train_file.read_text().splitlines()]
    assert len(evaluation) == 3
    assert kept
    assert max(kept) < 12


def test_data_stage_train_split(tmp_path: Path, shared_data: Path) -> None:
    from provex.demo.prolog import _data_stage

    settings = DemoSettings(
        out=tmp_path, train_rows=12, problems=3, gsm8k=str(shared_data / "gsm8k")
    )
    train_file, _ = _data_stage(settings, Stages(tmp_path, 1, print))
    first = json.loads(train_file.read_text().splitlines()[0])
    train_rows = (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines()
    assert first["input"] == json.loads(train_rows[first["index"]])["question"]
