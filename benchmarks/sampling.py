"""Time of one sampling step: transformers' top-p warper against provex's sampler.

Both draw a token per row from softmax(logits / T) restricted to the top-p nucleus.
transformers sorts each row of the vocabulary. ``NucleusSampler`` looks at the
largest logits first and sorts only rows whose nucleus does not fit there. The
logits are random, scaled so the nucleus contains a few dozen tokens, as it does for a
language model at temperature 0.2. ``--model`` also times whole ``generate`` calls
of a real model, with either sampler.

    python benchmarks/sampling.py
    python benchmarks/sampling.py --model gemma-3-270m --batch 20 --new-tokens 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from transformers import LogitsProcessorList
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from provex.prolog.nucleus import NucleusSampler


def transformers_step(logits: torch.Tensor, temperature: float, top_p: float):
    scores = TemperatureLogitsWarper(temperature)(None, logits)
    scores = TopPLogitsWarper(top_p)(None, scores)
    return torch.multinomial(torch.softmax(scores, dim=-1), 1)


def time_steps(fn, repeats: int) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def time_generate(args: argparse.Namespace) -> dict[str, float]:
    from provex.models import load_causal_lm

    model, _ = load_causal_lm(args.model, dtype=args.dtype)
    ids = torch.randint(1000, 20000, (args.batch, args.prompt_tokens))
    mask = torch.ones_like(ids)
    common = dict(
        max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, top_k=None
    )
    runs = {
        "transformers": dict(do_sample=True, temperature=0.2, top_p=0.95),
        "provex": dict(
            do_sample=False,
            logits_processor=LogitsProcessorList([NucleusSampler(0.2, 0.95)]),
        ),
    }
    out = {}
    for name, kwargs in runs.items():
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(ids, attention_mask=mask, **common, **kwargs)
        out[name] = time.perf_counter() - started
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument(
        "--vocab",
        type=int,
        default=262_144,
        help="Vocabulary size (default: Gemma 3's).",
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--model",
        help="Also time generate() of this model (hub id, directory or package).",
    )
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--prompt-tokens", type=int, default=300)
    parser.add_argument("--new-tokens", type=int, default=32)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    logits = torch.randn(args.batch, args.vocab) * 3.0
    sampler = NucleusSampler(0.2, 0.95)
    slow = time_steps(lambda: transformers_step(logits, 0.2, 0.95), args.repeats)
    fast = time_steps(lambda: sampler(None, logits), args.repeats)

    result = {
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {args.threads} torch threads",
        "load_average": os.getloadavg()[0],
        "batch": args.batch,
        "vocab": args.vocab,
        "transformers_ms_per_step": round(slow * 1000, 2),
        "provex_ms_per_step": round(fast * 1000, 2),
        "speedup": round(slow / fast, 1),
    }
    if args.model:
        seconds = time_generate(args)
        result["generate_s"] = {k: round(v, 2) for k, v in seconds.items()}
        result["generate_speedup"] = round(
            seconds["transformers"] / seconds["provex"], 2
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
