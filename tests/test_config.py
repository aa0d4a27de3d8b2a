"""Recipes: YAML + dotted overrides -> typed configs; bad input names the file and the field."""
import subprocess
import sys
from pathlib import Path

import pytest

from distill.config import ConfigError, Recipe, config_hash, load_recipe, load_stage

CLI = [sys.executable, str(Path(__file__).parents[1] / "cli.py")]


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_follow_r1_and_wire_paths(tmp_path):
    recipe = load_recipe(write(tmp_path, f"run_dir: {tmp_path}/run\n"))
    assert recipe.generate.sampling.temperature == 0.6 and recipe.generate.sampling.top_p == 0.95
    assert recipe.generate.prompts.system_prompt is None
    assert recipe.filter.input == recipe.generate.output == tmp_path / "run" / "traces.jsonl"
    assert recipe.sft.train_file == tmp_path / "run" / "filter" / "kept.jsonl"


def test_dotted_overrides_are_typed(tmp_path):
    path = write(tmp_path, "sft:\n  lora:\n    r: 8\n")
    recipe = load_recipe(path, ["sft.lora.r=32", "generate.sampling.n=4", "sft.packing=false"])
    assert recipe.sft.lora.r == 32 and recipe.generate.sampling.n == 4 and recipe.sft.packing is False


def test_unknown_key_names_file_and_field(tmp_path):
    path = write(tmp_path, "sft:\n  lora:\n    rank: 8\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert str(path) in str(err.value) and "sft.lora.rank" in str(err.value)


def test_wrong_type_names_value_and_expectation(tmp_path):
    path = write(tmp_path, "generate:\n  sampling:\n    temperature: hot\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    message = str(err.value)
    assert "generate.sampling.temperature" in message and "'hot'" in message and "number" in message


@pytest.mark.parametrize("body,field", [("sft:\n  lora:\n    rank: 8\n", "sft.lora.rank"),
                                        ("sft:\n  epochs: many\n", "sft.epochs")])
def test_cli_reports_bad_recipe_without_traceback(tmp_path, body, field):
    path = write(tmp_path, body)
    proc = subprocess.run(CLI + ["run", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert str(path) in proc.stderr and field in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_bad_yaml_names_line(tmp_path):
    path = write(tmp_path, "sft:\n  lora: [1, 2\n  x: 1\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert f"{path}:" in str(err.value)


def test_config_hash_ignores_paths_but_not_sampling(tmp_path):
    a = load_stage("generate", None, ["output=a.jsonl"])
    b = load_stage("generate", None, ["output=b.jsonl"])
    c = load_stage("generate", None, ["sampling.temperature=1.0"])
    assert config_hash(a) == config_hash(b) != config_hash(c)


def test_stage_from_recipe_section(tmp_path):
    path = write(tmp_path, "run_dir: r\nsft:\n  method: qlora\n")
    sft = load_stage("sft", path, ["lora.r=4"])
    assert sft.method == "qlora" and sft.lora.r == 4


def test_schema_is_json_for_editors():
    schema = Recipe.model_json_schema()
    assert "generate" in schema["properties"] and "$defs" in schema


def test_eval_takes_generate_and_filter_blocks_it_does_not_set(tmp_path):
    from distill.config import load_recipe

    recipe = load_recipe(None, ["generate.vllm.kv_cache_gib=3", "generate.sampling.max_tokens=256",
                                "generate.backend=hf", "filter.math_timeout_s=2", "eval.k=8"])
    assert recipe.eval.vllm == recipe.generate.vllm and recipe.eval.vllm.kv_cache_gib == 3
    assert recipe.eval.backend == "hf" and recipe.eval.math_timeout_s == 2
    assert recipe.eval.sampling.max_tokens == 256 and recipe.eval.sampling.n == 8
    assert recipe.eval.vllm is not recipe.generate.vllm  # a copy: editing one never edits the other

    own = load_recipe(None, ["generate.vllm.kv_cache_gib=3", "eval.vllm.kv_cache_gib=1", "eval.backend=vllm"])
    assert own.eval.vllm.kv_cache_gib == 1 and own.generate.vllm.kv_cache_gib == 3


def test_trainer_args_pass_through_is_checked_against_trl_fields():
    from distill.config import load_recipe
    from distill.errors import DistillError

    recipe = load_recipe(None, ["sft.trainer_args={neftune_noise_alpha: 5, torch_compile: false}"])
    assert recipe.sft.trainer_args == {"neftune_noise_alpha": 5, "torch_compile": False}
    with pytest.raises(DistillError, match=r"sft.trainer_args.*\['neftune_noise_alfa'\] is not a field of TRL"):
        load_recipe(None, ["sft.trainer_args={neftune_noise_alfa: 5}"])


def test_trainer_args_cannot_shadow_a_typed_field(tmp_path):
    from distill.config import SFTConfig
    from distill.errors import DistillError
    from distill.sft.train import _trainer_args

    config = SFTConfig(trainer_args={"learning_rate": 1.0, "neftune_noise_alpha": 5})
    with pytest.raises(DistillError, match=r"\['learning_rate'\].*typed sft fields"):
        _trainer_args(config, "fp32", tmp_path, has_eval=False)
    passed = _trainer_args(SFTConfig(trainer_args={"neftune_noise_alpha": 5}), "fp32", tmp_path, has_eval=False)
    assert passed.neftune_noise_alpha == 5 and passed.learning_rate == SFTConfig().learning_rate


def test_rl_pass_rate_filter_renamed_without_moving_any_run():
    """`rl.selection` became `rl.pass_rate_filter`: runs made before keep their hash (resumed, skipped), a
    recipe that still says `selection` is told the new name."""
    import pytest
    from pydantic import ValidationError

    from distill.config import RLConfig

    assert config_hash(RLConfig()) == "bcc1243195ad"  # the hash of RLConfig() before the rename
    on = RLConfig(pass_rate_filter={"enabled": True})
    assert config_hash(on) != config_hash(RLConfig())
    with pytest.raises(ValidationError, match="rename rl.selection to rl.pass_rate_filter"):
        RLConfig(selection={"enabled": True})
