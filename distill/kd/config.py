"""`kd:` in a recipe: its config classes live in distill.config with the other stages'; re-exported here."""
from __future__ import annotations

from distill.config import KDConfig, OfflineKDConfig

__all__ = ["KDConfig", "OfflineKDConfig"]
