"""`distill eval` records what reproduces its numbers, and `rescore` judges the stored samples again without
generating: on an unchanged tree it gives the very verdicts and scores the run gave."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.cards import write_model_card
from distill.config import EvalConfig, SFTConfig
from distill.errors import DistillError
from distill.eval import evaluate, rescore
from distill.eval.provenance import verifier_digest
from distill.files import file_digest

ROOT = Path(__file__).resolve().parents[1]


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_rescore_gives_the_runs_verdicts_and_the_record_names_what_reproduces_them(tiny_model, tmp_path):
    bench = tmp_path / "heldout.jsonl"
    problems = read(ROOT / "data/demo/eval.jsonl")[:3]
    write(bench, problems)
    config = EvalConfig(models=["tiny=bundled:tiny"], backend="hf", k=2, benchmarks=[{"name": "heldout", "path": bench}],
                        output_dir=tmp_path / "run", sampling={"max_tokens": 4, "seed": 0}, hf={"batch_size": 1})
    evaluate(config, progress=False)
    # The random tiny model answers nothing; give its samples answers of every kind, then let eval judge them.
    traces_path = tmp_path / "run" / "tiny" / "heldout.traces.jsonl"
    answers = {0: "So the answer is \\boxed{{{gold}}}.", 1: "The answer is {wrong}.",
               2: "$\\boxed{{{gold}}}$ or $\\boxed{{{wrong}}}$", 3: "Final Answer: The final answer is {gold}. I hope "
               "it is correct.", 4: "no answer", 5: "\\boxed{{{gold}}} and \\boxed{{{gold}}}"}
    gold = {p["id"]: p["answer"] for p in problems}
    traces = read(traces_path)
    for i, trace in enumerate(traces):
        right = gold[trace["problem_id"]]
        text = answers[i % len(answers)].format(gold=right, wrong=int(float(right)) + 1)
        trace.update(completion=f"thinking\n</think>\n\n{text}", reasoning="thinking", answer=text)
    write(traces_path, traces)
    for stale in ("heldout.verdicts.jsonl", "heldout.results.jsonl"):
        (tmp_path / "run" / "tiny" / stale).unlink()
    run = evaluate(config, progress=False)  # resumes: no sample generated, every one judged
    stored = read(tmp_path / "run" / "tiny" / "heldout.verdicts.jsonl")
    assert [v["passed"] for v in stored] == [True, False, False, True, False, True]

    again = rescore(tmp_path / "run", progress=False)
    assert again.changed == {"tiny": {"heldout": 0}}
    rescored = read(tmp_path / "run" / "rescore" / "tiny" / "heldout.verdicts.jsonl")
    assert rescored == stored
    assert again.scores["scores"] == run.scores["scores"]
    assert rescore(tmp_path / "run", progress=False).scores["scores"] == run.scores["scores"]

    record = run.scores["reproduce"]
    problem_file = Path(record["benchmarks"]["heldout"]["path"])
    assert record["benchmarks"]["heldout"] == {"path": str(problem_file), "sha256": file_digest(problem_file),
                                               "problems": 3, "limit": None}
    assert record["verifier"]["source_sha256"] == verifier_digest() and record["k"] == 2
    assert record["seeds"]["sampling"] == 0 and record["sampling"]["max_tokens"] == 4
    assert record["libraries"]["math-verify"] and record["chat_templates"]["tiny"]["sha256"]
    assert len(record["prompt_template"]["sha256"]) == 16
    card = write_model_card(tmp_path / "student", SFTConfig(method="lora"), scores=run.scores).read_text()
    assert "### Reproduce" in card and record["verifier"]["source_sha256"] in card
    assert record["benchmarks"]["heldout"]["sha256"] in card and "--rescore" in card


def test_rescore_without_a_run_says_what_it_needs(tmp_path):
    with pytest.raises(DistillError, match=r"no scores.json there; expected the output folder of a `distill eval` run"):
        rescore(tmp_path, progress=False)
