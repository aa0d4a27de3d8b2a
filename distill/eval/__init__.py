"""Evaluation: pass@1 over k samples, unbiased pass@k, cons@k, 95% intervals, models side by side."""
from __future__ import annotations

from distill.eval.metrics import pass_at_k
from distill.eval.rescore import RescoreResult, rescore
from distill.eval.stage import EvalResult, evaluate

__all__ = ["EvalResult", "RescoreResult", "evaluate", "pass_at_k", "rescore"]
