"""The capsules that ship with SomaAgent, installable by id offline (``soma capsule install
calculator``): one folder each, holding ``capsule.yaml`` and, for python capsules, the code."""

from __future__ import annotations

import functools
from pathlib import Path

from somaagent.capsules.package import Package, from_folder

__all__ = ["CATALOG_DIR", "catalog_ids", "catalog_package"]

CATALOG_DIR = Path(__file__).parent


def catalog_ids() -> list[str]:
    """The ids of the shipped capsules, sorted."""
    return sorted(path.name for path in CATALOG_DIR.iterdir() if (path / "capsule.yaml").is_file())


@functools.cache
def catalog_package(capsule_id: str) -> Package | None:
    """The shipped capsule ``capsule_id``, or ``None``."""
    if capsule_id not in catalog_ids():
        return None
    return from_folder(CATALOG_DIR / capsule_id)
