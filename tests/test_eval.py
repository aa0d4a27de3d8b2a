"""`evaluate` on real models: same seed, same scores; resume and stale samples; clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SUITE_VLLM

from distill.config import EvalConfig
from distill.errors import DistillError
from distill.eval import evaluate
from distill.eval.models import parse_models

ROOT = Path(__file__).resolve().parents[1]


def bench_file(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "heldout.jsonl"
    path.write_text("\n".join((ROOT / "data/demo/eval.jsonl").read_text().splitlines()[:count]) + "\n")
    return path


def completions(path: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {f"{r['problem_id']}#{r['sample']}": r["completion"] for r in rows}


@pytest.mark.vllm
def test_fixed_seed_gives_the_same_scores_twice(vllm_engine, smollm2, tmp_path):
    from distill.generation import engine

    bench = bench_file(tmp_path, 5)

    def config(out: str, seed: int) -> EvalConfig:
        # The conftest engine's settings, so all three runs reuse the one engine of the session.
        return EvalConfig(models=["smollm2=bundled:smollm2-135m-instruct"], k=4, backend="vllm",
                          benchmarks=[{"name": "heldout", "path": bench}], output_dir=tmp_path / out,
                          sampling={"max_tokens": 64, "seed": seed},
                          vllm=SUITE_VLLM)

    first = evaluate(config("a", 0), progress=False)
    second = evaluate(config("b", 0), progress=False)
    assert engine._engine is vllm_engine  # no second engine was started
    assert first.scores["scores"] == second.scores["scores"]
    assert first.results["smollm2"]["heldout"].read_text() == second.results["smollm2"]["heldout"].read_text()
    texts = completions(tmp_path / "a" / "smollm2" / "heldout.traces.jsonl")
    assert texts == completions(tmp_path / "b" / "smollm2" / "heldout.traces.jsonl")
    assert len(texts) == 5 * 4 and len(set(texts.values())) > 10  # k distinct samples, not one repeated

    scores = first.scores["scores"]["smollm2"]["heldout"]
    assert scores["problems"] == 5 and scores["samples"] == 20
    assert scores["pass@1"]["value"] <= scores["pass@2"]["value"] <= scores["pass@4"]["value"]
    rows = [json.loads(line) for line in first.results["smollm2"]["heldout"].read_text().splitlines()]
    assert scores["pass@1"]["value"] == pytest.approx(sum(r["correct"] / r["n"] for r in rows) / len(rows))

    other = evaluate(config("c", 1), progress=False)
    assert completions(tmp_path / "c" / "smollm2" / "heldout.traces.jsonl") != texts  # the seed matters
    assert other.scores["k"] == 4


def test_changed_settings_retire_old_samples_instead_of_mixing_them(tiny_model, tmp_path):
    bench = bench_file(tmp_path, 2)
    base = {"models": ["tiny=bundled:tiny"], "backend": "hf", "benchmarks": [{"name": "heldout", "path": bench}],
            "output_dir": tmp_path / "out", "sampling": {"max_tokens": 8, "seed": 0}, "hf": {"batch_size": 1}}
    one = evaluate(EvalConfig(k=1, **base), progress=False)
    assert one.scores["scores"]["tiny"]["heldout"]["samples"] == 2
    again = evaluate(EvalConfig(k=1, **base), progress=False)  # everything resumes: nothing generated
    assert again.scores["scores"] == one.scores["scores"]
    two = evaluate(EvalConfig(k=2, **base), progress=False)
    assert two.scores["scores"]["tiny"]["heldout"]["samples"] == 4
    stale = list((tmp_path / "out" / "tiny" / "stale").glob("*/heldout.traces.jsonl"))
    assert len(stale) == 1 and len(stale[0].read_text().splitlines()) == 2


def test_model_labels_and_aliases():
    refs = parse_models(["base", "student"], {"base": "bundled:tiny", "student": "runs/x/student/merged"})
    assert [(r.label, r.spec) for r in refs] == [("base", "bundled:tiny"), ("student", "runs/x/student/merged")]
    refs = parse_models(["bundled:tiny", "mine=runs/y/merged"])
    assert [(r.label, r.spec) for r in refs] == [("bundled-tiny", "bundled:tiny"), ("mine", "runs/y/merged")]
    with pytest.raises(DistillError, match="alias that only `distill run`"):
        parse_models(["base"])
    with pytest.raises(DistillError, match="share the label"):
        parse_models(["a=bundled:tiny", "a=bundled:smollm2-135m-instruct"])


def test_missing_benchmark_file_is_named(tmp_path):
    config = EvalConfig(models=["bundled:tiny"], benchmarks=[{"name": "gsm8k", "path": tmp_path / "nope.jsonl"}],
                        output_dir=tmp_path / "out", backend="hf")
    with pytest.raises(DistillError, match=r"benchmark 'gsm8k': .*nope.jsonl: no such file"):
        evaluate(config, progress=False)
