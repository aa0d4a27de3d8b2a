"""Every student recipe is a whole pipeline that `distill run` takes through every stage on the CPU, overridden
only for size: the bundled models, a couple of problems, n 1, short outputs, two SFT steps.

The datasets the recipes name (OpenR1-Math-220k for problems and traces, AIME 2024 and GPQA-Diamond for eval;
MATH-500 comes from ../shared/data) are hub-cache entries in their published shapes, found by hub id offline.
Beyond size, two overrides stand in for hardware: the transformers backend instead of vLLM (an engine start
per model on 2 cores costs minutes), and, for recipes whose teacher is the bundled 135M model, a filter that
keeps unverified traces (that teacher never solves a problem, and SFT needs rows).

The recipes with a teacher share one generate + filter configuration once shrunk (same teacher, problems
and filter): that pair runs once, and each recipe's own `distill run` then finds it done under the very same
stage keys (so its settings are proven identical) and runs sft and eval itself.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from data_shapes import SHAPES, write_benchmark_caches, write_hub_cache
from typer.testing import CliRunner

from distill.cli import app
from distill.config import load_recipe
from distill.pipeline import run, stage_keys

ROOT = Path(__file__).resolve().parents[1]
STUDENTS = sorted((ROOT / "recipes" / "students").glob("*.yaml"))
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf") / "datasets"
    write_hub_cache(SHAPES["openr1"](), cache, "open-r1/OpenR1-Math-220k")
    write_benchmark_caches(cache)
    return cache


def size_overrides(path: Path, run_dir: Path) -> list[str]:
    recipe = load_recipe(path)
    small = [f"run_dir={run_dir}", "filter.workers=1",
             "sft.model=bundled:tiny", "sft.max_steps=2", "sft.max_length=256", "sft.per_device_batch_size=1",
             "sft.gradient_accumulation_steps=1", "sft.eval_fraction=0", "sft.save_steps=100",
             "sft.gradient_checkpointing=false",
             "eval.backend=hf", "eval.k=1", "eval.sampling.max_tokens=8",
             "eval.benchmarks=" + json.dumps([{"name": b.name, "limit": 1} for b in recipe.eval.benchmarks])]
    if recipe.import_traces is not None:
        return [*small, "import_traces.limit=2"]
    return [*small, "generate.model=bundled:smollm2-135m-instruct", "generate.backend=hf", "generate.limit=2",
            "generate.sampling.n=1", "generate.sampling.max_tokens=24",
            "filter.verify=false", "filter.quality.require_think=false", "filter.quality.drop_truncated=false",
            "filter.quality.max_lang_mix=1.0", "filter.quality.max_repeat_frac=1.0"]


@pytest.fixture(scope="module")
def teacher_stages(hub_cache, tmp_path_factory, smollm2) -> Path:
    """generate + filter of the first teacher recipe, shrunk: what every teacher recipe shares."""
    path = next(p for p in STUDENTS if load_recipe(p).import_traces is None)
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_DATASETS_CACHE", str(hub_cache))
        summary = run(load_recipe(path, size_overrides(path, run_dir)), stages=["generate", "filter"], progress=False)
    assert [(s.name, s.status) for s in summary.stages] == [("generate", "ran"), ("filter", "ran")]
    return run_dir


@pytest.mark.parametrize("path", STUDENTS, ids=lambda p: p.stem)
def test_distill_run_takes_each_student_recipe_through_every_stage(path, hub_cache, tmp_path, monkeypatch,
                                                                    request, tiny_model):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(hub_cache))
    run_dir = tmp_path / "run"
    overrides = size_overrides(path, run_dir)
    shared = load_recipe(path).import_traces is None
    if shared:
        shutil.copytree(request.getfixturevalue("teacher_stages"), run_dir)
        (run_dir / "stages" / "sft.json").unlink(missing_ok=True)
    result = CliRunner().invoke(app, ["run", str(path), *overrides])
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "summary.json").read_text())
    first = "skipped" if shared else "ran"
    assert [(s["name"], s["status"]) for s in summary["stages"] if s["status"] != "not configured"] == \
        [("generate", first), ("filter", first), ("sft", "ran"), ("eval", "ran")]
    keys = stage_keys(load_recipe(path, overrides))
    assert [s["key"] for s in summary["stages"] if s["status"] != "not configured"] == \
        [keys[n] for n in ("generate", "filter", "sft", "eval")]
    assert set(summary["scores"]["student"]) == {"aime24", "math500", "gpqa-diamond"}
    if not shared:  # a rerun finds every stage done, the import's own problems file included
        again = CliRunner().invoke(app, ["run", str(path), *overrides])
        assert again.exit_code == 0, again.output
        assert {s["status"] for s in json.loads((run_dir / "summary.json").read_text())["stages"]} == {"skipped", "not configured"}
    traces = (run_dir / "traces.jsonl").read_text().splitlines()
    assert len(traces) == (6 if "-openr1-" in path.name else 2)  # 2 rows x 3 generations, or 2 problems x n 1


def test_a_recipe_longer_than_the_students_context_is_refused_before_loading(tmp_path, tiny_model):
    path = ROOT / "recipes" / "students" / "qwen2.5-math-7b-openr1-lora.yaml"
    result = CliRunner().invoke(app, ["run", str(path), f"run_dir={tmp_path}", "sft.model=bundled:tiny",
                                      "sft.max_length=4096"])
    assert result.exit_code == 2
    assert "sft.max_length is 4096 but bundled:tiny has a context window of 2048" in " ".join(result.output.split())
    assert not (tmp_path / "traces.jsonl").exists() and not (tmp_path / "stages").exists()
