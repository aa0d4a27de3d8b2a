"""Public trace sets in their published shapes (parquet, save_to_disk, JSONL, hub cache) import into Problems +
Traces that `distill filter` and `distill sft` take as they are; broken rows give one paragraph, no traceback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_shapes import SHAPES, write_disk, write_hub_cache, write_jsonl, write_parquet
from typer.testing import CliRunner

from distill.cli import app
from distill.importers import import_traces
from distill.records import Problem, Trace
from distill.sources import SourceError

WRITERS = {"parquet": lambda rows, d: write_parquet(rows, d / "set.parquet"),
           "disk": lambda rows, d: write_disk(rows, d / "set"),
           "jsonl": lambda rows, d: write_jsonl(rows, d / "set.jsonl")}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize(("shape", "writer", "fmt", "problems", "traces"), [
    ("openr1", "parquet", "openr1", 4, 12),
    ("openr1", "disk", "openr1", 4, 12),
    ("messages", "disk", "messages", 4, 4),
    ("openthoughts", "jsonl", "openthoughts", 4, 4),
    ("openthoughts", "parquet", "openthoughts", 4, 4),
    ("s1k", "parquet", "s1k", 3, 3),
    ("s1k-1.1", "jsonl", "s1k", 3, 6),
])
def test_each_public_shape_imports_with_reasoning_and_answer_split(tmp_path, shape, writer, fmt, problems, traces):
    rows = SHAPES[shape]()
    source = WRITERS[writer](rows, tmp_path)
    result = import_traces(source, tmp_path / "out")
    assert (result.format, result.problems, result.traces) == (fmt, problems, traces)
    imported = [Trace.model_validate(t) for t in read(result.traces_path)]
    by_id = {p["id"]: Problem.model_validate(p) for p in read(result.problems_path)}
    for trace in imported:
        assert trace.problem_id in by_id
        assert trace.prompt[-1]["role"] == "user" and trace.prompt[0]["role"] != "system"
        assert "<think>" not in trace.reasoning and "begin_of_thought" not in trace.reasoning
        assert "end_of_solution" not in trace.answer and "</think>" not in trace.answer
        if trace.finish_reason != "length":
            assert len(trace.reasoning) > 40 and trace.answer
    first = rows[0]
    if shape == "openr1":
        assert by_id["a1b2c3d4-0000"].answer == first["answer"]
        assert [t.meta["correctness_math_verify"] for t in imported[:3]] == [True, False, False]
        assert [t.finish_reason for t in imported[:3]] == ["stop", "stop", "length"]
        assert imported[0].answer == f"So the answer is $\\boxed{{{first['answer']}}}$."
    if shape == "s1k-1.1":
        assert {t.teacher for t in imported} == {"deepseek-ai/DeepSeek-R1", "google/gemini-2.0-flash-thinking-exp"}
        assert imported[0].answer.startswith("**Final Answer**")
    again = import_traces(source, tmp_path / "out")  # a rerun (or a resumed crash) adds nothing
    assert (again.problems, again.traces) == (0, 0) and len(read(result.traces_path)) == traces


def test_openr1_from_the_hub_cache_by_id_then_filter_and_sft_take_it(tmp_path, monkeypatch, tiny_model):
    cache = tmp_path / "hf-datasets"
    write_hub_cache(SHAPES["openr1"](), cache, "open-r1/OpenR1-Math-220k")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    runner = CliRunner()
    out = tmp_path / "imported"
    result = runner.invoke(app, ["import", "open-r1/OpenR1-Math-220k:default/train", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(read(out / "traces.jsonl")) == 12

    result = runner.invoke(app, ["filter", "--input", str(out / "traces.jsonl"), "--problems", str(out / "problems.jsonl"),
                                 "--out-dir", str(tmp_path / "filtered"), "workers=1"])
    assert result.exit_code == 0, result.output
    kept = read(tmp_path / "filtered" / "kept.jsonl")
    # The wrong and the truncated generation of each problem go; distill's verdict matches the dataset's.
    assert len(kept) == 4 and all(t["meta"]["correctness_math_verify"] for t in kept)

    result = runner.invoke(app, ["sft", "--train-file", str(tmp_path / "filtered" / "kept.jsonl"),
                                 "--out-dir", str(tmp_path / "student"), "--model", "bundled:tiny", "--method", "lora",
                                 "max_steps=2", "max_length=512", "per_device_batch_size=1",
                                 "gradient_accumulation_steps=1", "eval_fraction=0", "merge=false", "precision=fp32",
                                 "gradient_checkpointing=false"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "student" / "adapter" / "adapter_config.json").exists() or \
        any((tmp_path / "student").rglob("adapter_model.safetensors"))


def test_a_missing_hub_dataset_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty"))
    result = CliRunner().invoke(app, ["import", "open-r1/Mixture-of-Thoughts:math/train", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "not in the local Hugging Face datasets cache" in text
    assert "datasets.load_dataset('open-r1/Mixture-of-Thoughts', 'math', split='train')" in text
    assert "Traceback" not in result.output


def test_unknown_columns_are_named(tmp_path):
    source = write_jsonl([{"prompt_text": "x", "completion_text": "y"}], tmp_path / "odd.jsonl")
    result = CliRunner().invoke(app, ["import", str(source), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "cannot tell the format from the columns ['completion_text', 'prompt_text']" in text


def _broken(shape: str, **change) -> list[dict]:
    rows = SHAPES[shape](2)
    rows[1] = {**rows[1], **change}
    return rows


@pytest.mark.parametrize(("shape", "change", "field", "expected"), [
    ("openr1", {"generations": "just one string"}, "generations", "a list of texts"),
    ("openr1", {"finish_reasons": ["stop"]}, "finish_reasons", "one per generation (3)"),
    ("openr1", {"problem": None}, "problem", "the problem statement"),
    ("messages", {"messages": [{"role": "user", "content": "hi"}]}, "messages", "followed by an assistant turn"),
    ("messages", {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]},
     "messages[0]", "expected {'role'"),
    ("openthoughts", {"conversations": [{"from": "user", "value": "q"}, {"from": "assistant", "value": "no tags"}]},
     "conversations", "no <|begin_of_thought|> block"),
    ("s1k", {"thinking_trajectories": "not a list"}, "thinking_trajectories", "a list of texts"),
    ("s1k-1.1", {"deepseek_attempt": 7}, "deepseek_attempt", "final attempt"),
])
@pytest.mark.parametrize("writer", ["jsonl", "disk"])
def test_each_importer_reports_a_broken_row_in_one_paragraph(tmp_path, shape, change, field, expected, writer):
    if writer == "disk" and shape in ("openr1", "messages", "s1k", "s1k-1.1"):
        # Arrow needs one type per column: a mistyped value cannot exist in a saved dataset, only in JSON.
        writer = "jsonl"
    source = WRITERS[writer](_broken(shape, **change), tmp_path)
    with pytest.raises(SourceError) as info:
        import_traces(source, tmp_path / "out")
    message = str(info.value)
    where = f"{source}:2" if writer == "jsonl" else "row 2"
    assert where in message and f"field '{field}'" in message and expected in message
    assert "\n" not in message
    result = CliRunner().invoke(app, ["import", str(source), "-o", str(tmp_path / "cli")])
    assert result.exit_code == 2 and "Traceback" not in result.output and "error:" in result.output


def test_import_and_benchmarks_help_render():
    runner = CliRunner()
    result = runner.invoke(app, ["import", "--help"])
    assert result.exit_code == 0 and "ORG/NAME[:CONFIG][/SPLIT]" in result.output
    result = runner.invoke(app, ["benchmarks"])
    assert result.exit_code == 0 and "gpqa-diamond" in result.output and "math500" in result.output
