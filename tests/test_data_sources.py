"""Problems from any source (files, save_to_disk folders, hub cache) with field maps, numeric ids and clear
errors; the same reader feeds generate, filter and decontamination; the plain-CoT splitter on one paragraph."""
from __future__ import annotations

import json

import pytest
from data_shapes import write_disk, write_hub_cache, write_jsonl, write_parquet
from typer.testing import CliRunner

from distill.cli import app
from distill.config import DecontamConfig, FilterConfig, GenerateConfig
from distill.filter import filter_traces
from distill.filter.decontam import Decontaminator
from distill.generation import generate
from distill.generation.extract import split_completion
from distill.problems import iter_problems, load_problems
from distill.sources import SourceError, parse_spec

AIME_ROWS = [{"ID": 2024 + i, "Problem": f"Find the number {i}.", "Answer": i * 7} for i in range(1, 4)]


def fields(spec: str) -> tuple:
    parsed = parse_spec(spec)
    return parsed.kind, parsed.path, parsed.config, parsed.split


def test_spec_forms(tmp_path):
    folder = write_disk(AIME_ROWS, tmp_path / "dd", split="test")
    assert fields("open-r1/OpenR1-Math-220k:default/train") == ("hub", "open-r1/OpenR1-Math-220k", "default", "train")
    assert fields("openai/gsm8k/test") == ("hub", "openai/gsm8k", None, "test")
    assert parse_spec("a.jsonl.gz").kind == "jsonl" and parse_spec("a.parquet").kind == "file"
    assert fields(f"{folder}:test") == ("disk", str(folder), None, "test")
    with pytest.raises(SourceError, match="not a hub id"):
        parse_spec("no/such/file/here.txt")


@pytest.mark.parametrize("writer", ["jsonl", "parquet", "csv", "json", "disk", "disk-split"])
def test_numeric_ids_and_answers_become_text_from_every_container(tmp_path, writer):
    if writer == "jsonl":
        source = write_jsonl(AIME_ROWS, tmp_path / "aime.jsonl")
    elif writer == "parquet":
        source = write_parquet(AIME_ROWS, tmp_path / "aime.parquet")
    elif writer == "csv":
        source = tmp_path / "aime.csv"
        source.write_text("ID,Problem,Answer\n" + "".join(f"{r['ID']},{r['Problem']},{r['Answer']}\n" for r in AIME_ROWS))
    elif writer == "json":
        source = tmp_path / "aime.json"
        source.write_text(json.dumps(AIME_ROWS))
    else:
        source = write_disk(AIME_ROWS, tmp_path / "aime", split="test" if writer == "disk-split" else None)
        source = f"{source}:test" if writer == "disk-split" else source
    problems = load_problems(source, domain="math")
    assert list(problems) == ["2025", "2026", "2027"]
    assert [p.answer for p in problems.values()] == ["7", "14", "21"]
    assert problems["2025"].problem == "Find the number 1." and problems["2025"].domain == "math"


def test_field_map_and_domain_default(tmp_path):
    rows = [{"q": "Is the sky blue?", "label": "yes", "key": 1.0}]
    source = write_jsonl(rows, tmp_path / "t.jsonl")
    [problem] = iter_problems(source, field_map={"problem": "q", "answer": "label", "id": "key"}, domain="text")
    assert (problem.id, problem.problem, problem.answer, problem.domain) == ("1", "Is the sky blue?", "yes", "text")
    with pytest.raises(SourceError, match=r"t.jsonl:1: the field map wants column 'question'"):
        list(iter_problems(source, field_map={"problem": "question"}))


def test_duplicate_ids_and_bad_fields_name_the_rows(tmp_path):
    rows = [{"id": 7, "problem": "a"}, {"id": "x", "problem": "b"}, {"id": 7.0, "problem": "c"}]
    source = write_jsonl(rows, tmp_path / "dup.jsonl")
    with pytest.raises(SourceError) as info:
        load_problems(source)
    assert str(info.value).startswith(f"{source}:3: problem id '7' appears twice (first at {source}:1)")
    bad = write_parquet([{"id": "1", "problem": "p", "domain": "chemistry"}], tmp_path / "bad.parquet")
    with pytest.raises(SourceError, match=r"bad.parquet row 1: field 'domain' has the bad value 'chemistry'"):
        load_problems(bad)
    result = CliRunner().invoke(app, ["import", "problems", str(source), "-o", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 2 and "appears twice" in result.output and "Traceback" not in result.output


def test_hub_id_from_the_local_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    write_hub_cache(AIME_ROWS, cache, "Maxwell-Jia/AIME_2024")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    assert list(load_problems("Maxwell-Jia/AIME_2024")) == ["2025", "2026", "2027"]
    with pytest.raises(SourceError, match="split"):
        load_problems("Maxwell-Jia/AIME_2024:default/validation")


def test_generate_filter_and_decontamination_read_dataset_specs(tmp_path, tiny_model):
    rows = [{"question": f"What is {i} + {i}?", "answer": 2 * i, "uid": i} for i in range(1, 4)]
    problems = write_parquet(rows, tmp_path / "train.parquet")
    traces = tmp_path / "traces.jsonl"
    result = generate(GenerateConfig(model="bundled:tiny", backend="hf", problems=problems, output=traces,
                                     sampling={"n": 1, "max_tokens": 4}), progress=False)
    assert result.written == 3
    ids = {json.loads(line)["problem_id"] for line in traces.read_text().splitlines()}
    assert all(i.startswith("train-") for i in ids)  # no id column: stable ids from the text
    filtered = filter_traces(FilterConfig(input=traces, problems=problems, output_dir=tmp_path / "f", workers=1),
                             progress=False)
    assert filtered.kept + filtered.rejected == 3
    against = write_disk([{"problem": "What is 2 + 2?", "id": 9}], tmp_path / "bench")
    decontam = Decontaminator(DecontamConfig(against=[against]))
    assert decontam.match("p", "tell me: what is 2 + 2?") is not None


@pytest.mark.parametrize(("text", "reasoning", "answer"), [
    ("We add 2 and 3 to get 5. The answer is 5.", "We add 2 and 3 to get 5.", "The answer is 5."),
    ("First, 2 + 3 = 5.\nSo the result is \\boxed{5}.", "First, 2 + 3 = 5.", "So the result is \\boxed{5}."),
    ("Step one.\n\nStep two.\n\nThe answer is 3.", "Step one.\n\nStep two.", "The answer is 3."),
    ("The answer is 7.", "", "The answer is 7."),
])
def test_plain_chain_of_one_paragraph_keeps_its_reasoning(text, reasoning, answer):
    split = split_completion(text, prefilled_think=False, reasoning_content=None, fmt="plain")
    assert (split.reasoning, split.answer) == (reasoning, answer)
