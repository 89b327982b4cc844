"""Peak memory of converting a multi-shard FlexOlmo checkpoint of more than 1 GB.

Writes a synthetic 2-expert FlexOlmo checkpoint (float32, 256 MiB shards; by default
H=1024, I=4096, 8 layers, vocab 32768: about 1.2 GB), then runs each conversion in a
fresh child process and reports its peak resident memory (``ru_maxrss``) above the
memory after imports, against the largest tensor of the checkpoint:

- ``compress``: factorised FlexMoRE at rank 16;
- ``compress --dense``: dense-materialised FlexOlmo at rank 16;
- ``convert-layout fused``: per-expert keys to the transformers 5.x fused layout;
- ``merge``: the checkpoint merged with a second copy of itself (3 experts).

Goal: peak above baseline <= 4 x largest tensor.

Usage::

    nice -n 10 python benchmarks/moe_convert_memory.py --workdir /tmp/moe-mem
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, psutil
from pathlib import Path
import torch
torch.set_num_threads(1)
from provex.moe.checkpoint import convert_layout, merge_checkpoints
from provex.moe.lowrank import compress_checkpoint
task, src, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
baseline = psutil.Process().memory_info().rss
start = time.perf_counter()
if task == "compress":
    compress_checkpoint(src, out, 16, max_shard_bytes=256 * 2**20)
elif task == "compress-dense":
    compress_checkpoint(src, out, 16, dense=True, max_shard_bytes=256 * 2**20)
elif task == "convert-fused":
    convert_layout(src, out, "fused", max_shard_bytes=256 * 2**20)
elif task == "merge":
    merge_checkpoints([src, src], out, names=["a", "b"], max_shard_bytes=256 * 2**20)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
result = {"task": task, "baseline": baseline, "peak": peak, "seconds": seconds}
print(json.dumps(result))
"""


def make_checkpoint(
    path: Path, hidden: int, inter: int, layers: int, vocab: int
) -> int:
    """Write the synthetic checkpoint tensor by tensor.

    Returns:
        The size of the largest tensor in bytes.
    """
    import torch

    from provex.moe.checkpoint import (
        TensorPlan,
        expert_key,
        router_key,
        write_config,
        write_sharded,
    )
    from provex.moe.testing import tiny_flexolmo_config

    def random(shape, seed, scale=0.02):
        def produce():
            generator = torch.Generator().manual_seed(seed)
            return torch.randn(shape, generator=generator) * scale

        return produce

    def expert_one(shape, seed):
        def produce():
            public = random(shape, seed)()
            return public + random(shape, seed + 10**6, 0.002)()

        return produce

    plans = [
        TensorPlan(
            "model.embed_tokens.weight",
            (vocab, hidden),
            torch.float32,
            random((vocab, hidden), 1),
        ),
        TensorPlan(
            "lm_head.weight", (vocab, hidden), torch.float32, random((vocab, hidden), 2)
        ),
        TensorPlan(
            "model.norm.weight", (hidden,), torch.float32, lambda: torch.ones(hidden)
        ),
    ]
    seed = 100
    for layer in range(layers):
        prefix = f"model.layers.{layer}"
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            seed += 1
            plans.append(
                TensorPlan(
                    f"{prefix}.self_attn.{name}.weight",
                    (hidden, hidden),
                    torch.float32,
                    random((hidden, hidden), seed),
                )
            )
        for name in (
            "self_attn.q_norm",
            "self_attn.k_norm",
            "post_attention_layernorm",
            "post_feedforward_layernorm",
        ):
            plans.append(
                TensorPlan(
                    f"{prefix}.{name}.weight",
                    (hidden,),
                    torch.float32,
                    lambda: torch.ones(hidden),
                )
            )
        seed += 1
        plans.append(
            TensorPlan(
                router_key(layer), (2, hidden), torch.float32, random((2, hidden), seed)
            )
        )
        for proj, shape in (
            ("gate_proj", (inter, hidden)),
            ("up_proj", (inter, hidden)),
            ("down_proj", (hidden, inter)),
        ):
            seed += 1
            plans.append(
                TensorPlan(
                    expert_key(layer, 0, f"{proj}.weight"),
                    shape,
                    torch.float32,
                    random(shape, seed),
                )
            )
            plans.append(
                TensorPlan(
                    expert_key(layer, 1, f"{proj}.weight"),
                    shape,
                    torch.float32,
                    expert_one(shape, seed),
                )
            )
    path.mkdir(parents=True)
    write_sharded(
        path,
        sorted(plans, key=lambda p: p.name),
        max_shard_bytes=256 * 2**20,
        progress=True,
        description="writing synthetic checkpoint",
    )
    config = tiny_flexolmo_config(
        2,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        vocab_size=vocab,
        num_attention_heads=8,
        num_key_value_heads=8,
    ).to_dict()
    config["architectures"] = ["FlexOlmoForCausalLM"]
    write_config(path, config)
    return max(p.nbytes for p in plans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp/moe-convert-memory"),
        help="scratch directory (deleted first)",
    )
    parser.add_argument("--hidden", type=int, default=1024, help="hidden size H")
    parser.add_argument(
        "--intermediate", type=int, default=4096, help="expert intermediate size I"
    )
    parser.add_argument("--layers", type=int, default=8, help="decoder layers")
    parser.add_argument("--vocab", type=int, default=32768, help="vocabulary size")
    parser.add_argument(
        "--json", type=str, default="", help="write the results to this JSON file"
    )
    args = parser.parse_args()

    shutil.rmtree(args.workdir, ignore_errors=True)
    src = args.workdir / "src"
    largest = make_checkpoint(
        src, args.hidden, args.intermediate, args.layers, args.vocab
    )
    total = sum(f.stat().st_size for f in src.glob("*.safetensors"))
    shards = len(list(src.glob("*.safetensors")))
    print(
        f"checkpoint: {total / 1e9:.2f} GB in {shards} shards, largest tensor "
        f"{largest / 2**20:.0f} MiB"
    )

    rows = []
    for task in ("compress", "compress-dense", "convert-fused", "merge"):
        out = args.workdir / task
        start = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-c", CHILD, task, str(src), str(out)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        result["wall_seconds"] = time.perf_counter() - start
        result["above_baseline"] = result["peak"] - result["baseline"]
        result["ratio_to_largest"] = result["above_baseline"] / largest
        rows.append(result)
        print(
            f"{task:<15} peak {result['peak'] / 2**20:7.0f} MiB, after imports "
            f"{result['baseline'] / 2**20:6.0f} MiB, "
            f"above {result['above_baseline'] / 2**20:6.0f} MiB = "
            f"{result['ratio_to_largest']:.2f} x largest tensor, "
            f"{result['seconds']:.1f} s",
            flush=True,
        )
        shutil.rmtree(out, ignore_errors=True)
    summary = {
        "checkpoint_bytes": total,
        "shards": shards,
        "largest_tensor_bytes": largest,
        "runs": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
