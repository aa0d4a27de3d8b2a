"""What a generation run leaves beside its traces: the result it returns, the stats file, the config check."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.errors import DistillError
from distill.jsonl import JsonlReader
from distill.layout import stats_path_for

__all__ = ["GenerateResult", "check_same_config", "stats_path_for"]


@dataclass
class GenerateResult:
    output: Path
    stats_path: Path
    stats: dict[str, Any]
    written: int   # traces written by this call
    skipped: int   # (problem, sample) pairs already in the output, left alone


def check_same_config(output: Path, digest: str) -> None:
    """Refuse to resume into a file written under another config: the traces would silently mix."""
    if not output.exists():
        return
    for obj in JsonlReader(output, on_error="skip"):
        found = obj.get("config_hash")
        if found and found != digest:
            raise DistillError(
                f"{output}: holds traces made with config {found}, this config is {digest} "
                "(sampling, prompts, model or backend changed); write to a new output or delete the file")
        return
