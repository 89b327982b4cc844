"""FlexMoRE core commands: ``provex moe compress | merge | opt-out | convert-layout |
export-dense | params | inspect``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from provex.commands.apps import moe_app

DEFAULT_CACHE = Path(
    os.environ.get("PROVEX_SVD_CACHE", Path.home() / ".cache" / "provex" / "svd")
)


def _fail(error: Exception) -> typer.Exit:
    from provex.moe.checkpoint import OutputInterrupted

    interrupted = isinstance(error, OutputInterrupted)
    # An interrupted progress bar has not ended its line yet.
    prefix = "\n" if interrupted else ""
    typer.secho(f"{prefix}error: {error}", fg=typer.colors.RED, err=True)
    # 143 = 128 + SIGTERM, the status a shell reports for a terminated process.
    return typer.Exit(code=143 if interrupted else 2)


def _user_errors() -> tuple[type[Exception], ...]:
    """Return the exception types that commands report as one error line, without a
    traceback: bad input and interrupted writes."""
    from provex.moe.checkpoint import OutputInterrupted

    return (ValueError, KeyError, FileExistsError, OutputInterrupted)


@moe_app.command("compress")
def compress(
    src: Path = typer.Argument(
        ..., help="FlexOlmo checkpoint directory (2 or N experts, either layout)."
    ),
    ranks: str = typer.Option(
        ...,
        "--ranks",
        "-r",
        help="Rank per domain expert: one integer for all, or 'math=64,code=16' "
        "(expert names from config.expert_names, or indices). 'full' keeps an expert "
        "dense.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output directory; written atomically."
    ),
    dense: bool = typer.Option(
        False,
        "--dense",
        help="Write a dense FlexOlmo checkpoint (W_public + B A) that stock "
        "transformers and "
        "vLLM load, instead of a factorised FlexMoRE checkpoint.",
    ),
    method: str = typer.Option(
        "auto",
        "--method",
        help="SVD method: auto (randomized for small ranks, exact otherwise), exact "
        "or randomized.",
    ),
    cache_dir: Path = typer.Option(
        DEFAULT_CACHE,
        "--cache-dir",
        help="Directory of cached decompositions, reused by later runs (env "
        "PROVEX_SVD_CACHE).",
    ),
    sweep_max_rank: int = typer.Option(
        0,
        "--sweep-max-rank",
        help="Compute this many singular components on a cache miss, so later runs at "
        "ranks up to it reuse the cache (0: only what this run needs).",
    ),
    layout: str = typer.Option(
        "per_expert",
        "--layout",
        help="Output layout: per_expert (transformers 4.57) or fused (5.x, dense "
        "only).",
    ),
    shard_gb: float = typer.Option(
        5.0, "--shard-size", help="Maximum shard size in GiB."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUT if it exists."
    ),
    device: str = typer.Option(
        "cpu",
        "--device",
        help="Torch device for the SVDs, e.g. cuda; weights stay on the CPU.",
    ),
) -> None:
    """Turn domain experts into low-rank adapters on the public expert (SVD)."""
    from provex.moe.lowrank import DecompositionCache, compress_checkpoint

    cache = DecompositionCache(
        cache_dir, compute_rank=sweep_max_rank or None, device=device
    )
    try:
        report = compress_checkpoint(
            src,
            out,
            ranks,
            dense=dense,
            method=method,
            cache=cache,
            layout=layout,
            max_shard_bytes=int(shard_gb * 1024**3),
            overwrite=overwrite,
            progress=True,
        )
    except _user_errors() as error:
        raise _fail(error) from error
    typer.echo(report.to_markdown().split("\n\n| layer")[0])
    typer.echo(
        f"decomposition cache {cache_dir}: {cache.hits} hits, {cache.misses} misses"
    )
    typer.echo(f"wrote {out} (report: {out / 'compress_report.md'})")


@moe_app.command("merge")
def merge(
    out: Path = typer.Argument(
        ..., help="Output directory of the merged mixture; written atomically."
    ),
    sources: list[Path] = typer.Argument(
        ..., help="Checkpoints sharing one public expert, e.g. Flex-math-2x7B-1T."
    ),
    names: str = typer.Option(
        "",
        "--names",
        help="Comma-separated domain expert names in input order (default: from "
        "configs or directory names).",
    ),
    top_k: int = typer.Option(
        0, "--top-k", help="num_experts_per_tok of the output (0: all experts)."
    ),
    shard_gb: float = typer.Option(
        5.0, "--shard-size", help="Maximum shard size in GiB."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUT if it exists."
    ),
) -> None:
    """Merge 2-expert checkpoints into one mixture: public expert, then domains."""
    from provex.moe.checkpoint import merge_checkpoints

    try:
        merge_checkpoints(
            sources,
            out,
            names=[n.strip() for n in names.split(",")] if names else None,
            num_experts_per_tok=top_k or None,
            max_shard_bytes=int(shard_gb * 1024**3),
            overwrite=overwrite,
            progress=True,
        )
    except _user_errors() as error:
        raise _fail(error) from error
    config = json.loads((out / "config.json").read_text())
    typer.echo(
        f"wrote {out}: {config['num_experts']} experts {config['expert_names']}, "
        f"num_experts_per_tok={config['num_experts_per_tok']}"
    )


@moe_app.command("opt-out")
def opt_out(
    src: Path = typer.Argument(..., help="Mixture checkpoint directory."),
    out: Path = typer.Argument(
        ..., help="Output directory without the removed experts; written atomically."
    ),
    experts: str = typer.Option(
        ..., "--experts", help="Comma-separated expert names or indices to remove."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUT if it exists."
    ),
) -> None:
    """Remove experts and their router rows (same outputs as masking their logits)."""
    from provex.moe.checkpoint import remove_experts

    try:
        remove_experts(
            src,
            out,
            [e.strip() for e in experts.split(",")],
            overwrite=overwrite,
            progress=True,
        )
    except _user_errors() as error:
        raise _fail(error) from error
    config = json.loads((out / "config.json").read_text())
    typer.echo(
        f"wrote {out}: experts {config['expert_names']}, "
        f"num_experts_per_tok={config['num_experts_per_tok']}"
    )


@moe_app.command("convert-layout")
def convert_layout(
    src: Path = typer.Argument(..., help="FlexOlmo checkpoint directory."),
    out: Path = typer.Argument(..., help="Output directory; written atomically."),
    layout: str = typer.Option(
        "per_expert",
        "--layout",
        help="per_expert (transformers 4.57 keys) or fused (5.x "
        "gate_up_proj/down_proj).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUT if it exists."
    ),
) -> None:
    """Rewrite a FlexOlmo checkpoint in the other transformers weight layout."""
    from provex.moe.checkpoint import convert_layout as convert

    try:
        convert(src, out, layout=layout, overwrite=overwrite, progress=True)
    except _user_errors() as error:
        raise _fail(error) from error
    typer.echo(f"wrote {out} in the {layout} layout")


@moe_app.command("export-dense")
def export_dense(
    src: Path = typer.Argument(..., help="Factorised FlexMoRE checkpoint directory."),
    out: Path = typer.Argument(
        ..., help="Output FlexOlmo checkpoint directory; written atomically."
    ),
    layout: str = typer.Option(
        "per_expert",
        "--layout",
        help="per_expert (transformers 4.57 keys, what vLLM reads) or fused (5.x).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUT if it exists."
    ),
) -> None:
    """Write W_base + B A for every adapter: a FlexOlmo checkpoint for vLLM."""
    from provex.moe.lowrank import materialise_checkpoint

    try:
        materialise_checkpoint(src, out, layout, overwrite=overwrite, progress=True)
    except _user_errors() as error:
        raise _fail(error) from error
    typer.echo(f"wrote {out} (model_type flex_olmo)")


@moe_app.command("params")
def params(
    source: str = typer.Argument(
        ...,
        help="Preset (flexolmo-7x7b, flexolmo-2x7b, olmo2-7b, flexmore-7x7b), "
        "checkpoint directory or config.json.",
    ),
    ranks: str = typer.Option(
        "",
        "--ranks",
        "-r",
        help="Ranks to count with: one integer for all domain experts, 'math=64,...', "
        "or a "
        "comma list with one entry per expert ('0,64,16'; 0 = dense).",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON instead of a table."
    ),
) -> None:
    """Count parameters from a config: total, active per token, per component."""
    from provex.moe.checkpoint import default_expert_names
    from provex.moe.params import breakeven_rank, count_parameters, load_config

    try:
        config = load_config(source)
        rank_list = _rank_list(ranks, config, default_expert_names) if ranks else None
        count = count_parameters(config, rank_list)
    except (ValueError, KeyError) as error:
        raise _fail(error) from error
    if as_json:
        typer.echo(json.dumps(count.to_json(), indent=2))
        return
    typer.echo(f"{'component':<14} {'parameters':>16}")
    for name, value in count.components.items():
        typer.echo(f"{name:<14} {value:>16,}")
    typer.echo(f"{'total':<14} {count.total:>16,}")
    typer.echo(f"{'active/token':<14} {count.active:>16,}")
    typer.echo("per expert:")
    names = config.get("expert_names") or default_expert_names(len(count.per_expert))
    for index, value in enumerate(count.per_expert):
        label = f"{index} {names[index]}" if index < len(names) else str(index)
        typer.echo(f"  {label:<12} {value:>16,}")
    hidden, inter = int(config["hidden_size"]), int(config["intermediate_size"])
    typer.echo(
        "adapters hold more than a dense expert above rank "
        f"{breakeven_rank(hidden, inter):.0f}"
    )


def _rank_list(spec: str, config: dict, default_names) -> list[int]:
    from provex.moe.lowrank import parse_ranks

    num = int(config.get("num_experts", 1))
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) == num and all(p.isdigit() for p in parts):
        return [int(p) for p in parts]
    names = config.get("expert_names") or default_names(num)
    resolved = parse_ranks(spec, names)
    return [resolved.get(e) or 0 for e in range(num)]


@moe_app.command("inspect")
def inspect(
    ckpt: Path = typer.Argument(
        ..., help="FlexOlmo checkpoint directory with dense domain experts."
    ),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Directory for the PNG plots and spectra.json (default: CKPT/spectra).",
    ),
    experts: str = typer.Option(
        "",
        "--experts",
        help="Comma-separated expert names or indices (default: all domain experts).",
    ),
    device: str = typer.Option(
        "cpu", "--device", help="Torch device for the singular values, e.g. cuda."
    ),
) -> None:
    """Plot singular values of expert-minus-public deltas per expert and layer."""
    from provex.moe.checkpoint import FlexCheckpoint, resolve_experts
    from provex.moe.lowrank import decompose_checkpoint_spectra, plot_spectra

    out = out or ckpt / "spectra"
    try:
        with FlexCheckpoint(ckpt) as reader:
            names = reader.expert_names
        chosen = (
            resolve_experts([e.strip() for e in experts.split(",")], names)
            if experts
            else None
        )
        spectra = decompose_checkpoint_spectra(
            ckpt, chosen, progress=True, device=device
        )
    except _user_errors() as error:
        raise _fail(error) from error
    files, summary = plot_spectra(spectra, names, out)
    typer.echo(summary)
    for file in files:
        typer.echo(f"wrote {file}")
