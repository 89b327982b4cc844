"""`provex demo --quick` end to end: a random tiny Qwen2, a tiny FlexOlmo, and a
rerun that reuses every finished stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provex.commands import app

PROTOCOLS = ("single", "best-of-n", "agentic-internal", "agentic-independent")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """Run the quick demo twice in one output folder; return the folder and both
    outputs."""
    root = tmp_path_factory.mktemp("demo")
    patch = pytest.MonkeyPatch()
    patch.setenv("PROVEX_CACHE", str(root / "cache"))
    out = root / "out"
    runner = CliRunner()
    try:
        first = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
        assert first.exit_code == 0, first.output
        second = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
        assert second.exit_code == 0, second.output
    finally:
        patch.undo()
    return out, first.output, second.output


@pytest.mark.slow
def test_quick_report_sections(quick_run: tuple[Path, str, str]) -> None:
    out, _, _ = quick_run
    report = (out / "report.md").read_text()
    assert "## Prolog as a tool" in report
    assert "## FlexMoRE" in report
    assert "## Timings" in report
    assert "### Each expert as a low-rank adapter" in report


@pytest.mark.slow
def test_quick_report_plots(quick_run: tuple[Path, str, str]) -> None:
    out, _, _ = quick_run
    assert (out / "prolog" / "protocols.png").stat().st_size > 0
    assert (out / "prolog" / "grpo" / "rewards.png").stat().st_size > 0
    assert (out / "moe" / "sweep" / "analysis" / "loss_vs_rank.png").exists()


@pytest.mark.slow
def test_quick_evaluates_all_protocols(quick_run: tuple[Path, str, str]) -> None:
    out, _, _ = quick_run
    for tag in ("base", "grpo"):
        for protocol in PROTOCOLS:
            summary = json.loads(
                (out / "prolog" / f"eval-{tag}-{protocol}" / "summary.json").read_text()
            )
            assert summary["questions"] == 2, (tag, protocol)


@pytest.mark.slow
def test_quick_data_disjoint(quick_run: tuple[Path, str, str]) -> None:
    out, _, _ = quick_run
    data = out / "prolog" / "data"
    train = {
        json.loads(line)["input"]
        for line in (data / "train-programs.jsonl").read_text().splitlines()
    }
    evaluation = {
        json.loads(line)["question"]
        for line in (data / "eval-gsm8k-test.jsonl").read_text().splitlines()
    }
    assert train
    assert not train & evaluation


@pytest.mark.slow
def test_quick_sweep_has_full_experts(quick_run: tuple[Path, str, str]) -> None:
    out, _, _ = quick_run
    rows = [
        json.loads(line)
        for line in (out / "moe" / "sweep" / "results.jsonl").read_text().splitlines()
    ]
    full = {r["experts"][0] for r in rows if r["kind"] == "2x" and r["rank"] == "full"}
    assert full == {"python", "prolog", "math"}


@pytest.mark.slow
def test_quick_rerun_reuses_stages(quick_run: tuple[Path, str, str]) -> None:
    _, first, second = quick_run
    assert "done before" not in first
    assert second.count("done before") == 14
    assert " ..." not in second
