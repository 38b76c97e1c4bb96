"""Where the bundled data lives, found without importing any code.

``fodlam.calibration`` (the top-level ``calibration/`` folder in a checkout) holds the
published tables and the accelerator profiles; the foundations read those files, so they
locate the folder through the import system's spec rather than by importing the package."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def calibration_dir() -> Path:
    spec = importlib.util.find_spec("fodlam.calibration")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]).resolve()
    return Path(__file__).resolve().parent.parent / "calibration"  # pragma: no cover
