"""The vllm backend on the bundled SmolLM2, through the one engine the suite shares."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SUITE_VLLM

from distill.config import GenerateConfig
from distill.generation import generate
from distill.generation.engine import shared_llm
from distill.generation.prompts import build_messages, render_prompt
from distill.generation.shards import expected_keys
from distill.jsonl import read_jsonl
from distill.records import Problem, Trace

pytestmark = pytest.mark.vllm

QUESTIONS = [
    "Tom has 3 apples and buys 5 more. How many apples does he have?",
    "A train travels 60 miles in 1.5 hours. What is its speed in miles per hour?",
    "What is 15% of 80?",
]


@pytest.fixture(scope="module")
def problems(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vllm") / "problems.jsonl"
    path.write_text("".join(json.dumps(Problem(id=f"q{i}", problem=q).to_json()) + "\n"
                            for i, q in enumerate(QUESTIONS)))
    return path


def vllm_config(tmp_path: Path, name: str, problems: Path, **sampling) -> GenerateConfig:
    return GenerateConfig(problems=problems, output=tmp_path / f"{name}.jsonl",
                          sampling={"n": 2, "max_tokens": 40, **sampling}, vllm=SUITE_VLLM)


def traces_of(path: Path) -> list[Trace]:
    return list(read_jsonl(path, Trace))


def completions(traces: list[Trace]) -> dict[str, str]:
    return {t.key: t.completion for t in traces}


def test_vllm_traces_reuse_the_shared_engine(tmp_path, problems, vllm_engine, smollm2):
    config = vllm_config(tmp_path, "traces", problems)
    result = generate(config, progress=False)
    assert shared_llm(smollm2, config.vllm, seed=0) is vllm_engine  # no second engine was started
    traces = traces_of(result.output)
    assert sorted(t.key for t in traces) == sorted(expected_keys(problems, 2))
    tokenizer = vllm_engine.get_tokenizer()
    by_id = {p.id: p for p in read_jsonl(problems, Problem)}
    for trace in traces:
        assert trace.teacher == "bundled:smollm2-135m-instruct" and trace.completion
        prompt = render_prompt(tokenizer, build_messages(by_id[trace.problem_id], config.prompts), config.prompts)
        assert trace.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        assert 0 < trace.completion_tokens <= 40
        assert trace.finish_reason == ("length" if trace.completion_tokens == 40 else "stop")
    assert result.stats["traces"] == 6 and result.stats["run"]["output_tokens"] == sum(
        t.completion_tokens for t in traces)


def test_vllm_same_seed_same_traces(tmp_path, problems, vllm_engine):
    first = traces_of(generate(vllm_config(tmp_path, "a", problems), progress=False).output)
    # Same seed: the same traces (the suite's engine runs in float32, where logits do not depend on what
    # else the engine batched before; in bfloat16 a draw near a boundary could flip).
    again = generate(vllm_config(tmp_path, "b", problems), progress=False)
    other = traces_of(generate(vllm_config(tmp_path, "c", problems, seed=1), progress=False).output)
    assert completions(traces_of(again.output)) == completions(first)
    assert completions(other) != completions(first)
    assert len(set(completions(first).values())) == len(first)  # the n samples of a problem differ


def test_vllm_temperature_zero_is_greedy(tmp_path, problems, vllm_engine):
    traces = traces_of(generate(vllm_config(tmp_path, "g", problems, temperature=0.0, max_tokens=12),
                                progress=False).output)
    by_problem: dict[str, set[str]] = {}
    for trace in traces:
        by_problem.setdefault(trace.problem_id, set()).add(trace.completion)
    assert all(len(texts) == 1 for texts in by_problem.values())  # both samples: the argmax path
