"""Rejection sampling: keep the traces that verify and read well (see `distill.filter.stage`).

    from distill.filter import filter_traces, check, dataset_step, CheckResult
"""
from __future__ import annotations

from distill.filter.funnel import funnel_table
from distill.filter.registry import CheckResult, check, dataset_step, get_check, get_step
from distill.filter.stage import FilterResult, filter_traces

__all__ = [
    "CheckResult",
    "FilterResult",
    "check",
    "dataset_step",
    "filter_traces",
    "funnel_table",
    "get_check",
    "get_step",
]
