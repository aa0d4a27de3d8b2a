"""Trainer callbacks: the per-step JSONL log, a rich progress bar with token rates, and the loss plot.

All three act on the main process only (`state.is_world_process_zero`): under `accelerate launch` the
other ranks train but write nothing.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from distill.jsonl import JsonlWriter
from distill.lifecycle import read_log
from distill.plots import plot_curves
from distill.ui import stage_progress

LOGGED = ("loss", "grad_norm", "learning_rate", "eval_loss", "epoch", "mean_token_accuracy", "entropy",
          "kd_kl", "kd_ce")  # the two terms of the loss under sft.logit_kd


class StepLogCallback(TrainerCallback):
    """log.jsonl, written by the main process from train begin to train end (sft's and rl's rows alike); a
    resumed run's clock continues from its checkpoint's row (`resumed_row`, distill.lifecycle.rewound_log)."""

    def __init__(self, path: Path, resumed_row: dict[str, Any] | None = None):
        self.path = Path(path)
        self.elapsed_before = float(resumed_row.get("elapsed_s", 0.0)) if resumed_row else 0.0
        self.writer: JsonlWriter | None = None
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of training so far, the interrupted runs' included."""
        return round(self.elapsed_before + time.perf_counter() - self.started, 3)

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        if state.is_world_process_zero:
            self.writer = JsonlWriter(self.path, flush_every=1)

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class JsonlLogCallback(StepLogCallback):
    """One JSON object per logging event: step, loss, grad_norm, learning_rate or eval_loss, tokens so far."""

    def __init__(self, path: Path, token_counter, resumed_row: dict[str, Any] | None = None):
        super().__init__(path, resumed_row)
        self.tokens = token_counter

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.writer is None or not logs:
            return
        row: dict[str, Any] = {"step": state.global_step}
        row.update({k: float(logs[k]) for k in LOGGED if k in logs})
        if not any(k in row for k in ("loss", "eval_loss")):
            return  # the end-of-training summary, which metrics.json holds
        row["tokens"] = int(self.tokens.real)
        row["loss_tokens"] = int(self.tokens.supervised)
        row["elapsed_s"] = self.elapsed()
        self.writer.write(row)


class RichProgressCallback(TrainerCallback):
    """Steps, elapsed/remaining time, non-pad tokens per second and the latest loss."""

    def __init__(self, token_counter):
        self.tokens = token_counter
        self.progress = None
        self.task = None
        self.started = 0.0
        self.tokens_at_start = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.progress = stage_progress("sft", "steps", "{task.fields[rate]}", "{task.fields[loss]}")
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step,
                                           rate="", loss="")
        self.started = time.perf_counter()
        self.tokens_at_start = self.tokens.real

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is None:
            return
        seconds = max(time.perf_counter() - self.started, 1e-9)
        rate = (self.tokens.real - self.tokens_at_start) / seconds
        self.progress.update(self.task, completed=state.global_step, rate=f"{rate:,.0f} tok/s")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is not None and logs and "loss" in logs:
            self.progress.update(self.task, loss=f"loss {logs['loss']:.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def plot_log(log_path: Path, png_path: Path) -> Path:
    """Loss (train and eval; with logit_kd also its KL and CE terms), grad norm and learning rate against the
    step, one panel each."""
    rows = read_log(log_path)
    panels = (("loss", ("loss", "eval_loss", "kd_kl", "kd_ce")), ("grad norm", ("grad_norm",)), ("learning rate", ("learning_rate",)))
    return plot_curves(rows, panels, png_path, markers=("eval_loss",))
