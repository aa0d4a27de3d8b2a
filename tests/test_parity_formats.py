"""Rows in the exact published shape of each public set distill reads (tests/fixtures/parity, written to
parquet as the hub serves them: column names, Arrow types, nulls where the sets have nulls), imported and
then verified end to end by the real verifiers and the real sandbox.

OpenR1-Math-220k carries its own math-verify verdicts (`correctness_math_verify`): distill's verdicts must
agree with them row by row, including answers boxed part by part and a hedge."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.benchmarks import benchmark_problems
from distill.importers import import_problems, import_traces
from distill.records import CodeTests, Problem, StdioCase, Trace
from distill.verify import verify, verify_inline

FIXTURES = Path(__file__).parent / "fixtures" / "parity"


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def parquet(name: str, tmp_path: Path) -> Path:
    import datasets

    target = tmp_path / name.replace(".jsonl", ".parquet")
    datasets.Dataset.from_list(rows(name)).to_parquet(str(target))
    return target


def imported(name: str, tmp_path: Path) -> tuple[str, dict[str, Problem], list[Trace]]:
    result = import_traces(parquet(name, tmp_path), tmp_path / "out")
    problems = [Problem.model_validate(json.loads(x)) for x in result.problems_path.read_text().splitlines()]
    traces = [Trace.model_validate(json.loads(x)) for x in result.traces_path.read_text().splitlines()]
    return result.format, {p.id: p for p in problems}, traces


def test_openr1_math_verdicts_agree_with_the_sets_own(tmp_path):
    fmt, problems, traces = imported("openr1_math_220k.jsonl", tmp_path)
    assert fmt == "openr1" and len(problems) == 3 and len(traces) == 6
    ours = [verify(problems[t.problem_id], t.answer).passed for t in traces]
    theirs = [t.meta["correctness_math_verify"] for t in traces]
    assert ours == theirs == [True, False, True, False, True, False]
    # the multi-box answers are read whole, the hedge is not
    assert [verify(problems[t.problem_id], t.answer).extracted for t in traces[:4]] == \
        ["(2, 2), (6, 2)", "(2, 2)", "-2, 1", "1, 2"]
    assert traces[5].finish_reason == "length" and not traces[5].answer


@pytest.mark.parametrize(("name", "gold"), [
    ("openthoughts_114k.jsonl", {"hexagon": "720", "divisors": "9"}),
    ("openthoughts2.jsonl", {"7^2": "24"}),
    ("mixture_of_thoughts.jsonl", {"15\\%": "12"}),
])
def test_trace_sets_without_gold_answers_import_and_verify_against_the_known_ones(tmp_path, name, gold):
    fmt, problems, traces = imported(name, tmp_path)
    assert fmt == {"openthoughts2.jsonl": "openthoughts"}.get(name, fmt) and len(traces) == len(rows(name))
    for trace in traces:
        problem = problems[trace.problem_id]
        assert trace.reasoning and trace.answer and "<think>" not in trace.reasoning
        assert "begin_of" not in trace.reasoning + trace.answer and "</think>" not in trace.answer
        [answer] = [a for key, a in gold.items() if key in problem.problem]
        assert verify(problem.model_copy(update={"answer": answer}), trace.answer).passed


def test_openthoughts3_rows_by_domain(tmp_path):
    fmt, problems, traces = imported("openthoughts3.jsonl", tmp_path)
    assert fmt == "openthoughts" and len(traces) == 3
    by_domain = {problems[t.problem_id].domain: (problems[t.problem_id], t) for t in traces}
    assert set(by_domain) == {"math", "code", "text"}
    math_problem, math_trace = by_domain["math"]
    assert math_problem.meta["difficulty"] == 2 and math_trace.reasoning.startswith("Okay, 12 = 2^2")
    assert verify(math_problem.model_copy(update={"answer": "36"}), math_trace.answer).passed
    code_problem, code_trace = by_domain["code"]
    tests = CodeTests(stdio=[StdioCase(input="2 40\n", output="42\n")], origin="codeforces")
    assert verify_inline(code_problem.model_copy(update={"tests": tests}), code_trace.answer).passed
    assert by_domain["text"][1].answer.startswith("36 g")


@pytest.mark.parametrize(("name", "traces_expected"), [("s1k.jsonl", 1), ("s1k_1_1.jsonl", 2)])
def test_s1k_traces_verify_against_the_sets_solution(tmp_path, name, traces_expected):
    fmt, problems, traces = imported(name, tmp_path)
    assert fmt == "s1k" and len(traces) == traces_expected
    assert all(verify(problems[t.problem_id], t.answer).passed for t in traces)


def test_livecodebench_rows_with_compressed_private_tests(tmp_path):
    problems = benchmark_problems("livecodebench", parquet("livecodebench.jsonl", tmp_path))
    stdin, functional = problems["lcb-abc900_a"], problems["lcb-9001"]
    assert len(stdin.tests.stdio) == 3 and len(functional.tests.calls) == 3
    # LCB compares lines as decimals ("0.5" is "0.50") and runs solutions after its import block
    assert verify_inline(stdin, "```python\nprint(int(input()) / 2)\n```").passed
    assert not verify_inline(stdin, "```python\nprint(int(input()) // 2)\n```").passed
    right = "```python\nclass Solution:\n    def firstK(self, nums: List[int], k: int) -> List[int]:\n" \
            "        return tuple(deque(nums[:k]))\n```"
    assert verify_inline(functional, right).passed
    assert not verify_inline(functional, right.replace("nums[:k]", "nums[:k + 1]")).passed


@pytest.mark.parametrize("kind", ["apps", "taco", "codeforces"])
def test_code_sets_import_and_their_own_solutions_pass(tmp_path, kind):
    out = tmp_path / "problems.jsonl"
    assert import_problems(kind, parquet(f"{kind}.jsonl", tmp_path), out) == len(rows(f"{kind}.jsonl"))
    problems = [Problem.model_validate(json.loads(x)) for x in out.read_text().splitlines()]
    for row, problem in zip(rows(f"{kind}.jsonl"), problems):
        solutions = json.loads(row["solutions"]) if "solutions" in row else \
            ["a, b = map(int, input().split())\nprint(max(a, b))\n"]
        verdict = verify_inline(problem, f"```python\n{solutions[0]}```")
        if row.get("generated_checker"):
            assert problem.tests is None and "custom checker" in problem.meta["unverifiable"]
            assert not verdict.passed and "no tests" in verdict.detail
            continue
        assert verdict.passed, verdict.detail
        assert not verify_inline(problem, "```python\nprint(0)\n```").passed


@pytest.mark.parametrize("command", [["import", "livecodebench", "-o", "{tmp}/lcb.jsonl"],
                                     ["eval", "--models", "base=bundled:tiny", "--bench", "livecodebench",
                                      "--out-dir", "{tmp}/eval"]])
def test_livecodebench_without_its_data_says_what_to_download(tmp_path, monkeypatch, command):
    from typer.testing import CliRunner

    from distill.cli import app

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DISTILL_SHARED_DATA", str(tmp_path / "no-shared-data"))
    result = CliRunner().invoke(app, [part.format(tmp=tmp_path) for part in command])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "no copy of LiveCodeBench release_v5 was found" in text
    assert "git clone https://huggingface.co/datasets/livecodebench/code_generation_lite" in text
    assert "load_dataset('lighteval/code_generation_lite', 'release_v5', split='test')" in text


def test_livecodebench_from_a_clone_of_its_repository(tmp_path, monkeypatch):
    """The documented local copy: a clone holds the release's files (release_v5: test.jsonl ... test5.jsonl)."""
    clone = tmp_path / "shared" / "livecodebench" / "code_generation_lite"
    clone.mkdir(parents=True)
    first, second = rows("livecodebench.jsonl")
    (clone / "test.jsonl").write_text(json.dumps(first) + "\n")
    (clone / "test2.jsonl").write_text(json.dumps(second) + "\n")
    (clone / "test6.jsonl").write_text(json.dumps({**second, "question_id": "newer"}) + "\n")  # release_v6 only
    monkeypatch.setenv("DISTILL_SHARED_DATA", str(tmp_path / "shared"))
    assert list(benchmark_problems("livecodebench")) == ["lcb-abc900_a", "lcb-9001"]
