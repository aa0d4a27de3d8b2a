"""No stale results: a rerun whose input file changed under the same config redoes the work."""
from __future__ import annotations

import json
from pathlib import Path

from test_sft_support import tiny_config, write_traces

from distill.config import FilterConfig
from distill.filter import filter_traces
from distill.records import Problem, Trace
from distill.sft import train


def test_sft_notices_a_changed_training_file(tmp_path: Path):
    write_traces(tmp_path / "kept.jsonl", 8)
    config = tiny_config(tmp_path, "run", max_steps=2)
    first = train(config, progress=False)
    assert train(config, progress=False).metrics == first.metrics  # unchanged input: the recorded result

    write_traces(tmp_path / "kept.jsonl", 12, start=100)  # other traces, same path, same config
    second = train(config, progress=False)
    assert second.metrics["train_file_digest"] != first.metrics["train_file_digest"]
    assert second.metrics["data"] != first.metrics["data"]  # trained on the new rows
    assert second.metrics["resumed_from_step"] == 0  # the old checkpoints were not resumed


def _traces(path: Path, boxed: str) -> Path:
    trace = Trace(problem_id="p", sample=0, teacher="t", prompt=[{"role": "user", "content": "1+1?"}],
                  completion=f"One plus one.\n</think>\n\n\\boxed{{{boxed}}}", reasoning="One plus one.",
                  answer=f"\\boxed{{{boxed}}}", finish_reason="stop")
    path.write_text(json.dumps(trace.to_json()) + "\n")
    return path


def test_filter_notices_traces_rewritten_under_the_same_keys(tmp_path: Path):
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps(Problem(id="p", problem="1+1?", answer="2").to_json()) + "\n")
    config = FilterConfig(input=_traces(tmp_path / "traces.jsonl", "3"), problems=problems,
                          output_dir=tmp_path / "out", workers=1)
    assert filter_traces(config, progress=False).kept == 0
    again = filter_traces(config, progress=False)
    assert again.kept == 0 and again.stats["resumed"] == 1  # unchanged input: verdicts reused

    _traces(tmp_path / "traces.jsonl", "2")  # same problem_id#sample, now right
    fixed = filter_traces(config, progress=False)
    assert fixed.kept == 1 and fixed.stats["resumed"] == 0
