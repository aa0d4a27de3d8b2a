"""The layering rules of the package, checked on every import statement (function-level and TYPE_CHECKING
ones included, as in test_import_cycles.py):

  - a stage (generation, filter, sft, rl, eval, kd) knows no pipeline: it imports no distill.pipeline,
    distill.stages (the spine that runs the stages), distill.cli or distill.demo (nor a distill.demos package);
  - no trainer (sft, rl, kd) knows the evaluation or the filter: it imports no distill.eval, distill.filter;
  - the verifiers (distill.verify) know no stage;
  - the contracts (distill.records, distill.config, distill.layout) know no stage;
  - the rollout engines (distill.rollout), which RL and kd share, know no trainer (they start vLLM engines
    through distill.generation.engine, as every engine is started).

`ALLOWED` names each import that still breaks a rule, why it is there and the fix; it lives in files being
changed elsewhere. The test fails on any violation not on the list, and on any entry whose import is gone,
so the list only shrinks until it is empty.
"""
from __future__ import annotations

from test_import_cycles import import_graph, module_names

STAGES = ("generation", "filter", "sft", "rl", "eval", "kd")
TRAINERS = ("sft", "rl", "kd")
TOP = ("pipeline", "stages", "cli", "demo", "demos")

RULES = {
    "a stage imports no pipeline, CLI or demo": (STAGES, TOP),
    "a trainer imports neither eval nor the filter": (TRAINERS, ("eval", "filter")),
    "the verifiers import no stage": (("verify",), STAGES),
    "the contracts import no stage": (("records", "config", "layout"), STAGES),
    "the rollout engines import no trainer": (("rollout",), TRAINERS),
}

# (importer, imported) -> why it is tolerated and how to fix it; empty: every rule holds.
ALLOWED: dict[tuple[str, str], str] = {}


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == f"distill.{p}" or module.startswith(f"distill.{p}.") for p in packages)


def violations(graph: dict[str, set[str]]) -> dict[tuple[str, str], str]:
    """(importer, imported) -> the rule it breaks."""
    found = {}
    for rule, (layer, forbidden) in RULES.items():
        for module, imported in graph.items():
            if _under(module, layer):
                found.update({(module, target): rule for target in imported if _under(target, forbidden)})
    return found


def test_the_rules_catch_a_stage_importing_the_pipeline():
    graph = {"distill.rl.grpo": {"distill.pipeline", "distill.config"}, "distill.verify.math": {"distill.eval"},
             "distill.records": set(), "distill.demo": {"distill.rl.grpo", "distill.eval.stage"}}
    assert violations(graph) == {("distill.rl.grpo", "distill.pipeline"): "a stage imports no pipeline, CLI or demo",
                                 ("distill.verify.math", "distill.eval"): "the verifiers import no stage"}


def test_no_layering_violation_beyond_the_allowed_list():
    found = violations(import_graph(module_names()))
    new = [f"{a} -> {b} ({rule})" for (a, b), rule in sorted(found.items()) if (a, b) not in ALLOWED]
    assert not new, "imports that break the layering: " + "; ".join(new)


def test_every_allowed_violation_still_occurs():
    found = violations(import_graph(module_names()))
    gone = [f"{a} -> {b}" for a, b in ALLOWED if (a, b) not in found]
    assert not gone, "fixed, so remove from ALLOWED: " + ", ".join(gone)
