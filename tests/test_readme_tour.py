"""Every command of the README's two tours runs, as written, on the bundled model, offline.

The commands run in a scratch folder laid out like a checkout (`data/`, `recipes/`, `../shared`), in this
process, so the generate and eval commands share the suite's vLLM engine. They get only overrides that
keep them small and frugal: the suite's engine settings (eager, small KV cache), and for `distill run`
fewer samples and steps. What each command should leave behind is then checked.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import SUITE_VLLM
from typer.testing import CliRunner

from distill.cli import app
from distill.resources import package_root

ROOT = Path(__file__).resolve().parents[1]
ENGINE = [f"vllm.enforce_eager={str(SUITE_VLLM.enforce_eager).lower()}", f"vllm.kv_cache_gib={SUITE_VLLM.kv_cache_gib}",
          f"vllm.max_model_len={SUITE_VLLM.max_model_len}", f"vllm.dtype={SUITE_VLLM.dtype}"]
SMALL = {  # command -> overrides appended to it in the test
    "generate": ENGINE,
    "eval": ENGINE,
    "run": [f"generate.{o}" for o in ENGINE] + ["generate.limit=8", "generate.sampling.n=2", "eval.k=1",
                                                 "sft.max_steps=2"],
}


def tour_block(heading: str, language: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}", 1)[1]
    return re.search(rf"```{language}\n(.*?)```", section, re.DOTALL).group(1)


def cli_commands() -> list[list[str]]:
    """The CLI tour's commands, continuation lines joined, comments dropped."""
    joined = tour_block("Five-minute tour: the CLI", "bash").replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in joined.splitlines()]
    return [c for c in commands if c]


def test_the_tour_parses_into_distill_commands():
    commands = cli_commands()
    assert len(commands) >= 8 and all(c[0] == "distill" for c in commands)
    assert {c[1] for c in commands} >= {"generate", "filter", "sft", "eval", "run", "export"}


@pytest.mark.slow
@pytest.mark.vllm
def test_every_tour_command_runs(vllm_engine, tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("data", "recipes"):
        (checkout / name).symlink_to(package_root() / name)
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    monkeypatch.chdir(checkout)

    runner = CliRunner()
    for command in cli_commands():
        args = command[1:] + SMALL.get(command[1], [])
        done = runner.invoke(app, args)
        assert done.exit_code == 0, f"`{shlex.join(command)}` failed ({done.exit_code}):\n{done.output}\n{done.exception!r}"

    assert len((checkout / "gsm8k.jsonl").read_text().splitlines()) == 20
    assert len((checkout / "traces.jsonl").read_text().splitlines()) == 16 * 4
    assert (checkout / "filtered" / "kept.jsonl").stat().st_size > 0
    assert (checkout / "filtered" / "dataset" / "train.parquet").exists()  # `distill filter` exports as `run` does
    assert (checkout / "dataset" / "train.parquet").exists()
    assert (checkout / "student" / "merged" / "config.json").exists()
    scores = (checkout / "runs" / "eval" / "scores.json").read_text()
    assert '"base"' in scores and '"student"' in scores
    assert (checkout / "runs" / "tour" / "summary.json").exists()

    python_tour = tour_block("Five-minute tour: the Python API", "python")
    exec(compile(python_tour, "README.md (Python tour)", "exec"), {"__name__": "readme_tour"})  # noqa: S102 (the README's own code)
    assert (checkout / "shortest" / "kept.jsonl").exists()


SMALL_MODEL = "bundled:tiny"  # stands in for the README's 1.5B student: size is the only change


def public_set_commands(run_dir: Path) -> list[list[str]]:
    """The public-trace-set tour with the student shrunk and each command given size overrides only."""
    from test_data_recipes import size_overrides

    block = tour_block("Five-minute tour: from a public trace set", "bash").replace("\\\n", " ").replace(
        "Qwen/Qwen2.5-Math-1.5B", SMALL_MODEL)
    small = {"import": ["--limit", "4"],
             "sft": ["max_steps=2", "max_length=256", "gradient_accumulation_steps=1", "eval_fraction=0"],
             "eval": ["--limit", "1", "-k", "1", "backend=hf", "sampling.max_tokens=8"]}
    commands = []
    for line in block.splitlines():
        command = shlex.split(line, comments=True)
        if not command:
            continue
        extra = small.get(command[1], [])
        if command[1] == "run":
            extra = size_overrides(ROOT / command[2], run_dir)
        commands.append(command[1:] + extra)
    return commands


@pytest.mark.slow
def test_the_public_trace_set_tour_runs_offline(tmp_path, monkeypatch, tiny_model):
    from data_shapes import SHAPES, write_benchmark_caches, write_hub_cache

    cache = tmp_path / "hf" / "datasets"  # the hub datasets, as a download leaves them in the local cache
    write_hub_cache(SHAPES["openr1"](8), cache, "open-r1/OpenR1-Math-220k")
    write_benchmark_caches(cache)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("data", "recipes"):
        (checkout / name).symlink_to(package_root() / name)
    monkeypatch.chdir(checkout)

    commands = public_set_commands(checkout / "runs" / "recipe")
    assert [c[0] for c in commands] == ["import", "filter", "sft", "eval", "run"]
    runner = CliRunner()
    for args in commands:
        done = runner.invoke(app, args)
        assert done.exit_code == 0, f"`distill {shlex.join(args)}` failed ({done.exit_code}):\n{done.output}\n{done.exception!r}"

    openr1 = checkout / "runs" / "openr1"
    assert len((openr1 / "problems.jsonl").read_text().splitlines()) == 4
    assert (openr1 / "filter" / "kept.jsonl").stat().st_size > 0
    assert (openr1 / "student" / "merged" / "config.json").exists()
    scores = (checkout / "runs" / "eval" / "scores.json").read_text()
    assert '"aime24"' in scores and '"math500"' in scores and '"student"' in scores
    assert (checkout / "runs" / "recipe" / "summary.json").exists()
