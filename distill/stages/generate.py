"""generate: the teacher answers the problems (or a public trace set is imported in its place)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from distill.config import Recipe, config_hash
from distill.errors import DistillError
from distill.layout import RunLayout
from distill.stages.base import StageResult, input_digest, key_of, own_model, small


class Generate:
    name = "generate"

    def enabled(self, recipe: Recipe) -> bool:
        return not own_model(recipe)

    def key(self, recipe: Recipe, upstream: Mapping[str, str]) -> str:
        if recipe.import_traces is not None:  # the traces come from a public set instead of the teacher
            return key_of("import", config_hash(recipe.import_traces))
        gen = recipe.generate
        # `limit` and `shard` are unhashed in GenerateConfig (they pick work, not settings) but change the output.
        return key_of(config_hash(gen), input_digest(gen.problems), gen.limit, gen.shard)

    def outputs(self, layout: RunLayout) -> list[Path]:
        siblings = layout.traces.parent.glob(f"{layout.traces.stem}.*")  # traces.stats.json and the like
        return [layout.traces] + sorted(p for p in siblings if p != layout.traces)

    def run(self, recipe: Recipe, layout: RunLayout, progress: bool) -> StageResult:
        if recipe.import_traces is not None:
            return _import(recipe, layout)
        from distill.generation import generate

        if recipe.generate.problems is None:
            raise DistillError(f"recipe '{recipe.name}': generate.problems is not set (a Problem JSONL file)")
        result = generate(recipe.generate, progress=progress)
        return StageResult({"traces": str(result.output), "stats": str(result.stats_path)},
                           {"written": result.written, "skipped": result.skipped, **small(result.stats)})


def _import(recipe: Recipe, layout: RunLayout) -> StageResult:
    """A public trace set's problems and traces, written where generate's would be."""
    from distill.importers import write_traces

    cfg = recipe.import_traces
    result = write_traces(cfg.source, Path(layout.problems), layout.traces, format=cfg.format, domain=cfg.domain,
                          teacher=cfg.teacher, limit=cfg.limit)
    return StageResult({"traces": str(result.traces_path), "problems": str(result.problems_path)},
                       {"imported_from": cfg.source, "format": result.format, "problems": result.problems,
                        "traces": result.traces})
