"""Every shipped student recipe validates, documents itself, and trains a few steps with bundled:tiny."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_sft_support import write_traces

from distill.config import Recipe, load_recipe

ROOT = Path(__file__).resolve().parents[1]
STUDENTS = sorted((ROOT / "recipes" / "students").glob("*.yaml"))
R1_STUDENTS = ("Qwen/Qwen2.5-Math-1.5B", "Qwen/Qwen2.5-Math-7B", "meta-llama/Llama-3.1-8B", "Qwen/Qwen2.5-14B",
               "Qwen/Qwen2.5-32B", "meta-llama/Llama-3.3-70B-Instruct")


def test_the_six_r1_students_are_covered_by_method():
    recipes = [load_recipe(p) for p in STUDENTS]
    assert {r.sft.model for r in recipes} == set(R1_STUDENTS)
    assert {r.sft.method for r in recipes} == {"full", "lora", "qlora"}
    for recipe, path in zip(recipes, STUDENTS):
        assert isinstance(recipe, Recipe)
        assert path.stem == recipe.name and path.stem.endswith(recipe.sft.method)  # named by student and method


@pytest.mark.parametrize("path", STUDENTS, ids=lambda p: p.stem)
def test_recipe_header_has_launch_command_hardware_and_sources(path):
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    assert re.search(rf"(accelerate launch .*|distill sft ){re.escape('recipes/students/' + path.name)}",
                     header.replace("\\\n#       ", "")), "launch command"
    assert "# Hardware:" in header and "GB" in header
    assert "# Sources:" in header and "R1" in header
    recipe = load_recipe(path)
    if "accelerate launch" in header:  # the accelerate config it names exists
        config = re.search(r"--config_file (\S+)", header).group(1)
        assert (ROOT / config).exists()
    if recipe.sft.method == "qlora":
        assert recipe.sft.quant.quant_type == "nf4" and recipe.sft.quant.double_quant


@pytest.mark.slow  # end to end, over 10 s: out of the inner loop (make test-fast)
def test_every_recipe_trains_two_steps_on_cpu_with_the_bundled_model(tmp_path):
    from distill.sft import train

    kept = write_traces(tmp_path / "kept.jsonl", 16)
    for path in STUDENTS:
        recipe = load_recipe(path, [
            "sft.model=bundled:tiny", "sft.max_steps=2", "sft.max_length=256", "sft.gradient_accumulation_steps=1",
            "sft.eval_fraction=0", "sft.merge=false", f"sft.train_file={kept}",
            f"sft.output_dir={tmp_path / path.stem}"])
        result = train(recipe.sft, progress=False)
        assert result.metrics["steps"] == 2, path.name
        assert result.metrics["method"] == recipe.sft.method
        assert (result.adapter_dir or result.merged_dir).exists()


@pytest.mark.parametrize("name,kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("zero3", "DEEPSPEED")])
def test_accelerate_configs_load(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ROOT / "recipes" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type.value == kind
    if name == "fsdp":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    if name == "zero3":
        assert config.deepspeed_config["zero_stage"] == 3
        assert config.deepspeed_config["zero3_save_16bit_model"] is True
