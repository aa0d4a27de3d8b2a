"""The promises behind "bad input never crashes a command": one message for a bad value whether it comes from
the CLI, a YAML recipe or Python; values at a bound accepted; what asking for an empty output looks like;
appends that keep a last line without newline; help examples that work as written."""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from distill.cli import app
from distill.config import ConfigError, FilterConfig, RLConfig, SFTConfig, load_recipe, load_stage

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# (stage, config class, field, values beyond the bound, values at the bound that must be accepted)
BOUNDS = [
    ("sft", SFTConfig, "learning_rate", [0, -1e-4], [1e-9]),
    ("sft", SFTConfig, "max_length", [0, -1], [1]),
    ("sft", SFTConfig, "epochs", [0, -2], [0.01]),
    ("sft", SFTConfig, "per_device_batch_size", [0], [1]),
    ("sft", SFTConfig, "gradient_accumulation_steps", [0], [1]),
    ("sft", SFTConfig, "warmup_ratio", [1, 5, -0.01], [0, 0.999]),
    ("sft", SFTConfig, "eval_fraction", [1, -0.1], [0, 0.5]),
    ("sft", SFTConfig, "max_grad_norm", [-1], [0]),
    ("sft", SFTConfig, "max_steps", [-2], [-1, 1]),
    ("sft", SFTConfig, "weight_decay", [-0.1], [0]),
    ("filter", FilterConfig, "math_timeout_s", [0, -5, float("inf"), float("nan")], [0.001]),
    ("filter", FilterConfig, "workers", [-1], [0]),
    ("rl", RLConfig, "learning_rate", [0], [1e-9]),
    ("rl", RLConfig, "warmup_ratio", [1, -1], [0]),
    ("rl", RLConfig, "math_timeout_s", [0], [0.5]),
    ("rl", RLConfig, "num_generations", [1], [2]),
    ("rl", RLConfig, "top_p", [0, 1.01], [1]),
]


def as_yaml(value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return ".nan"
    return ".inf" if value == float("inf") else json.dumps(value)


def cli_message(stage: str, field: str, value) -> str:
    args = {"sft": ["sft", "--dry-run", "--train-file", "missing.jsonl"],
            "filter": ["filter", "--input", "missing.jsonl"],
            "rl": ["rl", "--dry-run", "--problems", "missing.jsonl"]}[stage]
    result = CliRunner().invoke(app, [*args, f"{field}={as_yaml(value)}"], terminal_width=10_000)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return result.output


def reason(message: str, field: str) -> str:
    """The part of a message after "field 'X' has the bad value V:", which every source shares."""
    match = re.search(rf"field '{re.escape(field)}' has the bad value [^:]+: (.+?)\.?$", message.strip(), re.MULTILINE)
    assert match, message
    return match.group(1)


@pytest.mark.parametrize(("stage", "cls", "field", "bad", "good"), BOUNDS, ids=[f"{b[0]}.{b[2]}" for b in BOUNDS])
def test_cli_yaml_and_python_refuse_the_same_values_with_the_same_reason(stage, cls, field, bad, good, tmp_path):
    for value in bad:
        from_cli = reason(cli_message(stage, field, value), field)
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"{stage}:\n  {field}: {as_yaml(value)}\n")
        with pytest.raises(ConfigError) as from_yaml:
            load_recipe(recipe)
        assert reason(str(from_yaml.value), f"{stage}.{field}") == from_cli
        with pytest.raises(ValidationError) as from_python:
            cls(**{field: value})
        assert from_cli.lower() in str(from_python.value).lower()
    for value in good:
        assert getattr(load_stage(stage, None, [f"{field}={value}"]), field) == value
        assert getattr(cls(**{field: value}), field) == value


def test_reward_names_are_checked_when_the_config_is_made():
    with pytest.raises(ValidationError, match="unknown reward 'acuracy'"):
        RLConfig(rewards=[{"name": "acuracy"}])
    assert [r.name for r in RLConfig(rewards=[{"name": "length"}, {"name": "my.module:fn"}]).rewards] == \
        ["length", "my.module:fn"]  # module:function is imported when training starts


def test_help_examples_work_as_written(monkeypatch):
    """Each stage's `--help` example loads as that command would load it (from a checkout, like the README)."""
    monkeypatch.chdir(Path(__file__).parents[1])
    from distill.cli import split_args
    from distill.rl.data import check_problems

    for command, stage in (("generate", "generate"), ("filter", "filter"), ("sft", "sft"), ("rl", "rl"),
                           ("eval", "eval"), ("run", None)):
        output = CliRunner().invoke(app, [command, "--help"], terminal_width=200).output
        help_text = " ".join(output.replace("│", " ").split())  # the panel may wrap the example
        example = re.search(r"overrides, e\.g\. (.+?) ╰", help_text).group(1).split()
        recipe, overrides = split_args(example)
        if stage is None:
            load_recipe(recipe, overrides)
        elif stage == "rl":  # its data is read even by a dry run: the example must name a file that is there
            check_problems(load_stage(stage, recipe, overrides))
        else:
            load_stage(stage, recipe, overrides)


def test_a_mistyped_local_path_is_a_missing_file_not_a_hub_dataset(tmp_path, monkeypatch):
    (tmp_path / "data" / "demo").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    for args in (["import", "data/demo/trian"], ["eval", "--models", "m", "--bench", "x=data/demo/trian"]):
        result = CliRunner().invoke(app, args, terminal_width=10_000)
        assert result.exit_code == 2 and "data/demo/trian: no such file" in result.output, result.output
        assert "hub" not in result.output.lower() and "download" not in result.output.lower()


