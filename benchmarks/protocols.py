"""Throughput of the four inference protocols on a tiny random model.

For every protocol this runs ``provex.prolog.evaluate.evaluate`` over the same
questions and reports questions per minute and the share of wall time spent in
Prolog (goal: under 5%). Two model set-ups are measured:

- ``tiny``: the tiny random Qwen2 as it is. Its text never contains a program, so
  Prolog rarely runs; this measures generation plus harness overhead.
- ``tiny+programs``: the same model generates (so generation costs the same), but
  its text is replaced by CLP(Q) programs. Attempts 1 and 2 of each question give
  a rational (``15r2``), attempt 3 gives the right number, so every protocol runs
  real programs, repairs and resets.

Usage:
    python benchmarks/protocols.py [--questions 16] [--max-tokens 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence

from provex.models import build_tiny_model
from provex.prolog.engine import PrologPool
from provex.prolog.evaluate import evaluate
from provex.prolog.generation import (
    Generation,
    Generator,
    Prompt,
    SamplingParams,
    TransformersGenerator,
)
from provex.prolog.protocols import (
    PROTOCOL_NAMES,
    AgenticConfig,
    Executor,
    Question,
    build_protocol,
)

IMPORT = ":- use_module(library(clpq)).\n"
FAILING = (
    "<reasoning>\nhalf\n</reasoning>\n<answer>\n{imp}"
    "solve(X) :- {{X = {n}/2}}.\n</answer>"
)
RIGHT = (
    "<reasoning>\ntwo twos\n</reasoning>\n<answer>\n{imp}two(2).\n"
    "solve(X) :- two(T), {{X = T + T}}.\n</answer>"
)


class ProgramsOverTiny(Generator):
    """Runs the tiny model for its cost, then answers with scripted programs."""

    name = "tiny+programs"

    def __init__(self, inner: TransformersGenerator) -> None:
        self.inner = inner
        self.seen: defaultdict[str, int] = defaultdict(int)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams
    ) -> list[Generation]:
        out = self.inner.generate(prompts, params)
        for i, generation in enumerate(out):
            prompt = prompts[i // params.n]
            text = self.inner.render(prompt)
            key = text[text.index("What is") :].split("\n")[0]  # the question line
            self.seen[key] += 1
            attempt = self.seen[key]
            if attempt % 3 == 0:
                generation.text = RIGHT.format(imp=IMPORT)
            else:
                # Distinct odd numerators keep the failures from being duplicates.
                generation.text = FAILING.format(imp=IMPORT, n=2 * attempt + 13)
        return out


def protocol_for(name: str, max_tokens: int):
    return build_protocol(
        name,
        "You write Prolog.",
        params=SamplingParams(max_tokens=max_tokens),
        n=4,
        agentic=AgenticConfig(max_turns=4, max_tokens=max_tokens),
    )


def measure(generator: Generator, name: str, questions, max_tokens: int, batch: int):
    with (
        PrologPool(workers=2, time_limit=5.0) as pool,
        tempfile.TemporaryDirectory() as out,
    ):
        executor = Executor(pool)
        started = time.perf_counter()
        summary = evaluate(
            questions,
            protocol_for(name, max_tokens),
            generator,
            out,
            executor=executor,
            batch_size=batch,
            progress=False,
        )
        wall = time.perf_counter() - started
    return {
        "protocol": name,
        "questions": len(questions),
        "wall_s": wall,
        "questions_per_min": 60 * len(questions) / wall,
        "attempts": summary.total_attempts,
        "prolog_s": executor.seconds,
        # Wall time outside generation (program runs, analysis, logging).
        "harness_s": summary.harness_seconds,
        "prolog_share_pct": 100 * summary.harness_seconds / wall,
        "accuracy": summary.accuracy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model, tokenizer = build_tiny_model()
    tiny = TransformersGenerator(model, tokenizer, batch_size=args.batch_size)
    questions = [
        Question(f"q{i}", f"What is 2 + 2? ({i})", 4) for i in range(args.questions)
    ]
    tiny.generate(["warm up"], SamplingParams(max_tokens=4))
    rows = []
    for label, generator in (("tiny", tiny), ("tiny+programs", None)):
        for name in PROTOCOL_NAMES:
            gen = generator or ProgramsOverTiny(tiny)
            row = measure(gen, name, questions, args.max_tokens, args.batch_size)
            row["model"] = label
            rows.append(row)
            print(
                f"{label:14s} {name:20s} {row['questions_per_min']:7.1f} q/min  "
                f"attempts {row['attempts']:3d}  Prolog calls {row['prolog_s']:.3f} s, "
                f"harness {row['harness_s']:.3f} s ({row['prolog_share_pct']:.2f}% of "
                f"wall)  acc {row['accuracy']:.0f}%"
            )
    print(
        "\n| model | protocol | q/min | attempts | Prolog calls s | "
        "Prolog + harness s | % of wall | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['protocol']} | {r['questions_per_min']:.1f} | "
            f"{r['attempts']} | {r['prolog_s']:.3f} | {r['harness_s']:.3f} | "
            f"{r['prolog_share_pct']:.2f} | {r['wall_s']:.1f} |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
