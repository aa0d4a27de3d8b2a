"""The former home of `distill demo --rl`, now `distill.demo.main_rl` (a stage does not import the demo).

Kept only while distill/cli.py calls `stage_module("distill.rl.demo").main`; delete it once the CLI calls
`distill.demo.main_rl` (tests/test_layering.py allow-lists this import until then).
"""
from distill.demo import RL_QUICK_STEPS as QUICK_STEPS
from distill.demo import main_rl as main
from distill.demo import pass1_per_problem, rl_demo_recipe

__all__ = ["QUICK_STEPS", "main", "pass1_per_problem", "rl_demo_recipe"]
