"""The reference 1,750 / 375 / 375 split, with the semantics of HF ``datasets``.

``Dataset.shuffle(seed)`` orders rows by ``np.random.default_rng(seed).permutation(n)``.
``Dataset.train_test_split(test_size=f, seed)`` draws the same kind of permutation of
its n rows, puts the first ``ceil(f * n)`` positions in ``test`` and the rest in
``train``. The reference shuffles the 7,473 GSM8K-Prolog training rows with seed 42,
keeps the first 2,500, splits off 15% as test (375), then splits ``0.15 / 0.85`` of the
remaining 2,125 off as validation (375), leaving 1,750 for training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

REFERENCE_SEED = 42
REFERENCE_SUBSET = 2500
REFERENCE_TEST_FRACTION = 0.15
REFERENCE_VAL_FRACTION = 0.15


def shuffle_indices(num_rows: int, seed: int) -> np.ndarray:
    """Return the row order of ``Dataset.shuffle(seed=seed)`` on ``num_rows`` rows."""
    return np.random.default_rng(seed).permutation(num_rows)


def train_test_indices(
    num_rows: int, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(train, test)`` positions of ``train_test_split(test_size, seed)``."""
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be a fraction in (0, 1), got {test_size}")
    permutation = np.random.default_rng(seed).permutation(num_rows)
    num_test = math.ceil(test_size * num_rows)
    return permutation[num_test:], permutation[:num_test]


def reference_split(
    num_rows: int = 7473,
    *,
    seed: int = REFERENCE_SEED,
    subset: int | None = REFERENCE_SUBSET,
    test_fraction: float = REFERENCE_TEST_FRACTION,
    val_fraction: float = REFERENCE_VAL_FRACTION,
) -> dict[str, list[int]]:
    """Return the original row indices of the train, validation and test splits.

    Args:
        num_rows: rows in the full training set (7,473 for GSM8K).
        seed: the seed of the shuffle and of both splits.
        subset: rows kept after shuffling (``None`` keeps all).
        test_fraction: share of the subset held out as test.
        val_fraction: share of the subset held out as validation; the second split
            uses ``val_fraction / (1 - test_fraction)`` of the rest.

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}`` with indices into
        the original rows. With the defaults: 1,750 / 375 / 375 rows, train[0] =
        5485 and validation[0] = 5812.
    """
    order = shuffle_indices(num_rows, seed)
    if subset is not None:
        if subset > num_rows:
            raise ValueError(
                f"subset {subset} is larger than the {num_rows} rows; the reference "
                "split takes 2,500 of the 7,473 GSM8K training rows"
            )
        order = order[:subset]
    trainval_pos, test_pos = train_test_indices(len(order), test_fraction, seed)
    trainval = order[trainval_pos]
    second = val_fraction / (1.0 - test_fraction)
    train_pos, val_pos = train_test_indices(len(trainval), second, seed)
    return {
        "train": [int(i) for i in trainval[train_pos]],
        "validation": [int(i) for i in trainval[val_pos]],
        "test": [int(i) for i in order[test_pos]],
    }


def select_split(rows: Sequence[T], split: str, **options: Any) -> list[T]:
    """Return the rows of one reference split (``train``, ``validation``, ``test``).

    ``options`` go to ``reference_split``; ``num_rows`` is ``len(rows)``.
    """
    key = "validation" if split in ("val", "valid") else split
    if key not in ("train", "validation", "test"):
        raise ValueError(
            f"unknown split {split!r}; use 'train', 'validation' or 'test'"
        )
    splits = reference_split(len(rows), **options)
    return [rows[index] for index in splits[key]]
