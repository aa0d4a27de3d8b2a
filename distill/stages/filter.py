"""filter: verify and clean the traces, keep the good ones, and export them as a `datasets` dataset."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from distill.config import Recipe, config_hash
from distill.layout import RunLayout
from distill.stages.base import StageResult, input_digest, key_of, own_model


class Filter:
    name = "filter"

    def enabled(self, recipe: Recipe) -> bool:
        return not own_model(recipe)

    def key(self, recipe: Recipe, upstream: Mapping[str, str]) -> str:
        flt, gen = recipe.filter, recipe.generate
        # Problems an import writes are covered by the generate key (the file appears only once it has run).
        imported = recipe.import_traces is not None and flt.problems == gen.problems
        return key_of(config_hash(flt), upstream["generate"], "imported" if imported else input_digest(flt.problems),
                      [input_digest(p) for p in flt.decontaminate.against])

    def outputs(self, layout: RunLayout) -> list[Path]:
        return [layout.filter_dir, layout.dataset_dir]

    def run(self, recipe: Recipe, layout: RunLayout, progress: bool) -> StageResult:
        from distill.export import export_dataset
        from distill.filter import filter_traces

        result = filter_traces(recipe.filter, progress=progress)
        exported = export_dataset(layout.kept, layout.dataset_dir)
        return StageResult({"filter_dir": str(result.output_dir), "kept": str(layout.kept),
                            "dataset": str(exported.dataset_dir), "parquet": str(exported.parquet_path)},
                           {"kept": result.kept, "rejected": result.rejected,
                            "funnel": result.stats.get("funnel", [])})
