"""Benchmarks by name: public copies (here: hub-cache entries in the published column shapes, or the offline
copies in ../shared/data) become Problems with the right answers; `distill eval --bench NAME` scores them."""
from __future__ import annotations

import json

import pytest
from data_shapes import GPQA_ROWS, write_benchmark_caches

from distill.benchmarks import REGISTRY, benchmark_problems, gpqa, integer_answer
from distill.config import EvalConfig
from distill.context_window import check_context_window, context_window
from distill.errors import DistillError
from distill.eval import evaluate
from distill.verify import verify


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf") / "datasets"
    write_benchmark_caches(cache)
    return cache


@pytest.fixture
def offline_hub(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(hub_cache))
    return hub_cache


def test_answer_normalisation():
    assert [integer_answer(v) for v in ("025", 142.0, "142.0", "0", 0.5, "\\frac{1}{2}")] == \
        ["25", "142", "142", "0", "0.5", "\\frac{1}{2}"]


def test_aime_and_amc_answers_come_out_as_integers(offline_hub):
    aime = benchmark_problems("aime24")
    assert list(aime) == ["aime24-60", "aime24-61", "aime24-62"]
    assert [p.answer for p in aime.values()] == ["25", "204", "7"]
    amc = benchmark_problems("amc23")
    assert [p.answer for p in amc.values()] == ["142", "0.5", "3"]


def test_gpqa_choices_are_shuffled_the_same_way_every_time(offline_hub):
    problems = benchmark_problems("gpqa-diamond")
    assert len(problems) == 12 and all(p.domain == "mcq" and len(p.choices) == 4 for p in problems.values())
    for p in problems.values():
        assert p.choices["ABCD".index(p.answer)] == "right"
    assert len({p.answer for p in problems.values()}) > 1  # not always A, as in the raw columns
    assert benchmark_problems("gpqa-diamond") == problems
    assert gpqa(GPQA_ROWS[0], "row 1", seed=1).choices != problems["rec000"].choices or \
        gpqa(GPQA_ROWS[0], "row 1", seed=2).choices != problems["rec000"].choices


def test_livecodebench_public_and_private_tests_become_structured_and_verify(offline_hub):
    [problem] = benchmark_problems("livecodebench").values()
    assert problem.id == "lcb-abc001_a" and problem.domain == "code"
    assert problem.meta["public_test_cases"] == [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]
    assert [(c.input, c.output) for c in problem.tests.stdio] == [("1 2\n", "3\n"), ("40 2\n", "42\n")]
    right = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    public_only = "```python\na, b = map(int, input().split())\nprint(3 if (a, b) == (1, 2) else 0)\n```"
    assert verify(problem, right).passed
    assert not verify(problem, public_only).passed  # the private case catches a memorised public answer


def test_offline_copies_need_no_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty"))
    assert len(benchmark_problems("math500")) == 500
    assert len(benchmark_problems("gsm8k", limit=5)) == 5
    humaneval = benchmark_problems("humaneval")
    assert len(humaneval) == 164 and humaneval["HumanEval/0"].entry_point == "has_close_elements"
    with pytest.raises(DistillError, match=r"HuggingFaceH4/aime_2024.*not in the local Hugging Face datasets cache"):
        benchmark_problems("aime24")
    with pytest.raises(DistillError, match="not a known benchmark"):
        benchmark_problems("aime1999")
    assert set(REGISTRY) >= {"aime24", "aime25", "math500", "gpqa-diamond", "amc23", "gsm8k", "humaneval",
                             "livecodebench"}


def test_eval_by_benchmark_name(offline_hub, tmp_path, tiny_model):
    config = EvalConfig(models=["bundled:tiny"], benchmarks=[{"name": "aime24", "limit": 2}, {"name": "math500", "limit": 2}],
                        k=1, backend="hf", output_dir=tmp_path / "eval", sampling={"max_tokens": 8})
    result = evaluate(config, progress=False)
    assert result.scores["benchmarks"]["aime24"]["problems"] == 2
    assert set(result.scores["scores"]["bundled-tiny"]) == {"aime24", "math500"}
    written = [json.loads(line) for line in (tmp_path / "eval" / "benchmarks" / "aime24.jsonl").read_text().splitlines()]
    assert [p["answer"] for p in written] == ["25", "204", "7"]


def test_context_window_is_checked_from_the_config_alone(tiny_model):
    window = context_window("bundled:tiny")
    assert isinstance(window, int) and window > 0
    check_context_window("bundled:tiny", window)
    with pytest.raises(DistillError, match=rf"sft.max_length is {window + 1} but bundled:tiny has a context window of {window}"):
        check_context_window("bundled:tiny", window + 1)
