"""The stage spine: every stage `distill run` knows, in the order it runs them.

A stage is one module here implementing `distill.stages.base.Stage` (name, enabled, key, outputs, run) and one
entry in `PIPELINE`; the pipeline, the CLI's stage list and the viewer read this list and nothing else.
docs/architecture.md walks through adding one.
"""
from __future__ import annotations

from distill.stages.base import Stage, StageResult
from distill.stages.eval import Eval
from distill.stages.filter import Filter
from distill.stages.generate import Generate
from distill.stages.kd import KD
from distill.stages.rl import RL
from distill.stages.sft import SFT

PIPELINE: tuple[Stage, ...] = (Generate(), Filter(), SFT(), KD(), RL(), Eval())
NAMES: tuple[str, ...] = tuple(stage.name for stage in PIPELINE)

__all__ = ["NAMES", "PIPELINE", "Stage", "StageResult"]
