"""The stage spine: the list `distill run` loops over, the layout every part reads, the one staleness policy."""
from __future__ import annotations

import re

from typer.testing import CliRunner

from distill.cli import app
from distill.config import SECTIONS, defaults, load_recipe
from distill.files import move_aside
from distill.layout import RunLayout, eval_files
from distill.pipeline import retire, stage_keys
from distill.stages import NAMES, PIPELINE


def test_every_stage_is_a_recipe_section_and_the_run_help_names_it():
    assert NAMES == ("generate", "filter", "sft", "kd", "rl", "eval")
    assert set(NAMES) <= set(SECTIONS)
    out = re.sub(r"[\s│]+", " ", CliRunner().invoke(app, ["run", "--help"], terminal_width=200).output)
    assert all(name in out for name in NAMES), out


def test_the_layout_is_where_the_recipe_puts_things(tmp_path):
    recipe = load_recipe("recipes/demo-quick.yaml", [f"run_dir={tmp_path}", "rl.max_steps=1", "kd.max_steps=1"])
    layout = RunLayout.of(recipe)
    where = defaults(tmp_path)
    assert layout.traces == recipe.generate.output == where.traces
    assert layout.kept == recipe.sft.train_file and layout.filter_dir == where.filter_dir
    assert str(layout.student) == recipe.rl.model == recipe.kd.model  # rl and kd start from sft's student
    assert layout.policy_dir == recipe.rl.output_dir and layout.kd_dir == recipe.kd.output_dir
    assert layout.manifest("sft") == tmp_path / "stages" / "sft.json"
    files = layout.eval_files("runs/x/student/merged", "heldout")
    assert files == eval_files(recipe.eval.output_dir, "runs/x/student/merged", "heldout")
    assert files.verdicts == tmp_path / "eval" / "runs-x-student-merged" / "heldout.verdicts.jsonl"
    assert set(layout.describe()) >= {"traces", "kept", "student", "policy_dir", "kd_dir", "scores"}


def test_keys_chain_through_the_list(tmp_path):
    recipe = load_recipe("recipes/demo-quick.yaml", [f"run_dir={tmp_path}"])
    keys, changed = stage_keys(recipe), stage_keys(load_recipe("recipes/demo-quick.yaml",
                                                               [f"run_dir={tmp_path}", "filter.dedup.near=false"]))
    assert list(keys) == list(NAMES)
    assert keys["generate"] == changed["generate"]
    assert all(keys[s] != changed[s] for s in ("filter", "sft", "eval"))  # a new filter: a new student, a new eval


def test_stale_outputs_move_aside_whole_and_nothing_is_deleted(tmp_path):
    recipe = load_recipe("recipes/demo-quick.yaml", [f"run_dir={tmp_path}"])
    layout = RunLayout.of(recipe)
    layout.filter_dir.mkdir(parents=True)
    (layout.kept).write_text('{"old": 1}\n')
    layout.dataset_dir.mkdir()
    (layout.dataset_dir / "train.parquet").write_bytes(b"PAR1")
    stage = next(s for s in PIPELINE if s.name == "filter")
    moved = retire(layout, stage, "abc123")
    assert moved.parent == layout.stale_dir and moved.name.endswith("-filter-abc123")
    assert (moved / "filter" / "kept.jsonl").read_text() == '{"old": 1}\n'
    assert (moved / "dataset" / "train.parquet").read_bytes() == b"PAR1"
    assert not layout.filter_dir.exists() and not layout.dataset_dir.exists()
    assert retire(layout, stage, "abc123") is None  # nothing left to move
    again = move_aside([tmp_path / "recipe-less"], tmp_path / "stale", "x")
    assert again is None
    eval_stage = next(s for s in PIPELINE if s.name == "eval")
    assert eval_stage.outputs(layout) == []  # eval's files judge their own staleness (their meta)


def test_dry_run_says_what_a_run_would_do_from_the_manifests_alone(tmp_path):
    from distill.files import atomic_write_json
    from distill.pipeline import preview

    recipe = load_recipe("recipes/demo-quick.yaml", [f"run_dir={tmp_path}"])
    layout, keys = RunLayout.of(recipe), stage_keys(recipe)
    assert {r["stage"]: r["action"] for r in preview(recipe)} == {
        "generate": "run", "filter": "run", "sft": "run", "kd": "not configured", "rl": "not configured",
        "eval": "run"}

    atomic_write_json(layout.manifest("generate"), {"key": keys["generate"], "status": "done"})
    atomic_write_json(layout.manifest("filter"), {"key": keys["filter"], "status": "running"})
    atomic_write_json(layout.manifest("sft"), {"key": "an-old-key", "status": "done"})
    layout.student_dir.mkdir(parents=True)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    rows = {r["stage"]: r for r in preview(recipe)}
    assert [rows[s]["action"] for s in ("generate", "filter", "sft")] == ["skip", "resume", "move aside, run"]
    assert rows["sft"]["recorded_key"] == "an-old-key" and rows["sft"]["key"] == keys["sft"]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # a preview writes nothing

    shown = CliRunner().invoke(app, ["run", "recipes/demo-quick.yaml", f"run_dir={tmp_path}", "--dry-run"],
                               terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert re.search(r"sft\s*│\s*move aside, run\s*│\s*" + keys["sft"], shown.output), shown.output
    assert str(layout.kept) in shown.output
