"""Forward throughput of FlexMoRE at ranks 16/64/256 against dense FlexOlmo, one config.

Config (default): H=512, I=1376, 4 layers, 8 heads, vocab 4096, 7 experts, top-5, a
batch of 4 x 128 tokens, float32 on CPU. Models compared, all from one random FlexOlmo:

- ``flexolmo``: ``transformers.FlexOlmoForCausalLM`` with 7 dense experts;
- ``flexmore-dense``: the same weights in ``FlexMoreForCausalLM`` (all experts dense);
- ``flexmore-r{16,64,256}`` (``--ranks``): 6 domain experts as adapters of that rank,
  the public expert's gate/up products shared by all adapters a token is routed to;
- ``flexmore-r64-unshared``: rank 64 (or the first of ``--ranks`` without 64) with
  every adapter recomputing the public expert's gate/up products (the reference
  implementation's dispatch).

Reports median seconds per forward pass, tokens per second and parameter counts.

Usage::

    nice -n 10 python benchmarks/moe_throughput.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import FlexOlmoForCausalLM

from provex.moe.modeling import FlexMoreForCausalLM, compress_model
from provex.moe.params import count_parameters
from provex.moe.testing import tiny_flexolmo_config


def time_forward(model, tokens: torch.Tensor, repeats: int) -> float:
    """Median seconds of one forward pass (after one warm-up pass)."""
    times = []
    with torch.no_grad():
        model(tokens)
        for _ in range(repeats):
            start = time.perf_counter()
            model(tokens)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--hidden", type=int, default=512, help="hidden size H")
    parser.add_argument(
        "--intermediate", type=int, default=1376, help="expert intermediate size I"
    )
    parser.add_argument("--layers", type=int, default=4, help="decoder layers")
    parser.add_argument("--top-k", type=int, default=5, help="num_experts_per_tok")
    parser.add_argument(
        "--batch", type=int, default=4, help="sequences per forward pass"
    )
    parser.add_argument("--length", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per model")
    parser.add_argument(
        "--ranks",
        type=str,
        default="16,64,256",
        help="comma-separated adapter ranks, each at most min(H, I)",
    )
    parser.add_argument(
        "--json", type=str, default="", help="write the results to this JSON file"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = tiny_flexolmo_config(
        7,
        num_experts_per_tok=args.top_k,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=8,
        num_key_value_heads=8,
        vocab_size=4096,
    )
    base = FlexOlmoForCausalLM(config).eval()
    tokens = torch.randint(3, 4096, (args.batch, args.length))
    models = {
        "flexolmo": base,
        "flexmore-dense": FlexMoreForCausalLM.from_flexolmo(base),
    }
    ranks = [int(r) for r in args.ranks.split(",")]
    for rank in ranks:
        models[f"flexmore-r{rank}"] = compress_model(base, rank).eval()
    unshared_rank = 64 if 64 in ranks else ranks[0]
    unshared = compress_model(base, unshared_rank).eval()
    for layer in unshared.model.layers:
        layer.mlp.experts.share_base_projections = False
    models[f"flexmore-r{unshared_rank}-unshared"] = unshared

    reference = None
    rows = []
    for name, model in models.items():
        seconds = time_forward(model, tokens, args.repeats)
        reference = reference or seconds
        counts = count_parameters(model.config)
        row = {
            "model": name,
            "seconds": seconds,
            "tokens_per_second": tokens.numel() / seconds,
            "speed_vs_flexolmo": reference / seconds,
            "total_params": counts.total,
            "active_params": counts.active,
        }
        rows.append(row)
        print(
            f"{name:<22} {seconds * 1000:8.1f} ms  {row['tokens_per_second']:9.0f} "
            "tok/s  "
            f"x{row['speed_vs_flexolmo']:.2f}  total {counts.total:>11,}  active "
            f"{counts.active:>11,}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
