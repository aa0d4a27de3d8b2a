"""The distillation run's curves: the student's KL to the teacher (sampled estimate and exact), loss, length."""
from __future__ import annotations

from pathlib import Path

from distill.lifecycle import read_log
from distill.plots import plot_curves


def plot_log(log_path: Path, png_path: Path) -> Path:
    rows = read_log(log_path)
    reward_keys = sorted({k for r in rows for k in r if k.startswith("reward")})
    panels = [("KL(student || teacher) per token", ["kl", "kl_k3", "kl_exact"]), ("loss", ["loss"]),
              ("completion length (tokens)", ["completion_length"])]
    if reward_keys:
        panels.append(("reward", reward_keys))
    return plot_curves(rows, panels, png_path)
