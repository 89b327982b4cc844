"""Fixtures shared by the whole suite: data paths and offline settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Any accidental hub access fails at once instead of hanging on the closed network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    """Public data sets kept beside the checkout (GSM8K, GSM8K-Prolog, MMLU-Pro)."""
    override = os.environ.get("PROVEX_TEST_DATA")
    return Path(override) if override else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = _shared_data_dir()
    if not (path / "gsm8k" / "train.jsonl").exists():
        pytest.skip(f"test data not found at {path}; set PROVEX_TEST_DATA")
    return path
