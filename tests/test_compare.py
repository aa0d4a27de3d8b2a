"""`distill demo --kd`: every arm from one student on real tiny models, at the token budget, scored and
compared pairwise; a rerun redoes nothing. The shipped comparison's config validates as every stage's own."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_kd import perturbed_copy

from distill.compare import compare_config, main_kd, verdict
from distill.config import ConfigError
from distill.errors import DistillError

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "distill" / "data" / "demo"


def test_the_shipped_comparison_is_every_stage_config_and_quick_cuts_it():
    full, quick = compare_config(), compare_config(quick=True)
    assert full.student == "bundled:smollm2-135m-instruct" and full.teacher is None
    # The on-policy arms sample the same shape: same prompts, samples and length per step.
    assert (full.kd.prompts_per_step, full.kd.samples_per_prompt, full.kd.max_completion_length) == \
        (full.rl.prompts_per_step, full.rl.num_generations, full.rl.max_completion_length)
    assert full.kd.lora == full.rl.lora == full.sft.lora and full.sft.method == full.kd.method == full.rl.method
    assert full.problems.exists() and all(b.path.exists() for b in full.eval.benchmarks)
    assert quick.steps < full.steps and full.mix_weight is None  # the mix arm is opt-in: mix_weight=1.0
    with pytest.raises(ConfigError, match="kd.samples_per_prompt"):
        compare_config(overrides=["kd.samples_per_prompt=0"])


def test_verdict_names_the_best_arm_and_which_arms_it_clearly_beats():
    pass1 = {"sft": {"value": 0.5}, "opd": {"value": 0.4}, "grpo": {"value": 0.2}}
    pairs = {"opd - sft": {"value": -0.1, "ci_low": -0.3, "ci_high": 0.1},
             "grpo - sft": {"value": -0.3, "ci_low": -0.4, "ci_high": -0.2},
             "grpo - opd": {"value": -0.2, "ci_low": -0.3, "ci_high": -0.1}}
    result = {"arms": dict.fromkeys(pass1), "pass@1": pass1, "pairs": pairs}
    assert verdict(result) == {"best": "sft", "clearly_better_than": ["grpo"], "not_separated_from": ["opd"]}


@pytest.mark.slow  # every arm end to end: out of the inner loop (make test-fast)
def test_every_arm_trains_from_the_same_student_at_the_token_budget_and_reruns_redo_nothing(
        tmp_path, tiny_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    problems = tmp_path / "train.jsonl"
    problems.write_text("".join((DEMO / "train.jsonl").read_text().splitlines(keepends=True)[:6]))
    student = perturbed_copy(tiny_model, tmp_path / "student", noise=0.05)
    lengths = {"max_completion_length": 8, "prompts_per_step": 2}
    overrides = [f"student={student}", f"teacher={tiny_model}", f"problems={problems}", "steps=2", "mix_weight=0.5",
                 "generate.backend=hf", "generate.sampling={n: 2, max_tokens: 12, seed: 0}",
                 # A random teacher's traces never verify: the SFT arm keeps them unverified here.
                 "filter.verify=false", "filter.quality={require_think: false, drop_truncated: false}",
                 "filter.dedup={exact: false, near: false}",
                 "sft.max_length=128", "sft.per_device_batch_size=2", "sft.precision=fp32",
                 "kd.samples_per_prompt=2", "kd.precision=fp32", "kd.reward_workers=1",
                 *(f"kd.{k}={v}" for k, v in lengths.items()), *(f"rl.{k}={v}" for k, v in lengths.items()),
                 "rl.num_generations=2", "rl.rollout=transformers", "rl.precision=fp32", "rl.reward_workers=1",
                 "eval.backend=hf", "eval.k=1", "eval.sampling={max_tokens: 8, seed: 0}",
                 f"eval.benchmarks=[{{name: heldout, path: {DEMO / 'eval.jsonl'}, limit: 4}}]"]
    result = main_kd(run_dir=tmp_path / "run", progress=False, overrides=overrides)

    arms = result["arms"]
    assert list(arms) == ["sft", "grpo", "opd", "opd+reward"]
    assert list(result["pass@1"]) == ["base", "teacher", *arms]
    # The budget: the on-policy arms' mean student training tokens.
    on_policy = [arms[a]["tokens"] for a in ("grpo", "opd", "opd+reward")]
    assert all(t > 0 for t in on_policy) and result["target_tokens"] == round(sum(on_policy) / 3)
    # SFT's steps: the budget over an epoch's real tokens per step (packed as training packs them), so it
    # trains within one step's tokens of the budget.
    sft = arms["sft"]
    assert sft["steps"] == max(1, round(result["target_tokens"] / sft["tokens_per_step"]))
    assert abs(sft["tokens"] - result["target_tokens"]) <= sft["tokens_per_step"]
    # The teacher's FLOPs: it wrote SFT's traces and scored every OPD token; GRPO has no teacher.
    assert arms["grpo"]["flops"]["teacher"] == 0 < arms["opd"]["flops"]["teacher"]
    assert arms["sft"]["teacher_tokens"] > 0 and arms["opd"]["teacher_tokens"] == arms["opd"]["tokens"]
    for arm in arms.values():
        assert Path(arm["policy"]).is_dir() and arm["flops"]["total"] > 0
    # Every pair of models, each with its paired interval over the same held-out problems.
    assert len(result["pairs"]) == 6 * 5 // 2
    for d in result["pairs"].values():
        assert d["ci_low"] <= d["value"] <= d["ci_high"]
    assert result["verdict"]["best"] in arms
    run = tmp_path / "run"
    assert json.loads((run / "compare.json").read_text())["pairs"] == result["pairs"]
    assert (run / "compare.png").stat().st_size > 10_000

    # A rerun finds every arm and every score done: the same result, each arm's first wall time.
    again = main_kd(run_dir=run, progress=False, overrides=overrides)
    assert again["arms"] == arms and again["pairs"] == result["pairs"]

    # A mistyped student stops before any arm's folder is touched: every earlier output byte-identical.
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(DistillError, match="no such model folder"):
        main_kd(run_dir=run, progress=False, overrides=[*overrides, f"student={tmp_path / 'nope'}"])
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before

    # Changed settings of one arm: that arm starts over, its old folder kept aside whole; the others stay.
    changed = main_kd(run_dir=run, progress=False, overrides=[*overrides, "rl.learning_rate=0.001"])
    assert changed["arms"]["opd"] == arms["opd"] and changed["arms"]["grpo"] != arms["grpo"]
    assert [p.name.split("-", 2)[2] for p in (run / "stale").iterdir()] == [f"grpo-{arms['grpo']['config_hash'][:12]}"]
    assert (next((run / "stale").iterdir()) / "grpo" / "arm.json").exists()  # the old arm, whole
