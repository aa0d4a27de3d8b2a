"""GRPO step time and rollout tokens/s: `distill rl` against a plain TRL GRPOTrainer with its defaults, and
reward evaluations/s.

    .venv/bin/python bench/rl.py [--model bundled:smollm2-135m-instruct] [--steps 4] [--repeats 1]

Same model, prompts and rewards for both: the demo's arithmetic problems rendered as distill renders them
(chat template, R1's instruction, '<think>\\n' prefill), the accuracy + format rewards of distill.rl
(the same RewardScorer), 2 problems x 4 completions a step, at most 96 completion tokens (the issue's
anchor: ~28 s a step, ~55 rollout tokens/s for TRL's defaults here).

- TRL: `GRPOTrainer(model=PATH, reward_funcs=..., args=GRPOConfig(output_dir, use_cpu=True,
  per_device_train_batch_size=8, num_generations=4, max_completion_length=96, max_steps, report_to="none"))`;
  everything else TRL's default (full fine-tune in fp32, transformers generate on the peft-free model).
- distill: `distill.rl.train(RLConfig(...same batch..., method=lora, beta=0))` with its defaults otherwise:
  precision auto (bf16 here), rollout auto (on a CPU with vLLM: its own vLLM engine, the trained weights
  reloaded into it before each step's rollout; the median reload and generate seconds are reported).
- distill-transformers: the same with `rollout=transformers` (generation on a plain bf16 copy of the policy
  refreshed each step), the CPU fallback without vLLM: the numbers behind the automatic choice.

Each contender runs in a fresh subprocess; the first step (warm-up: imports, pool start) is left out; the
median of the other steps counts. Rollout tokens/s = completion tokens of a step / step time. Reward
evaluations/s: 512 completions scored by every reward on the pool. Writes bench/results/rl.{json,md}
with the load average next to every figure (the box is shared).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROBLEMS = ROOT / "distill" / "data" / "demo" / "train.jsonl"
RESULTS = Path(os.environ.get("DISTILL_BENCH_RESULTS") or ROOT / "bench" / "results")  # the suite's smoke runs write elsewhere


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def rl_config(model: str, out: Path, steps: int, rollout: str = "auto"):
    from distill.config import RewardConfig, RLConfig, VLLMConfig

    return RLConfig(model=model, problems=PROBLEMS, output_dir=out, method="lora", num_generations=4,
                    prompts_per_step=2, max_completion_length=96, max_steps=steps, beta=0.0, save_steps=1000,
                    rewards=[RewardConfig(name="accuracy"), RewardConfig(name="format")], rollout=rollout,
                    vllm=VLLMConfig(kv_cache_gib=1, max_model_len=512, enforce_eager=True))


class StepTimer:
    """Per-step seconds and completion tokens, from the trainer's own logs (TRL's completions/mean_length)."""

    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                timer.started = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                timer.seconds.append(time.perf_counter() - timer.started)

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "completions/mean_length" in logs:
                    timer.lengths.append(float(logs["completions/mean_length"]))

        self.callback = Callback()
        self.seconds: list[float] = []
        self.lengths: list[float] = []
        self.started = 0.0


def run_trl(model: str, steps: int, out: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from distill.models import resolve_model
    from distill.rl.data import build_prompts, read_problems
    from distill.rl.grpo import RewardColumns
    from distill.rl.rewards import RewardScorer, RewardSettings

    path = resolve_model(model)
    config = rl_config(model, out, steps)
    prompts = build_prompts(read_problems(PROBLEMS), AutoTokenizer.from_pretrained(path), config)
    timer = StepTimer()
    with RewardScorer(["accuracy", "format"], RewardSettings(max_completion_length=96)) as scorer:
        trainer = GRPOTrainer(
            model=path, reward_funcs=RewardColumns(config, prompts, scorer).functions(),
            args=GRPOConfig(output_dir=str(out), use_cpu=True, per_device_train_batch_size=8, num_generations=4,
                            max_completion_length=96, max_steps=steps, report_to="none", save_strategy="no",
                            logging_steps=1, disable_tqdm=True),
            train_dataset=Dataset.from_list(prompts.rows), callbacks=[timer.callback])
        trainer.train()
    return {"seconds": timer.seconds, "lengths": timer.lengths}


def run_distill(model: str, steps: int, out: Path, rollout: str = "auto") -> dict:
    from distill.rl import train

    result = train(rl_config(model, out, steps, rollout), progress=False)
    rows = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    timings = {k: result.metrics[k] for k in ("rollout_sync_s", "rollout_generate_s") if k in result.metrics}
    return {"seconds": [r["step_seconds"] for r in rows], "lengths": [r["completion_length"] for r in rows],
            "rollout": f"{result.metrics['rollout']}: {result.metrics['rollout_reason']}", **timings}


WORKERS = {"trl": run_trl, "distill": run_distill,
           "distill-transformers": lambda model, steps, out: run_distill(model, steps, out, "transformers")}


def reward_rate(n: int = 512) -> dict:
    from distill.records import Problem
    from distill.rl.rewards import RewardScorer, RewardSettings, make_completion

    problem = Problem(id="p", problem="What is 6 times 7?", answer="42")
    texts = ["6 x 7 = 42\n</think>\n\nThe answer is \\boxed{42}.", "6 x 7 = 48\n</think>\n\n\\boxed{48}",
             "I think it is 42 but let me check again and again", "six sevens\n</think>\n\\boxed{\\frac{84}{2}}"]
    completions = [make_completion(problem, problem.problem, texts[i % 4], 20, False, prefilled_think=True)
                   for i in range(n)]
    names = ["accuracy", "format", "language"]
    with RewardScorer(names, RewardSettings()) as scorer:
        scorer.score(completions[:8], 4)  # start the workers
        started = time.perf_counter()
        scorer.score(completions, 4)
        seconds = time.perf_counter() - started
    return {"completions": n, "rewards": len(names), "seconds": round(seconds, 3),
            "evaluations_per_s": round(n * len(names) / seconds, 1)}


def summarize(raw: dict) -> dict:
    seconds, lengths = raw["seconds"][1:], raw["lengths"][1:]  # step 1 is warm-up
    step = statistics.median(seconds)
    tokens = [length * 8 / s for length, s in zip(lengths, seconds)]
    return {"seconds_per_step": round(step, 2), "rollout_tokens_per_s": round(statistics.median(tokens), 1),
            "mean_completion_tokens": round(statistics.mean(lengths), 1), "steps_timed": len(seconds),
            **{k: raw[k] for k in ("rollout", "rollout_sync_s", "rollout_generate_s") if k in raw}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="bundled:smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--worker", choices=list(WORKERS))
    parser.add_argument("--out")
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if options.worker:
        print("RESULT " + json.dumps(WORKERS[options.worker](options.model, options.steps, Path(options.out))))
        return
    results: dict = {"model": options.model, "steps": options.steps, "contenders": {}}
    for name in WORKERS:
        with tempfile.TemporaryDirectory() as tmp:
            before = loadavg()
            proc = subprocess.run([sys.executable, __file__, "--worker", name, "--model", options.model,
                                   "--steps", str(options.steps), "--out", tmp], capture_output=True, text=True,
                                  check=False)  # a failure is reported below with its stderr
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
            results["contenders"][name] = {**summarize(json.loads(line[7:])), "load_avg_before": before,
                                           "load_avg_after": loadavg()}
    trl, ours = results["contenders"]["trl"], results["contenders"]["distill"]
    results["speedup_step"] = round(trl["seconds_per_step"] / ours["seconds_per_step"], 2)
    results["speedup_rollout_tokens"] = round(ours["rollout_tokens_per_s"] / trl["rollout_tokens_per_s"], 2)
    plain = results["contenders"]["distill-transformers"]
    results["speedup_step_transformers_rollout"] = round(trl["seconds_per_step"] / plain["seconds_per_step"], 2)
    results["rewards"] = {**reward_rate(), "load_avg": loadavg()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rl.json").write_text(json.dumps(results, indent=2) + "\n")
    md = ["| contender | s / step | rollout tok/s | mean completion tokens | load avg (before/after) |",
          "| --- | ---: | ---: | ---: | --- |"]
    for name, c in results["contenders"].items():
        md.append(f"| {name} | {c['seconds_per_step']} | {c['rollout_tokens_per_s']} | "
                  f"{c['mean_completion_tokens']} | {c['load_avg_before']} / {c['load_avg_after']} |")
    md.append(f"\nspeedup: {results['speedup_step']}x per step, {results['speedup_rollout_tokens']}x rollout "
              f"tokens/s; rewards: {results['rewards']['evaluations_per_s']} evaluations/s "
              f"(load avg {results['rewards']['load_avg']}); with transformers rollouts: "
              f"{results['speedup_step_transformers_rollout']}x per step")
    if "rollout_sync_s" in ours:
        md.append(f"distill's step: {ours['rollout_sync_s']} s writing + reloading the weights into vLLM, "
                  f"{ours['rollout_generate_s']} s generating (medians); rollout: {ours['rollout']}")
    (RESULTS / "rl.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
