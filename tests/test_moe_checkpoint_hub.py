"""Checkpoint arguments that name a hub id instead of a local directory."""

import pytest

from provex.moe.checkpoint import CheckpointError, FlexCheckpoint, resolve_checkpoint


def test_resolve_local_path_unchanged(tmp_path):
    assert resolve_checkpoint(tmp_path) == tmp_path


def test_resolve_missing_plain_path_unchanged(tmp_path):
    missing = tmp_path / "absent"
    assert resolve_checkpoint(missing) == missing


def test_offline_hub_id_says_how_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="hf download owner/flex-model"):
        FlexCheckpoint("owner/flex-model")
