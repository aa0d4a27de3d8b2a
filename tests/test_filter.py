"""filter_traces end to end on hand-written R1 traces: verification, hostile code, dataset steps, outputs, resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import data_shapes
import pytest
from data_shapes import humaneval_problem

from distill.config import FilterConfig
from distill.filter import filter_traces
from distill.jsonl import count_lines, read_jsonl
from distill.records import Problem, Trace

MATH_PROMPT = "{}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def r1(problem: Problem, sample: int, reasoning: str, answer: str, finish_reason: str = "stop") -> dict:
    """A trace as `distill generate` writes it (assistant turn prefilled with '<think>\\n')."""
    completion = f"{reasoning}\n</think>\n\n{answer}" if finish_reason != "length" else reasoning
    return Trace(problem_id=problem.id, sample=sample, teacher="deepseek-r1",
                 prompt=[{"role": "user", "content": MATH_PROMPT.format(problem.problem)}], completion=completion,
                 reasoning=reasoning, answer=answer if finish_reason != "length" else "",
                 finish_reason=finish_reason, prompt_tokens=40, completion_tokens=len(completion) // 4).to_json()


def thinking(topic: str, steps: int = 12) -> str:
    """Plausible, non-repeating reasoning of a few hundred words."""
    lines = [f"Okay, let me work on {topic}. First I restate what is asked and list what I know."]
    for i in range(steps):
        lines.append(f"Step {i + 1}: I look at part {i + 1} of {topic}, compute the intermediate value "
                     f"{(i * 37) % 101}, and check it against the constraint number {i + 2}.")
    lines.append("Let me verify the result once more before writing the final answer.")
    return "\n\n".join(lines)


@pytest.fixture(scope="module")
def humaneval_rows() -> list[dict]:
    return data_shapes.humaneval_rows(2)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def keys(path: Path) -> list[str]:
    return [f"{r['problem_id']}#{r['sample']}" for r in read_jsonl(path)]


# ------------------------------------------------------------------------------------- the big run
@pytest.fixture(scope="module")
def big_run(tmp_path_factory, humaneval_rows):
    root = tmp_path_factory.mktemp("filter")
    outside = root / "outside"
    outside.mkdir()
    outside.chmod(0o777)
    frac = Problem(id="frac", problem="What is $14 \\div 3$ as an improper fraction?", answer="\\frac{14}{3}")
    polar = Problem(id="polar", problem="Convert the point $(0,3)$ in rectangular coordinates to polar coordinates. "
                    "Enter your answer in the form $(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$",
                    answer="\\left( 3, \\frac{\\pi}{2} \\right)")
    interval = Problem(id="interval", problem="Solve $x - 2 \\le 0$ and give the interval.", answer="(-\\infty, 2]")
    tower = Problem(id="tower", problem="Compute $2^{2^2} - 15$.", answer="1")
    add = humaneval_problem(humaneval_rows[0])
    parens = humaneval_problem(humaneval_rows[1])
    mcq = Problem(id="mcq", problem="Which number is prime?", domain="mcq", answer="C", choices=["4", "6", "7", "9"])
    poem = Problem(id="poem", problem="Write a haiku about rain.", domain="text")
    problems = [frac, polar, interval, tower, add, parens, mcq, poem]

    good = thinking("dividing 14 by 3")
    solution = humaneval_rows[0]["prompt"] + humaneval_rows[0]["canonical_solution"]
    entry = humaneval_rows[0]["entry_point"]

    def hostile(body: str) -> str:
        return f"```python\ndef {entry}(numbers, threshold):\n    return False\n\n{textwrap.dedent(body)}\n```"

    traces = [
        r1(frac, 0, good, "So the answer is $\\boxed{\\dfrac{14}{3}}$."),                         # kept
        r1(frac, 1, thinking("dividing 14 by 3, carefully"), "\\boxed{4.5}"),                     # wrong
        r1(frac, 2, good + " 我们需要仔细验证这个除法的结果，十四除以三等于三分之十四。" * 3, "\\boxed{14/3}"),  # lang mix
        r1(frac, 3, good, "", finish_reason="length"),                                            # truncated
        r1(frac, 4, good, "So the answer is $\\boxed{\\dfrac{14}{3}}$."),                         # exact dup of 0
        r1(frac, 5, good.replace("Step 12:", "Stage 12:"), "So the answer is $\\boxed{\\dfrac{14}{3}}$."),  # near dup
        r1(frac, 6, good + "\n\n" + "Wait, I should recompute fourteen over three to be sure. " * 40,
           "\\boxed{\\frac{14}{3}}"),                                                              # repetition loop
        r1(polar, 0, thinking("converting (0,3) to polar form"), "\\boxed{\\left(3, \\frac{\\pi}{2}\\right)}"),  # contaminated
        r1(interval, 0, thinking("solving the inequality"), "\\boxed{(-\\infty, 2]}"),           # kept
        r1(interval, 1, thinking("solving the inequality again"), "\\boxed{(-\\infty, 2)}"),     # wrong
        r1(tower, 0, thinking("a tower of powers"), "\\boxed{2^{2^{2^{2^{2^{2^{2^{2}}}}}}}}"),    # pathological
        r1(tower, 1, thinking("a long expression"),
           "\\boxed{" + "+".join(f"\\frac{{{i}}}{{{i + 1}}}" for i in range(8000)) + "}"),      # 100k characters
        r1(add, 0, thinking("comparing all pairs"), f"```python\n{solution}```"),                # kept
        r1(add, 1, thinking("a shortcut"), hostile("")),                                         # wrong answer
        r1(add, 2, thinking("an infinite loop"), hostile("while True:\n    pass")),
        r1(add, 3, thinking("a fork bomb"), hostile("import os\nwhile True:\n    try:\n        os.fork()\n"
                                                    "    except OSError:\n        pass")),
        r1(add, 4, thinking("a huge allocation"), hostile("block = bytearray(10 * 1024 ** 3)")),
        r1(add, 5, thinking("writing outside"), hostile(f"open({str(outside / 'pwned.txt')!r}, 'w').write('x')")),
        r1(add, 6, thinking("phoning home"), hostile("import socket\nsocket.create_connection(('1.1.1.1', 80), 3)")),
        r1(add, 7, thinking("killing the group"), hostile("import os, signal\nos.killpg(0, signal.SIGKILL)")),
        r1(add, 8, thinking("leaving early"), hostile("import os\nos._exit(0)")),
        r1(parens, 0, thinking("splitting groups"),
           f"```python\n{humaneval_rows[1]['prompt']}{humaneval_rows[1]['canonical_solution']}```"),  # kept
        r1(mcq, 0, thinking("checking divisors"), "The answer is (C)."),                          # kept
        r1(mcq, 1, thinking("checking divisors badly"), "\\boxed{A}"),                            # wrong
        r1(poem, 0, "A haiku has three lines of five, seven and five syllables.",
           "Soft rain on the roof\nthe garden drinks in silence\nclouds fold into dusk"),         # kept
        r1(poem, 1, "Let me write it.\n\n```python\nprint('rain')\n```", "Rain falls."),          # code in reasoning
    ]
    bench = write_jsonl(root / "bench.jsonl", [{"unique_id": "test/precalculus/807.json", "problem": polar.problem}])
    config = FilterConfig(input=write_jsonl(root / "traces.jsonl", traces),
                          problems=write_jsonl(root / "problems.jsonl", [p.to_json() for p in problems]),
                          output_dir=root / "out", math_timeout_s=1.0,
                          sandbox={"timeout_s": 3, "max_processes": 32},
                          decontaminate={"against": [bench]}, workers=2)
    start = time.monotonic()
    result = filter_traces(config, progress=False)
    return result, root, outside, time.monotonic() - start


EXPECTED_KEPT = ["frac#0", "interval#0", "HumanEval/0#0", "HumanEval/1#0", "mcq#0", "poem#0"]
EXPECTED_FIRST_REASON = {
    "frac#1": ("math_verify", "not equivalent"), "frac#2": ("lang_mix", "CJK"), "frac#3": ("think_format", "no answer"),
    "frac#4": ("dedup_exact", "same text as frac#0"), "frac#5": ("dedup_near", "with frac#0"),
    "frac#6": ("repetition", "repetition loop"), "polar#0": ("decontaminate", "test/precalculus/807.json"),
    "interval#1": ("math_verify", "not equivalent"), "tower#0": ("math_verify", ""),
    "tower#1": ("math_verify", "characters long"), "HumanEval/0#1": ("code_tests", "returned"),
    "HumanEval/0#2": ("code_tests", "timed out"), "HumanEval/0#3": ("code_tests", ""),
    "HumanEval/0#4": ("code_tests", "MemoryError"), "HumanEval/0#5": ("code_tests", "Permission"),
    "HumanEval/0#6": ("code_tests", ""), "HumanEval/0#7": ("code_tests", "SIGKILL"),
    "HumanEval/0#8": ("code_tests", "gave no result"), "mcq#1": ("mcq_letter", "chose A, gold is C"),
    "poem#1": ("code_in_reasoning", "code block"),
}


def test_kept_traces_are_exactly_the_verified_clean_ones_in_input_order(big_run):
    result, *_ = big_run
    assert keys(result.output_dir / "kept.jsonl") == EXPECTED_KEPT
    assert result.kept == len(EXPECTED_KEPT) and result.rejected == len(EXPECTED_FIRST_REASON)
    kept = list(read_jsonl(result.output_dir / "kept.jsonl"))
    assert all(v["kept"] and v["reasons"] == [] for v in kept)
    assert kept[0]["scores"]["math_verify"] is True and kept[0]["reasoning"] and kept[0]["answer"]


def test_every_reject_carries_its_failing_checks_with_details(big_run):
    result, *_ = big_run
    rejected = {f"{v['problem_id']}#{v['sample']}": v for v in read_jsonl(result.output_dir / "rejected.jsonl")}
    assert set(rejected) == set(EXPECTED_FIRST_REASON)
    for key, (check, needle) in EXPECTED_FIRST_REASON.items():
        checks = [r["check"] for r in rejected[key]["reasons"]]
        assert check in checks, (key, rejected[key]["reasons"])
        detail = next(r["detail"] for r in rejected[key]["reasons"] if r["check"] == check)
        assert needle in detail, (key, detail)
        assert not rejected[key]["kept"]
    # The truncated trace fails several checks and all of them are listed.
    assert {"think_format", "truncated", "math_verify"} <= {r["check"] for r in rejected["frac#3"]["reasons"]}


def test_hostile_code_was_contained(big_run):
    _, _, outside, elapsed = big_run
    assert list(outside.iterdir()) == []
    assert elapsed < 120  # nothing hung the run


def test_stats_funnel_and_per_domain_counts(big_run):
    result, *_ = big_run
    stats = json.loads((result.output_dir / "stats.json").read_text())
    assert stats == result.stats
    assert stats["total"] == 26 and stats["kept"] == 6 and stats["rejected"] == 20
    assert stats["failed"]["code_tests"] == 8
    assert stats["steps"] == {"dedup_exact": 1, "dedup_near": 1, "decontaminate": 1}
    funnel = stats["funnel"]
    assert funnel[0] == {"stage": "input", "remaining": 26}
    assert funnel[-1]["remaining"] == 6
    assert sum(row.get("removed", 0) for row in funnel) == 20
    assert stats["per_domain"]["code"]["total"] == 10 and stats["per_domain"]["code"]["kept"] == 2
    assert stats["per_domain"]["math"]["failed"]["math_verify"] == 5  # incl. the truncated one
    assert stats["per_domain"]["text"]["failed"] == {"code_in_reasoning": 1}


def test_decontamination_report_names_the_match(big_run):
    result, root, _, _ = big_run
    report = json.loads((result.output_dir / "decontamination.json").read_text())
    assert report["traces_removed"] == 1 and report["problems_matched"] == 1
    match = report["matches"][0]
    assert match["problem_id"] == "polar" and match["benchmark_id"] == "test/precalculus/807.json"
    assert match["benchmark"] == str(root / "bench.jsonl") and len(match["ngram"].split()) == 8


def test_rerun_is_a_no_op_with_identical_outputs(big_run):
    result, root, _, _ = big_run
    before = {name: (result.output_dir / name).read_text() for name in ("kept.jsonl", "rejected.jsonl")}
    config = FilterConfig(input=root / "traces.jsonl", problems=root / "problems.jsonl", output_dir=result.output_dir,
                          math_timeout_s=1.0, sandbox={"timeout_s": 3, "max_processes": 32},
                          decontaminate={"against": [root / "bench.jsonl"]}, workers=2)
    again = filter_traces(config, progress=False)
    assert again.stats["resumed"] == 26
    assert {name: (result.output_dir / name).read_text() for name in before} == before


# ----------------------------------------------------------------------------------- select, errors
def text_traces(n_problems: int, samples: int) -> tuple[list[dict], list[dict]]:
    problems = [Problem(id=f"t{i}", problem=f"Describe topic {i}.", domain="text") for i in range(n_problems)]
    traces = [r1(p, s, thinking(f"topic {p.id} in variant {s}", steps=3 + s), f"Summary {s} of {p.id}.")
              for p in problems for s in range(samples)]
    return [p.to_json() for p in problems], traces


@pytest.mark.parametrize(("policy", "expected"), [("shortest", [0, 1]), ("all", [0, 1]), ("diverse", None),
                                                  ("random", None)])
def test_select_policy_keeps_k_per_problem(tmp_path: Path, policy: str, expected: list[int] | None):
    problems, traces = text_traces(3, 4)
    config = FilterConfig(input=write_jsonl(tmp_path / "t.jsonl", traces),
                          problems=write_jsonl(tmp_path / "p.jsonl", problems), output_dir=tmp_path / "out",
                          select={"policy": policy, "k": 2, "seed": 3}, workers=2)
    result = filter_traces(config, progress=False)
    kept = list(read_jsonl(tmp_path / "out" / "kept.jsonl"))
    assert result.kept == 6 and result.stats["steps"] == {"select": 6}
    for pid in ("t0", "t1", "t2"):
        samples = [v["sample"] for v in kept if v["problem_id"] == pid]
        assert len(samples) == 2
        if expected is not None:
            assert samples == expected
    rejected = list(read_jsonl(tmp_path / "out" / "rejected.jsonl"))
    assert all(v["reasons"][-1]["check"] == "select" and policy in v["reasons"][-1]["detail"] for v in rejected)


def test_bad_inputs_fail_with_file_and_line(tmp_path: Path):
    from distill.errors import DistillError

    traces = tmp_path / "t.jsonl"
    traces.write_text('{"problem_id": "a", "sample": 0, "teacher": "x", "prompt": [], "completion": ""}\n'
                      '{"problem_id": "a", "sample": "zero"}\n')
    with pytest.raises(DistillError, match=r"t.jsonl:2: field 'sample'"):
        filter_traces(FilterConfig(input=traces, output_dir=tmp_path / "o", verify=False), progress=False)
    with pytest.raises(DistillError, match="filter.problems is not set"):
        filter_traces(FilterConfig(input=traces, output_dir=tmp_path / "o"), progress=False)
    with pytest.raises(DistillError, match="no such file"):
        filter_traces(FilterConfig(input=tmp_path / "missing.jsonl", output_dir=tmp_path / "o"), progress=False)


# -------------------------------------------------------------------------------------------- resume
SLOW_CHECK = '''
import time
from distill.filter import check

@check("slow_ok", timeout_s=30)
def slow_ok(trace, problem):
    time.sleep(0.15)
    return True
'''

RUNNER = '''
import sys
from distill.config import FilterConfig
from distill.filter import filter_traces

if __name__ == "__main__":
    config = FilterConfig(input=sys.argv[1], problems=sys.argv[2], output_dir=sys.argv[3],
                          checks=["slowcheck:slow_ok"], workers=2)
    result = filter_traces(config, progress=False)
    print("done", result.kept, result.rejected)
'''


def test_a_killed_run_resumes_without_duplicates_or_losses(tmp_path: Path):
    problems, traces = text_traces(20, 3)  # 60 traces, ~0.15 s each on 2 workers
    (tmp_path / "slowcheck.py").write_text(SLOW_CHECK)
    (tmp_path / "runner.py").write_text(RUNNER)
    args = [str(write_jsonl(tmp_path / "t.jsonl", traces)), str(write_jsonl(tmp_path / "p.jsonl", problems)),
            str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = subprocess.Popen([sys.executable, str(tmp_path / "runner.py"), *args], cwd=tmp_path, env=env,
                           start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    checked = tmp_path / "out" / "checked.jsonl"
    deadline = time.monotonic() + 120
    while count_lines(checked) < 16 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # the whole run: parent, forkserver and workers
    run.wait()
    partial = count_lines(checked)
    assert 16 <= partial < 60, "the kill should land mid-run"
    assert not (tmp_path / "out" / "kept.jsonl").exists()

    done = subprocess.run([sys.executable, str(tmp_path / "runner.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done 60 0" in done.stdout
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["resumed"] == partial and stats["total"] == 60
    expected = [f"{t['problem_id']}#{t['sample']}" for t in traces]
    assert keys(checked) == expected  # every trace once, in input order
    assert keys(tmp_path / "out" / "kept.jsonl") == expected


def test_funnel_table_for_the_cli(big_run):
    from rich.console import Console

    from distill.filter import funnel_table

    result, *_ = big_run
    console = Console(record=True, width=200)
    console.print(funnel_table(result))
    text = console.export_text()
    assert "kept 6 of 26" in text
    for stage in ("think_format", "math_verify", "code_tests", "decontaminate", "dedup_exact"):
        assert stage in text
    assert "code removed" in text and "math removed" in text
