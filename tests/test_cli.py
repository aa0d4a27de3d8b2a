"""The CLI shell: every command listed, recipes browsable, models listed."""
import json
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, str(Path(__file__).parents[1] / "cli.py")]


def cli(*args):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, check=False)


def test_help_lists_every_command():
    out = cli("--help").stdout
    for command in ("generate", "filter", "sft", "eval", "run", "demo", "recipes", "models"):
        assert command in out


def test_recipes_list_show_cp_schema(tmp_path):
    import yaml

    from distill.config import load_recipe
    from distill.resources import find_recipe, shipped_recipes

    listing = cli("recipes", "list")
    assert listing.returncode == 0
    first_words = {line.split()[0] for line in listing.stdout.splitlines() if line.strip()}
    assert set(shipped_recipes()) <= first_words and not any("accelerate" in w for w in first_words)
    shown = cli("recipes", "show", "demo", "--resolved")
    assert shown.returncode == 0
    assert yaml.safe_load(shown.stdout) == load_recipe(find_recipe("demo")).model_dump(mode="json")
    copied = cli("recipes", "cp", "demo", str(tmp_path))
    assert copied.returncode == 0 and (tmp_path / "demo.yaml").read_text() == find_recipe("demo").read_text()
    again = cli("recipes", "cp", "demo", str(tmp_path))
    assert again.returncode == 2 and "not overwriting" in again.stderr
    schema = json.loads(cli("recipes", "schema").stdout)
    assert schema["title"] == "Recipe" and set(schema["properties"]) >= {"generate", "filter", "sft", "eval"}


def test_models_lists_bundled():
    out = cli("models")
    assert out.returncode == 0 and "bundled:smollm2-135m-instruct" in out.stdout and "bundled:tiny" in out.stdout
    assert "bundled:gemma3-270m" in out.stdout and "license: Gemma terms of use" in " ".join(out.stdout.split())


def test_stage_without_input_says_what_is_missing():
    out = cli("generate")
    assert out.returncode == 2 and "--problems" in out.stderr and "Traceback" not in out.stderr


def test_every_listed_recipe_is_whole_and_launchable_as_its_header_says():
    """`distill recipes list` shows only what `distill run` accepts: each recipe names its own launch command,
    and with that command's overrides its first stage has its input (fragments live elsewhere)."""
    import re

    from distill.config import load_recipe
    from distill.resources import shipped_recipes
    from distill.stages.rl import follows_sft as rl_follows_sft

    problems = Path(__file__).parents[1] / "distill" / "data" / "demo" / "train.jsonl"
    for name, path in shipped_recipes().items():
        launch = re.search(rf"distill run recipes/{re.escape(name)}\.yaml((?: [\w.]+=\S+)*)", path.read_text())
        assert launch, f"{name}: no 'distill run recipes/{name}.yaml' launch line"
        overrides = [o.replace("PROBLEMS.jsonl", str(problems)) for o in launch.group(1).split()]
        recipe = load_recipe(path, overrides)
        if recipe.rl is not None and not rl_follows_sft(recipe):
            assert recipe.rl.model and recipe.rl.problems, name  # R1-Zero style: rl runs first
        else:
            assert recipe.generate.problems is not None or recipe.import_traces is not None, name


def test_a_run_dir_that_cannot_be_written_is_one_paragraph(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    done = cli("demo", "--quick", "--run-dir", str(blocked / "run"))
    assert done.returncode == 2 and "cannot write there" in done.stderr and str(blocked) in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_bad_input_in_a_real_process_is_one_paragraph_without_traceback(tmp_path):
    """The in-process suite (test_bad_input.py) in a real process, where the libraries' logging is live too."""
    (tmp_path / "bin.jsonl").write_bytes(bytes(range(256)))
    (tmp_path / "bad.json").write_text("{ not json")
    cases = [(["export", str(tmp_path / "bin.jsonl"), "-o", str(tmp_path / "out")], "bin.jsonl:1"),
             (["import", str(tmp_path / "bad.json"), "-o", str(tmp_path / "p.jsonl")], "bad.json:1"),
             (["filter", "--input", str(tmp_path / "[bold]x[/].jsonl")], "[bold]x[/].jsonl")]
    for args, named in cases:
        out = cli(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], out.stderr


def test_filter_exports_the_kept_traces_as_the_pipeline_does(tmp_path):
    import datasets

    problems = [{"id": f"p{i}", "problem": f"What is {i} + 1?", "domain": "math", "answer": str(i + 1)}
                for i in range(3)]
    traces = [{"problem_id": p["id"], "sample": 0, "teacher": "t",
               "prompt": [{"role": "user", "content": p["problem"]}],
               "completion": f"<think>\nadd one\n</think>\n\nThe answer is \\boxed{{{answer}}}.",
               "reasoning": "add one", "answer": f"The answer is \\boxed{{{answer}}}.", "finish_reason": "stop"}
              for p, answer in zip(problems, ["1", "2", "4"])]  # p2 is answered wrong
    for name, rows in (("problems.jsonl", problems), ("traces.jsonl", traces)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))

    done = cli("filter", "--input", str(tmp_path / "traces.jsonl"), "--problems", str(tmp_path / "problems.jsonl"),
               "--out-dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    kept = [json.loads(line)["problem_id"] for line in (tmp_path / "out" / "kept.jsonl").read_text().splitlines()]
    exported = datasets.load_from_disk(str(tmp_path / "out" / "dataset" / "hf"))
    assert kept == ["p0", "p1"] and len(exported) == 2
    assert exported[0]["messages"][-1]["role"] == "assistant"
    assert (tmp_path / "out" / "dataset" / "train.parquet").exists()

    elsewhere = cli("filter", "--input", str(tmp_path / "traces.jsonl"), "--problems",
                    str(tmp_path / "problems.jsonl"), "--out-dir", str(tmp_path / "again"), "--no-export")
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert (tmp_path / "again" / "kept.jsonl").exists() and not (tmp_path / "again" / "dataset").exists()
