"""`distill run` end to end on bundled:tiny (hf backend): skip, stale, and SIGKILL in every stage.

The reference run goes uninterrupted in this process. The crash run is a `distill run` subprocess that
is SIGKILLed once inside each stage (seen from the files the stage is writing), restarted each time,
and must end with the same traces, kept set, student and scores as the reference.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import processes
import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from distill.config import Recipe, dump_yaml
from distill.models import cache_dir
from distill.pipeline import print_summary, read_manifest, run, stage_keys

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = 8  # per training problem; 6 problems
pytestmark = pytest.mark.slow


def tiny_recipe(run_dir: Path, data: Path, **sft) -> Recipe:
    """Sizes picked so every stage lasts a few seconds: long enough to be killed inside, short for CI."""
    return Recipe.model_validate({
        "name": "tiny", "run_dir": str(run_dir),
        "generate": {"model": "bundled:tiny", "backend": "hf", "problems": str(data / "train.jsonl"),
                     # 48 traces: the first reach disk after 16 (or 2 s), so a kill lands mid-stage even
                     # when the tiny model writes all of them in under 2 s.
                     "sampling": {"n": SAMPLES, "max_tokens": 20, "seed": 0}, "hf": {"batch_size": 1}},
        # A random model never solves anything: keep traces on quality alone so SFT has data.
        "filter": {"verify": False, "workers": 1,
                   "quality": {"require_think": False, "drop_truncated": False, "max_lang_mix": 1.0,
                               "max_repeat_frac": 1.0},
                   "decontaminate": {"against": [str(data / "eval.jsonl")]}},
        "sft": {"model": "bundled:tiny", "method": "lora", "max_steps": 8, "save_steps": 2,
                "per_device_batch_size": 2, "gradient_accumulation_steps": 1, "max_length": 96,
                "eval_fraction": 0, "gradient_checkpointing": False, "lora": {"r": 4, "alpha": 8},
                "precision": "fp32", **sft},
        "eval": {"benchmarks": [{"name": "heldout", "path": str(data / "eval.jsonl")}], "k": 2, "backend": "hf",
                 "sampling": {"max_tokens": 20, "seed": 0}, "hf": {"batch_size": 1}},
    })


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    for split, count in (("train", 6), ("eval", 3)):
        lines = (ROOT / f"data/demo/{split}.jsonl").read_text().splitlines()[:count]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data, tiny_model):
    recipe = tiny_recipe(tmp_path_factory.mktemp("reference") / "run", data)
    summary = run(recipe, progress=False)
    return recipe, summary


def records(path: Path, volatile: tuple[str, ...] = ()) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in rows:
        for name in volatile:
            row.pop(name, None)
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def test_uninterrupted_run_writes_every_stage_cards_and_report(reference):
    recipe, summary = reference
    assert [(s.name, s.status) for s in summary.stages if s.status != "not configured"] == \
        [(name, "ran") for name in ("generate", "filter", "sft", "eval")]  # no rl: section, no RL stage
    run_dir = Path(recipe.run_dir)
    assert len(records(run_dir / "traces.jsonl")) == 6 * SAMPLES
    assert summary.funnel[0] == {"stage": "input", "remaining": 6 * SAMPLES}
    for stage in ("generate", "filter", "sft", "eval"):
        manifest = read_manifest(run_dir, stage)
        assert manifest["status"] == "done" and manifest["key"] == stage_keys(recipe)[stage]
    scores = json.loads((run_dir / "eval" / "scores.json").read_text())
    assert list(scores["scores"]) == ["base", "student"]
    assert scores["scores"]["student"]["heldout"]["samples"] == 3 * 2
    assert (run_dir / "filter" / "README.md").read_text().startswith("---\n")
    assert "model-index" in (run_dir / "student" / "README.md").read_text()
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "Filter funnel" in html and "Evaluation" in html
    assert (run_dir / "dataset" / "train.parquet").exists()
    # Models by name, not by this machine's cache folder; the printout in sentences, within 80 columns.
    assert "<td>base</td><td>bundled:tiny</td>" in html and str(cache_dir()) not in html
    console = Console(record=True, width=80)
    print_summary(summary, console)
    printed = console.export_text()
    assert "training: lora fp32 on bundled:tiny, 8 steps" in printed, printed
    assert max(map(len, printed.splitlines())) <= 80


def test_rerun_skips_everything_and_a_changed_stage_reruns_from_there(reference, data, tmp_path):
    run_dir = tmp_path / "run"  # a copy: the crash test compares against the untouched reference
    shutil.copytree(reference[0].run_dir, run_dir)
    recipe = tiny_recipe(run_dir, data)
    traces_mtime = (run_dir / "traces.jsonl").stat().st_mtime_ns
    again = run(recipe, progress=False)
    assert [s.status for s in again.stages if s.status != "not configured"] == ["skipped"] * 4
    assert (run_dir / "traces.jsonl").stat().st_mtime_ns == traces_mtime

    changed = tiny_recipe(run_dir, data, learning_rate=3e-4)
    keys, new_keys = stage_keys(recipe), stage_keys(changed)
    assert keys["generate"] == new_keys["generate"] and keys["filter"] == new_keys["filter"]
    assert keys["sft"] != new_keys["sft"] and keys["eval"] != new_keys["eval"]  # eval follows its student
    base_samples = Path(recipe.eval.output_dir) / "base" / "heldout.traces.jsonl"
    base_mtime = base_samples.stat().st_mtime_ns
    after = run(changed, progress=False)
    assert [s.status for s in after.stages if s.status != "not configured"] == ["skipped", "skipped", "ran", "ran"]
    stale = list((run_dir / "stale").glob(f"*-sft-{keys['sft']}/student/log.jsonl"))
    assert len(stale) == 1  # the old student was moved aside, not deleted
    assert (run_dir / "student" / "log.jsonl").read_text() != stale[0].read_text()
    # Eval drew the new student's samples and reused the unchanged base's; the old student's went aside.
    assert base_samples.stat().st_mtime_ns == base_mtime
    assert len(list((Path(recipe.eval.output_dir) / "student" / "stale").glob("*/heldout.traces.jsonl"))) == 1


# ---------------------------------------------------------------------------------------------- crash
def line_count(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except FileNotFoundError:
        return 0


def kill_when(command: list[str], log: Path, ready, stage: str, run_dir: Path) -> None:
    """Start `distill run`, SIGKILL it as soon as `ready()` holds, and check the stage was cut short."""
    processes.kill_when(command, ready, log, point=f"it was inside {stage}")
    manifest = read_manifest(run_dir, stage)
    assert manifest is not None and manifest["status"] == "running", f"{stage} finished before the kill landed"


def test_sigkill_inside_each_stage_resumes_to_the_uninterrupted_result(reference, data, tmp_path):
    ref_recipe, _ = reference
    ref = Path(ref_recipe.run_dir)
    run_dir = tmp_path / "run"
    recipe_file = tmp_path / "tiny.yaml"
    recipe_file.write_text(dump_yaml(tiny_recipe(run_dir, data)))
    command = [sys.executable, "-m", "distill.cli", "run", str(recipe_file)]
    log = tmp_path / "run.log"

    kill_when(command, log, lambda: line_count(run_dir / "traces.jsonl") > 0, "generate", run_dir)
    assert 0 < line_count(run_dir / "traces.jsonl") < 6 * SAMPLES
    kill_when(command, log, lambda: line_count(run_dir / "filter" / "checked.jsonl") > 0, "filter", run_dir)
    kill_when(command, log, lambda: any((run_dir / "student" / "checkpoints").glob("checkpoint-*/trainer_state.json")),
              "sft", run_dir)
    kill_when(command, log, lambda: line_count(run_dir / "eval" / "base" / "heldout.traces.jsonl") > 0,
              "eval", run_dir)
    with open(log, "ab") as out:
        finished = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, check=False)
    assert finished.returncode == 0, log.read_text()[-3000:]

    assert records(run_dir / "traces.jsonl") == records(ref / "traces.jsonl")
    assert records(run_dir / "filter" / "kept.jsonl") == records(ref / "filter" / "kept.jsonl")
    assert records(run_dir / "filter" / "rejected.jsonl") == records(ref / "filter" / "rejected.jsonl")
    # Resumed from a checkpoint, the student follows the same losses step for step.
    ours = records(run_dir / "student" / "log.jsonl", volatile=("elapsed_s",))
    theirs = records(ref / "student" / "log.jsonl", volatile=("elapsed_s",))
    assert [r["step"] for r in ours] == [r["step"] for r in theirs]
    assert [r.get("loss") for r in ours] == pytest.approx([r.get("loss") for r in theirs], rel=1e-4)
    weights = [load_file(d / "student" / "merged" / "model.safetensors") for d in (run_dir, ref)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.allclose(weights[0][name], weights[1][name], atol=1e-6), name
    # The student's samples: same text; `teacher` and `config_hash` name the model's folder, which differs.
    for label in ("base", "student"):
        assert records(run_dir / "eval" / label / "heldout.traces.jsonl", volatile=("teacher", "config_hash")) == \
            records(ref / "eval" / label / "heldout.traces.jsonl", volatile=("teacher", "config_hash"))
    ours, theirs = (json.loads((d / "eval" / "scores.json").read_text()) for d in (run_dir, ref))
    assert ours["scores"] == theirs["scores"]
    manifests = [read_manifest(run_dir, s)["status"] for s in ("generate", "filter", "sft", "eval")]
    assert manifests == ["done"] * 4


def test_eval_merges_a_lora_adapter_into_the_same_model_sft_merged(reference, data, tmp_path):
    from distill.eval import evaluate

    recipe, _ = reference
    run_dir = Path(recipe.run_dir)
    config = recipe.eval.model_copy(update={"models": [f"adapter={run_dir / 'student' / 'adapter'}"],
                                            "output_dir": tmp_path / "eval"})
    result = evaluate(config, progress=False)
    assert (tmp_path / "eval" / "adapter" / "merged" / ".adapter").exists()
    ours = records(tmp_path / "eval" / "adapter" / "heldout.traces.jsonl", volatile=("teacher", "config_hash"))
    sft_merged = records(run_dir / "eval" / "student" / "heldout.traces.jsonl", volatile=("teacher", "config_hash"))
    assert ours == sft_merged  # same weights, same seeded samples
    assert result.scores["scores"]["adapter"]["heldout"]["samples"] == 3 * 2