def test_error_text_is_never_read_as_markup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["export", "[bold red]x[/].jsonl", "-o", "out"], terminal_width=10_000)
    assert result.exit_code == 2 and "[bold red]x[/].jsonl" in result.output and "MarkupError" not in result.output


def test_import_appends_after_a_last_line_without_newline(tmp_path):
    """A last line that parses as a whole JSON object is a record (another tool wrote it without a final
    newline), not a torn write: appending keeps it."""
    out = tmp_path / "problems.jsonl"
    out.write_text('{"id": "mine", "problem": "Mine?", "domain": "math", "answer": "1"}')
    source = tmp_path / "more.jsonl"
    source.write_text('{"id": "new", "problem": "New?", "domain": "math", "answer": "2"}\n')
    result = CliRunner().invoke(app, ["import", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["mine", "new"]


def test_empty_input_replaces_an_output_only_when_asked(tmp_path):
    empty, traces = tmp_path / "empty.jsonl", tmp_path / "traces.jsonl"
    empty.write_text("")
    traces.write_text(json.dumps({"problem_id": "p", "sample": 0, "teacher": "t", "prompt": [],
                                  "completion": "x"}) + "\n")
    merged = tmp_path / "merged.jsonl"
    merged.write_bytes(traces.read_bytes())
    refused = CliRunner().invoke(app, ["merge", str(empty), "-o", str(merged)])
    assert refused.exit_code == 2 and "--allow-empty" in refused.output
    assert merged.read_bytes() == traces.read_bytes()
    allowed = CliRunner().invoke(app, ["merge", str(empty), "-o", str(merged), "--allow-empty"])
    assert allowed.exit_code == 0 and merged.read_text() == ""


def test_filter_on_an_empty_input_leaves_earlier_outputs_unless_asked(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "filter"
    out.mkdir()
    (out / "kept.jsonl").write_text('{"earlier": true}\n')
    problems = tmp_path / "problems.jsonl"
    problems.write_text('{"id": "p", "problem": "1+1?", "answer": "2"}\n')
    args = ["filter", "--input", str(empty), "--problems", str(problems), "--out-dir", str(out), "workers=1"]
    refused = CliRunner().invoke(app, args, terminal_width=10_000)
    assert refused.exit_code == 2 and "holds no traces" in refused.output
    assert (out / "kept.jsonl").read_text() == '{"earlier": true}\n'
    allowed = CliRunner().invoke(app, [*args, "--allow-empty"], terminal_width=10_000)
    assert allowed.exit_code == 0, allowed.output
    assert (out / "kept.jsonl").read_text() == "" and json.loads((out / "stats.json").read_text())["kept"] == 0


def test_benchmarks_lists_answers_and_r1_protocol():
    output = " ".join(CliRunner().invoke(app, ["benchmarks"], terminal_width=200).output.split())
    for name in ("aime24", "aime25", "math500", "gpqa-diamond", "amc23", "gsm8k", "humaneval", "livecodebench"):
        assert name in output
    assert "answers" in output and "'025' = 25" in output and "temperature 0.6" in output and "top-p 0.95" in output


def test_dry_runs_read_and_count_their_data(tmp_path):
    """The estimate comes after the data is read: the row counts are in the dry run's answer."""
    train = tmp_path / "kept.jsonl"
    train.write_text(json.dumps({"problem_id": "p", "sample": 0, "teacher": "t", "completion": "x",
                                 "prompt": [{"role": "user", "content": "q"}]}) + "\n")
    sft = CliRunner().invoke(app, ["sft", "--dry-run", "--train-file", str(train), "model=bundled:tiny"])
    assert sft.exit_code == 0 and json.loads(sft.stderr)["train_file"]["records"] == 1, sft.output
    problems = tmp_path / "problems.jsonl"
    problems.write_text('{"id": "a", "problem": "1+1?", "answer": "2"}\n{"id": "b", "problem": "2+2?", "answer": "4"}\n')
    rl = CliRunner().invoke(app, ["rl", "--dry-run", "--problems", str(problems), "--model", "bundled:tiny"])
    assert rl.exit_code == 0 and json.loads(rl.stderr)["problems"] == 2, rl.output


def test_export_of_an_empty_file_only_when_asked(tmp_path):
    empty = tmp_path / "kept.jsonl"
    empty.write_text("")
    refused = CliRunner().invoke(app, ["export", str(empty), "-o", str(tmp_path / "ds")], terminal_width=10_000)
    assert refused.exit_code == 2 and "--allow-empty" in refused.output and not (tmp_path / "ds").exists()
    allowed = CliRunner().invoke(app, ["export", str(empty), "-o", str(tmp_path / "ds"), "--allow-empty"])
    assert allowed.exit_code == 0 and "wrote 0 rows" in allowed.output, allowed.output


def test_eval_refuses_a_missing_model_folder_before_scoring_any_model(tmp_path):
    """A mistyped student folder stops the evaluation at once, naming it, not after the base has been scored."""
    heldout = Path(__file__).resolve().parents[1] / "data" / "demo" / "eval.jsonl"
    done = CliRunner().invoke(app, ["eval", "--models", "base=bundled:tiny,student=runs/nope/merged",
                                    "--bench", f"heldout={heldout}", "--limit", "2", "-k", "1", "--backend", "hf",
                                    "--out-dir", str(tmp_path / "scores")])
    assert done.exit_code == 2 and "runs/nope/merged: no such model folder or file" in done.output, done.output
    assert "Traceback" not in done.output and not (tmp_path / "scores" / "scores.json").exists()
