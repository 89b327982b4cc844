"""``provex moe`` commands end to end on tiny checkpoints."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from provex.commands import app
from provex.moe.testing import make_tiny_flexolmo

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return root, make_tiny_flexolmo(root, ["math", "code"])


def test_merge_then_compress(tiny, tmp_path):
    _, paths = tiny
    merged = tmp_path / "merged"
    result = runner.invoke(
        app, ["moe", "merge", str(merged), *map(str, paths), "--top-k", "2"]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "r4"
    args = [
        "moe",
        "compress",
        str(merged),
        "--ranks",
        "math=4,code=8",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["expert_ranks"] == [0, 4, 8]
    assert (out / "compress_report.md").exists()


def test_compress_rerun_uses_cache(tiny, tmp_path):
    _, paths = tiny
    base = [
        "moe",
        "compress",
        str(paths[0]),
        "--ranks",
        "4",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    runner.invoke(app, [*base, "--out", str(tmp_path / "a")])
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--dense"])
    assert "6 hits, 0 misses" in result.output


def test_compress_rank_too_large(tiny, tmp_path):
    _, paths = tiny
    args = [
        "moe",
        "compress",
        str(paths[0]),
        "--ranks",
        "64",
        "--out",
        str(tmp_path / "x"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "the maximum is min(rows, cols) = 32" in result.output
    assert not (tmp_path / "x").exists()


def test_compress_not_flexolmo(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text('{"model_type": "llama"}')
    args = [
        "moe",
        "compress",
        str(tmp_path / "src"),
        "-r",
        "4",
        "-o",
        str(tmp_path / "x"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "is not a FlexOlmo checkpoint" in result.output


def test_params_not_flexolmo(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    result = runner.invoke(app, ["moe", "params", str(tmp_path)])
    assert result.exit_code == 2
    assert "cannot count parameters of model_type 'llama'" in result.output


def test_params_preset_domain_ranks():
    ranks = "code=16,creative=1,math=64,news=1,pes2o=1,reddit=1"
    result = runner.invoke(app, ["moe", "params", "flexmore-7x7b", "--ranks", ranks])
    assert result.exit_code == 0
    # 7,299,534,848 + 1,449,984 * (16 + 1 + 64 + 1 + 1 + 1)
    assert "7,421,333,504" in result.output


def test_params_preset():
    result = runner.invoke(app, ["moe", "params", "flexolmo-7x7b", "--json"])
    assert json.loads(result.output)["total"] == 33_270_665_216


def test_params_with_ranks():
    result = runner.invoke(
        app, ["moe", "params", "flexmore-7x7b", "--ranks", "0,1,1,1,1,1,1", "--json"]
    )
    assert json.loads(result.output)["total"] == 7_299_534_848 + 1_449_984 * 6


def test_inspect_writes_png(tiny, tmp_path):
    _, paths = tiny
    result = runner.invoke(
        app, ["moe", "inspect", str(paths[0]), "--out", str(tmp_path / "s")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s" / "spectra_math.png").stat().st_size > 1000
    assert len(json.loads((tmp_path / "s" / "spectra.json").read_text())) == 6


def test_inspect_rejects_adapter_expert(tiny, tmp_path):
    from provex.moe.lowrank import compress_checkpoint

    _, paths = tiny
    compress_checkpoint(paths[0], tmp_path / "r4", 4)
    args = ["moe", "inspect", str(tmp_path / "r4"), "--experts", "math"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "expert 'math'" in result.output
    assert "is a rank-4 adapter" in result.output


def test_opt_out_command(tiny, tmp_path):
    _, paths = tiny
    runner.invoke(app, ["moe", "merge", str(tmp_path / "m"), *map(str, paths)])
    result = runner.invoke(
        app,
        [
            "moe",
            "opt-out",
            str(tmp_path / "m"),
            str(tmp_path / "o"),
            "--experts",
            "code",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "config.json").read_text())["expert_names"] == [
        "public",
        "math",
    ]


def test_convert_layout_command(tiny, tmp_path):
    _, paths = tiny
    args = [
        "moe",
        "convert-layout",
        str(paths[0]),
        str(tmp_path / "f"),
        "--layout",
        "fused",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output


def test_params_from_directory(tiny):
    from transformers import FlexOlmoForCausalLM

    from provex.moe.params import count_model_parameters

    _, paths = tiny
    result = runner.invoke(app, ["moe", "params", str(paths[0]), "--json"])
    expected = count_model_parameters(FlexOlmoForCausalLM.from_pretrained(paths[0]))
    assert json.loads(result.output)["total"] == expected


def test_export_dense_command(tiny, tmp_path):
    _, paths = tiny
    runner.invoke(
        app,
        [
            *("moe", "compress", str(paths[0]), "-r", "4", "-o", str(tmp_path / "f")),
            *("--cache-dir", str(tmp_path / "cache")),
        ],
    )
    result = runner.invoke(
        app, ["moe", "export-dense", str(tmp_path / "f"), str(tmp_path / "d")]
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "d" / "config.json").read_text())
    assert config["model_type"] == "flex_olmo"
    assert "expert_ranks" not in config
