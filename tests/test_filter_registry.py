"""Custom filters: registered checks and steps, module:function, entry-point plugins, and a check that hangs."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from distill.config import FilterConfig
from distill.errors import DistillError
from distill.filter import CheckResult, check, dataset_step, filter_traces, get_check, get_step
from distill.jsonl import read_jsonl
from distill.records import Problem, Trace, Verdict


@check("no_apology")
def no_apology(trace: Trace, problem: Problem | None) -> CheckResult:
    sorry = "I apologize" in trace.answer
    return CheckResult(passed=not sorry, reason="the answer apologizes" if sorry else "", score=sorry)


@check("mentions_topic")
def mentions_topic(trace: Trace, problem: Problem | None):
    return ("topic" in trace.reasoning, "reasoning never names the topic")  # a tuple works too


def short_answer(trace: Trace, problem: Problem | None) -> bool:  # used as module:function, unregistered
    return len(trace.answer) < 200


@check("hangs", timeout_s=1.0)
def hangs(trace: Trace, problem: Problem | None) -> bool:
    if trace.sample == 1:
        time.sleep(600)
    return True


@check("returns_garbage")
def returns_garbage(trace: Trace, problem: Problem | None):
    return "yes"


@dataset_step("one_per_problem")
def one_per_problem(verdicts: list[Verdict]) -> list[Verdict]:
    seen: set[str] = set()
    kept = []
    for verdict in verdicts:
        if verdict.problem_id not in seen:
            seen.add(verdict.problem_id)
            kept.append(verdict.model_copy(update={"scores": {**verdict.scores, "first": True}}))
    return kept


def veto_sample_zero(verdicts: list[Verdict]):  # an iterator that rejects with its own reason
    for verdict in verdicts:
        if verdict.sample == 0:
            yield verdict.model_copy(update={"kept": False, "reasons": [{"check": "veto", "detail": "sample 0 vetoed"}]})
        else:
            yield verdict


def traces_and_problems(tmp_path: Path, answers: list[str]) -> tuple[Path, Path]:
    problems = [Problem(id=f"p{i}", problem=f"Explain topic {i}.", domain="text") for i in range(2)]
    rows = []
    for p in problems:
        for sample, answer in enumerate(answers):
            reasoning = f"Let me explain topic {p.id} clearly, variant {sample}, with care and detail."
            rows.append(Trace(problem_id=p.id, sample=sample, teacher="t", prompt=[{"role": "user", "content": p.problem}],
                              completion=f"{reasoning}\n</think>\n\n{answer}", reasoning=reasoning, answer=answer,
                              finish_reason="stop", completion_tokens=30).to_json())
    traces, problem_file = tmp_path / "traces.jsonl", tmp_path / "problems.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problem_file.write_text("".join(json.dumps(p.to_json()) + "\n" for p in problems))
    return traces, problem_file


def run(tmp_path: Path, answers: list[str], **fields) -> tuple[dict[str, dict], dict]:
    traces, problems = traces_and_problems(tmp_path, answers)
    result = filter_traces(FilterConfig(input=traces, problems=problems, output_dir=tmp_path / "out", workers=2,
                                        **fields), progress=False)
    verdicts = {f"{v['problem_id']}#{v['sample']}": v for name in ("kept.jsonl", "rejected.jsonl")
                for v in read_jsonl(tmp_path / "out" / name)}
    return verdicts, result.stats


def test_registered_and_module_function_checks(tmp_path: Path):
    answers = ["A clear explanation.", "I apologize, but " + " ".join(f"point{i}" for i in range(40)), "Short and fine."]
    verdicts, stats = run(tmp_path, answers,
                          checks=["no_apology", "mentions_topic", "test_filter_registry:short_answer"])
    assert [k for k, v in verdicts.items() if v["kept"]] == ["p0#0", "p0#2", "p1#0", "p1#2"]
    reasons = {r["check"]: r["detail"] for r in verdicts["p0#1"]["reasons"]}
    assert reasons == {"no_apology": "the answer apologizes",
                       "test_filter_registry:short_answer": "test_filter_registry:short_answer failed"}
    assert verdicts["p0#0"]["scores"]["no_apology"] is False
    assert stats["failed"] == {"no_apology": 2, "test_filter_registry:short_answer": 2}


def test_a_hanging_check_is_killed_and_the_trace_keeps_its_other_results(tmp_path: Path):
    start = time.monotonic()
    verdicts, stats = run(tmp_path, ["fine", "I apologize", "fine too"], checks=["hangs", "no_apology"])
    assert time.monotonic() - start < 60
    for key in ("p0#1", "p1#1"):
        reasons = {r["check"]: r["detail"] for r in verdicts[key]["reasons"]}
        assert "overran its time budget" in reasons["hangs"]
        assert reasons["no_apology"] == "the answer apologizes"  # the retry still ran the other checks
    assert verdicts["p0#0"]["kept"] and verdicts["p1#2"]["kept"]
    assert stats["worker_restarts"] == 2


def test_a_check_returning_garbage_rejects_with_a_clear_reason(tmp_path: Path):
    verdicts, _ = run(tmp_path, ["fine"], checks=["returns_garbage"])
    detail = verdicts["p0#0"]["reasons"][0]["detail"]
    assert "returned str 'yes'" in detail and "expected CheckResult" in detail


def test_dataset_steps_by_name_and_module_function(tmp_path: Path):
    verdicts, stats = run(tmp_path, ["one", "two", "three"],
                          steps=["test_filter_registry:veto_sample_zero", "one_per_problem"])
    assert [k for k, v in verdicts.items() if v["kept"]] == ["p0#1", "p1#1"]
    assert verdicts["p0#1"]["scores"]["first"] is True  # a step's changes to a record are written out
    assert verdicts["p0#0"]["reasons"] == [{"check": "test_filter_registry:veto_sample_zero",
                                            "detail": "sample 0 vetoed"}]
    assert verdicts["p0#2"]["reasons"][0]["check"] == "one_per_problem"
    assert stats["steps"] == {"test_filter_registry:veto_sample_zero": 2, "one_per_problem": 2}


PLUGIN = '''
from distill.filter import CheckResult, check


@check("no_todo")
def no_todo(trace, problem):
    return CheckResult("TODO" not in trace.answer, "answer leaves a TODO", None)


def polite(trace, problem):
    return "please" in trace.answer.lower() or (False, "not polite")
'''


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real installed distribution (dist-info with entry_points.txt) on sys.path."""
    site = tmp_path / "site"
    (site / "distill_demo_plugin").mkdir(parents=True)
    (site / "distill_demo_plugin" / "__init__.py").write_text(PLUGIN)
    info = site / "distill_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: distill-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[distill.checks]\nno_todo = distill_demo_plugin\n"
                                           "polite = distill_demo_plugin:polite\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_checks_from_an_installed_plugin_via_entry_points(installed_plugin: Path, tmp_path: Path):
    # 'no_todo' points at the module (importing it registers the check); 'polite' at a plain function.
    verdicts, _ = run(tmp_path, ["Please see the proof.", "TODO: finish", "Done, please."], checks=["no_todo", "polite"])
    assert [k for k, v in verdicts.items() if v["kept"]] == ["p0#0", "p0#2", "p1#0", "p1#2"]
    assert {r["check"]: r["detail"] for r in verdicts["p0#1"]["reasons"]} == {
        "no_todo": "answer leaves a TODO", "polite": "not polite"}


def test_unknown_names_and_bad_registrations_are_clear_errors():
    with pytest.raises(DistillError, match=r"unknown check 'nope'.*no_apology"):
        get_check("nope")
    with pytest.raises(DistillError, match=r"cannot import module 'no_such_module'"):
        get_check("no_such_module:fn")
    with pytest.raises(DistillError, match=r"has no attribute 'missing'"):
        get_step("test_filter_registry:missing")
    with pytest.raises(DistillError, match=r"already registered"):
        check("no_apology")(short_answer)
    assert get_step("one_per_problem") is one_per_problem
