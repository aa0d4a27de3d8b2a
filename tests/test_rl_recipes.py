"""The shipped RL recipes: valid, headed by their launch command, and runnable for a few steps with the
model overridden to the bundled tiny one; and `distill run` with an rl section (R1-Zero: rl alone)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill.cli import app
from distill.config import R1_ZERO_TEMPLATE, load_recipe
from distill.pipeline import run
from distill.resources import recipes_dir
from distill.stages.rl import follows_sft as rl_follows_sft

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = ROOT / "distill" / "data" / "demo" / "train.jsonl"
RL_RECIPES = sorted((recipes_dir() / "rl").glob("*.yaml"))
TINY_RUN = ["rl.model=bundled:tiny", f"rl.problems={PROBLEMS}", "rl.method=lora", "rl.max_steps=2",
            "rl.num_generations=2", "rl.prompts_per_step=2", "rl.gradient_accumulation_steps=1",
            "rl.max_completion_length=8", "rl.gradient_checkpointing=false", "rl.reward_workers=1",
            "rl.rollout=transformers"]


def test_there_are_r1_zero_and_after_distillation_recipes():
    names = {p.stem for p in RL_RECIPES}
    assert {"r1-zero-qwen2.5-math-1.5b", "r1-zero-qwen2.5-math-7b", "deepscaler-1.5b"} <= names


@pytest.mark.parametrize("path", RL_RECIPES, ids=lambda p: p.stem)
def test_recipe_is_valid_and_headed_by_its_launch_command(path):
    text = path.read_text()
    assert re.search(rf"# Launch: +distill run recipes/rl/{re.escape(path.name)}", text)
    assert re.search(r"# Hardware: ", text)
    recipe = load_recipe(path)
    assert recipe.rl is not None and not rl_follows_sft(recipe)  # these start from a given model
    completions = recipe.rl.prompts_per_step * recipe.rl.num_generations
    assert completions % recipe.rl.gradient_accumulation_steps == 0
    if "r1-zero" in path.stem:
        assert recipe.rl.template == "r1-zero" and {r.name for r in recipe.rl.rewards} == {"accuracy", "format"}


def test_r1_zero_template_is_table_1_of_the_paper():
    assert R1_ZERO_TEMPLATE.startswith("A conversation between User and Assistant.")
    assert "<think> reasoning process here </think> <answer> answer here </answer>" in R1_ZERO_TEMPLATE
    assert R1_ZERO_TEMPLATE.endswith("User: {prompt}. Assistant:")


@pytest.mark.slow
@pytest.mark.parametrize("path", RL_RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_a_few_steps_with_a_tiny_model(path, tmp_path, tiny_model):
    recipe = load_recipe(path, TINY_RUN + [f"run_dir={tmp_path}"])
    summary = run(recipe, progress=False)
    statuses = {s.name: s.status for s in summary.stages}
    assert statuses == {"generate": "not configured", "filter": "not configured", "sft": "not configured",
                        "kd": "not configured", "rl": "ran", "eval": "not configured"}
    steps = [json.loads(line)["step"] for line in (tmp_path / "policy" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert (tmp_path / "policy" / "merged" / "config.json").exists()
    card = (tmp_path / "policy" / "README.md").read_text()
    assert "GRPO policy" in card and "no SFT stage" in card
    again = run(recipe, progress=False)
    assert {s.name: s.status for s in again.stages}["rl"] == "skipped"


def test_rl_dry_run_from_a_recipe_prints_config_and_memory():
    zero = recipes_dir() / "rl" / "r1-zero-qwen2.5-math-1.5b.yaml"
    problems = Path(__file__).parents[1] / "data" / "demo" / "train.jsonl"
    result = CliRunner().invoke(app, ["rl", str(zero), "model=bundled:tiny", f"problems={problems}", "--dry-run"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["config"]["template"] == "r1-zero" and report["memory"]["per_device_gib"]["ddp"] > 0


def test_rl_bad_field_is_one_clear_paragraph(tmp_path):
    result = CliRunner().invoke(app, ["rl", str(RL_RECIPES[0]), "loss_type=ppo", "--dry-run"])
    assert result.exit_code == 2
    assert "rl.loss_type" in result.output and "Traceback" not in result.output


def test_demo_arm_recipe_is_the_self_distillation_demo_plus_rl_on_its_student(tmp_path):
    from distill.demo import RL_QUICK_STEPS, demo_recipe, rl_demo_recipe
    from distill.pipeline import stage_keys
    from distill.stages.eval import model_aliases

    recipe = rl_demo_recipe(run_dir=tmp_path)
    plain = demo_recipe(name="demo-self", run_dir=tmp_path)
    assert recipe.sft.model == recipe.generate.model == "bundled:smollm2-135m-instruct"
    assert rl_follows_sft(recipe) and recipe.rl.model == str(tmp_path / "student" / "merged")
    keys, plain_keys = stage_keys(recipe), stage_keys(plain)
    assert all(keys[s] == plain_keys[s] for s in ("generate", "filter", "sft"))  # a finished demo is reused
    assert list(model_aliases(recipe)) == ["base", "student", "policy"]
    quick = rl_demo_recipe(quick=True, run_dir=tmp_path)
    assert quick.rl.max_steps == RL_QUICK_STEPS and quick.name == "demo-quick"
