"""The RL run's per-step JSONL log and its plot: reward (total and per function), accuracy, KL, completion
length, clip fraction, entropy, seconds per step.

Rows are what TRL's GRPOTrainer logs at each step, renamed to short keys; a resumed run first drops the
rows past its checkpoint (`distill.lifecycle.rewind_log`), so the curve continues without repeats.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from distill.lifecycle import read_log
from distill.plots import plot_curves
from distill.sft.callbacks import StepLogCallback

RENAMES = {"completions/mean_length": "completion_length", "completions/clipped_ratio": "truncated_fraction",
           "clip_ratio/region_mean": "clip_fraction", "frac_reward_zero_std": "zero_std_fraction"}


def step_row(step: int, logs: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"step": step}
    for key, value in logs.items():
        if not isinstance(value, (int, float)):
            continue
        if key.startswith("rewards/") and key.endswith("/mean"):
            row["reward/" + key[len("rewards/"):-len("/mean")]] = float(value)
        elif key in RENAMES:
            row[RENAMES[key]] = float(value)
        elif key in ("reward", "reward_std", "kl", "entropy", "loss", "grad_norm", "learning_rate", "num_tokens"):
            row[key] = float(value)
    if "reward/accuracy" in row:
        row["accuracy"] = row["reward/accuracy"]
    return row


class RLLogCallback(StepLogCallback):
    def __init__(self, path: Path, resumed_row: dict[str, Any] | None = None, console=None):
        super().__init__(path, resumed_row)
        self.console = console  # prints one line a step when given
        self.step_started = time.perf_counter()
        self.step_seconds = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_seconds = time.perf_counter() - self.step_started

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.writer is None or not logs or "train_runtime" in logs or "reward" not in logs:
            return
        row = step_row(state.global_step, logs)
        row["step_seconds"] = round(self.step_seconds, 3)
        row["elapsed_s"] = self.elapsed()
        self.writer.write(row)
        if self.console is not None:
            rewards = " ".join(f"{k[7:]}={v:.2f}" for k, v in row.items() if k.startswith("reward/"))
            self.console.print(f"rl step {row['step']}/{state.max_steps}: reward {row['reward']:.3f} ({rewards}), "
                               f"length {row.get('completion_length', 0):.0f}, {row['step_seconds']:.1f} s",
                               highlight=False)


def plot_log(log_path: Path, png_path: Path) -> Path:
    """Rewards (total and per function), KL, completion length and entropy against the step."""
    rows = read_log(log_path)
    reward_keys = sorted({k for r in rows for k in r if k.startswith("reward/")})
    panels = (("reward", ["reward", *reward_keys]), ("KL to the reference", ["kl"]),
              ("completion length (tokens)", ["completion_length"]), ("entropy / clip fraction",
                                                                      ["entropy", "clip_fraction"]))
    # With beta 0 there is no reference model and no KL: no empty panel for it.
    drawn = [(title, keys) for title, keys in panels if any(key in row for row in rows for key in keys)]
    return plot_curves(rows, drawn or panels[:1], png_path)
