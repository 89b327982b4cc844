"""The seeded reference split, checked against HF datasets and the anchors."""

import json

import pytest

from provex.prolog.data import reference_split, select_split


@pytest.fixture(scope="module")
def splits():
    return reference_split(7473)


def test_split_sizes(splits):
    sizes = {name: len(rows) for name, rows in splits.items()}
    assert sizes == {"train": 1750, "validation": 375, "test": 375}


def test_split_disjoint(splits):
    union = set(splits["train"]) | set(splits["validation"]) | set(splits["test"])
    assert len(union) == 2500


def test_split_anchors(splits):
    assert splits["train"][0] == 5485
    assert splits["validation"][:3] == [5812, 5023, 4574]
    assert splits["test"][0] == 2949


def test_split_matches_datasets(splits):
    import datasets

    full = datasets.Dataset.from_dict({"row": list(range(7473))})
    subset = full.shuffle(seed=42).select(range(2500))
    first = subset.train_test_split(test_size=0.15, seed=42)
    second = first["train"].train_test_split(test_size=0.15 / 0.85, seed=42)
    assert second["train"]["row"] == splits["train"]
    assert second["test"]["row"] == splits["validation"]
    assert first["test"]["row"] == splits["test"]


def test_split_other_sizes_match_datasets():
    import datasets

    ours = reference_split(1000, seed=7, subset=None, test_fraction=0.2)
    full = datasets.Dataset.from_dict({"row": list(range(1000))}).shuffle(seed=7)
    first = full.train_test_split(test_size=0.2, seed=7)
    second = first["train"].train_test_split(test_size=0.15 / 0.8, seed=7)
    assert second["test"]["row"] == ours["validation"]


def test_select_split_rows():
    rows = list(range(7473))
    assert select_split(rows, "val")[0] == 5812


def test_select_split_unknown():
    with pytest.raises(ValueError, match="unknown split"):
        select_split([1, 2, 3], "dev")


def test_split_subset_too_large():
    with pytest.raises(ValueError, match="larger than"):
        reference_split(100)


def test_split_anchor_questions(shared_data):
    with (shared_data / "gsm8k" / "train.jsonl").open() as handle:
        rows = [json.loads(line) for line in handle]
    train = select_split(rows, "train")
    validation = select_split(rows, "validation")
    assert "Laker cement factory" in train[0]["question"]
    assert "200 mL bottles" in validation[0]["question"]
    assert "Dark Lord" in validation[1]["question"]
    assert "Amanda had 10 notebooks" in validation[2]["question"]
