"""On-policy distillation step time and tokens/s: `distill kd` against TRL's DistillationTrainer with its defaults.

    .venv/bin/python bench/kd.py [--student bundled:smollm2-135m-instruct] [--teacher bundled:smollm2-135m-instruct]
                                 [--steps 6] [--prompts 4] [--tokens 64] [--contenders trl,distill,...]

Same student, teacher and prompts for both: the demo's arithmetic problems rendered as distill renders them
(chat template, R1's instruction, '<think>\\n' prefill), `--prompts` completions a step (one per problem: TRL's
trainer draws one completion per prompt), at most `--tokens` completion tokens, a full fine-tune of the student.

- TRL: `DistillationTrainer(model=STUDENT, teacher_model=TEACHER, args=DistillationConfig(output_dir,
  use_cpu=True, per_device_train_batch_size=PROMPTS, max_completion_length=TOKENS, max_steps, report_to="none",
  save_strategy="no", logging_steps=1))`; everything else TRL's default (beta 1.0 = reverse KL over the full
  vocabulary in chunks, gradient checkpointing on, bf16 on, transformers generate on the trained model).
- distill: `distill.kd.train(KDConfig(...same batch..., method=full, samples_per_prompt=1))` with its defaults
  otherwise (reverse KL k1 as the advantage, precision auto: bf16 here, rollout auto: vLLM reloading the student's
  weights each step where vLLM is installed).
- distill-overlap: the same with `overlap=true` (the next step's completions drawn while this step trains).
- distill-transformers: the same with `rollout=transformers` (sampling from a bf16 copy of the student).

Each contender runs in a fresh subprocess; the first step (warm-up) is left out and the median of the others
counts. Tokens/s = (prompt + completion) tokens of a step / step time, from each trainer's own counts. Writes
bench/results/kd.{json,md} with the load average before and after each contender (the box is shared).
"""
from __future__ import annotations

import argparse
import functools
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
RESULTS = Path(os.environ.get("DISTILL_BENCH_RESULTS") or ROOT / "bench" / "results")


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def kd_config(options, out: Path, **settings):
    from distill.kd import KDConfig

    return KDConfig(model=options.student, teacher=options.teacher, problems=PROBLEMS, output_dir=out,
                    method="full", prompts_per_step=options.prompts, samples_per_prompt=1,
                    max_completion_length=options.tokens, max_steps=options.steps, save_steps=1000, **settings)


def run_trl(options, out: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import DistillationConfig, DistillationTrainer

    from distill.models import resolve_model
    from distill.problems import load_problems
    from distill.rl.data import build_prompts

    student, teacher = resolve_model(options.student), resolve_model(options.teacher)
    tokenizer = AutoTokenizer.from_pretrained(student)
    tokenizer.padding_side = "left"
    prompts = build_prompts(load_problems(PROBLEMS), tokenizer, kd_config(options, out))
    seconds, tokens, lengths, started = [], [], [], [0.0]

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            started[0] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            seconds.append(time.perf_counter() - started[0])

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "num_tokens" in logs:
                tokens.append(float(logs["num_tokens"]))
                lengths.append(float(logs.get("completions/mean_length", 0.0)))

    trainer = DistillationTrainer(
        model=student, teacher_model=teacher, processing_class=tokenizer,
        args=DistillationConfig(output_dir=str(out), use_cpu=True, per_device_train_batch_size=options.prompts,
                                max_completion_length=options.tokens, max_steps=options.steps, report_to="none",
                                save_strategy="no", logging_steps=1, disable_tqdm=True),
        train_dataset=Dataset.from_list([{"prompt": r["prompt"]} for r in prompts.rows]), callbacks=[Timer()])
    trainer.train()
    # num_tokens is cumulative: a step's tokens are the differences.
    per_step = [b - a for a, b in zip([0.0, *tokens], tokens)]
    return {"seconds": seconds, "tokens": per_step, "lengths": lengths, "peak_rss_gib": peak_rss_gib()}


def peak_rss_gib() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 3)


def run_distill(options, out: Path, **settings) -> dict:
    from distill.kd import dry_run, train

    estimate = dry_run(kd_config(options, out, **settings))["memory"]["per_device_gib"]["ddp"]
    result = train(kd_config(options, out, **settings), progress=False)
    rows = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    per_step = [b - a for a, b in zip([0, *[r["tokens"] for r in rows]], [r["tokens"] for r in rows])]
    return {"seconds": [r["step_seconds"] for r in rows], "tokens": per_step,
            "lengths": [r["completion_length"] for r in rows], "phases": result.metrics["median_step_phases_s"],
            "rollout": result.metrics["rollout"], "precision": result.metrics["precision"],
            "rollout_sync_s": result.metrics.get("rollout_sync_s"),
            "peak_rss_gib": result.metrics["peak_rss_gib"], "dry_run_estimate_gib": estimate}


WORKERS = {"trl": run_trl, "distill": run_distill,
           "distill-overlap": functools.partial(run_distill, overlap=True),
           "distill-transformers": functools.partial(run_distill, rollout="transformers")}


def summarize(raw: dict) -> dict:
    seconds, tokens = raw["seconds"][1:], raw["tokens"][1:]  # the first step warms up
    step = statistics.median(seconds)
    rates = [t / s for t, s in zip(tokens, seconds) if s > 0]
    return {"seconds_per_step": round(step, 3), "tokens_per_s": round(statistics.median(rates), 1),
            "mean_completion_tokens": round(statistics.mean(raw["lengths"][1:]), 1),
            "steps_timed": len(seconds), **{k: v for k, v in raw.items() if k in (
                "phases", "rollout", "precision", "peak_rss_gib", "dry_run_estimate_gib", "rollout_sync_s")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", default="bundled:smollm2-135m-instruct")
    parser.add_argument("--teacher", default="bundled:smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--contenders", default=",".join(WORKERS), help="comma-separated, trl first (the baseline)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    options = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if options.worker:
        print("RESULT " + json.dumps(WORKERS[options.worker](options, Path(options.out))), flush=True)
        return

    results: dict = {"student": options.student, "teacher": options.teacher, "steps": options.steps,
                     "prompts_per_step": options.prompts, "max_completion_tokens": options.tokens, "contenders": {}}
    names = options.contenders.split(",")
    if names[0] != "trl" or not set(names) <= set(WORKERS):
        raise SystemExit(f"--contenders: trl first, then any of {sorted(WORKERS)}")
    for name in names:
        before = loadavg()
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, __file__, "--worker", name, "--out", tmp, "--student", options.student,
                       "--teacher", options.teacher, "--steps", str(options.steps), "--prompts", str(options.prompts),
                       "--tokens", str(options.tokens)]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        results["contenders"][name] = {**summarize(json.loads(line[7:])), "load_avg_before": before,
                                       "load_avg_after": loadavg()}
        print(name, results["contenders"][name], flush=True)
    trl = results["contenders"]["trl"]
    for c in results["contenders"].values():
        c["speedup_step"] = round(trl["seconds_per_step"] / c["seconds_per_step"], 2)
        c["speedup_tokens_per_s"] = round(c["tokens_per_s"] / trl["tokens_per_s"], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kd.json").write_text(json.dumps(results, indent=2) + "\n")
    md = [f"# bench/kd.py: on-policy distillation, {options.student} <- {options.teacher}", "",
          (f"{options.prompts} completions a step, at most {options.tokens} tokens, full fine-tune, "
           f"median of steps 2..{options.steps}"), "",
          ("| contender | s / step | x TRL per step | tokens/s | x TRL tokens/s | mean completion tokens | peak RSS GiB "
           "| load avg (before/after) |"),
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, c in results["contenders"].items():
        md.append(f"| {name} | {c['seconds_per_step']} | {c['speedup_step']} | {c['tokens_per_s']} | "
                  f"{c['speedup_tokens_per_s']} | {c['mean_completion_tokens']} | {c.get('peak_rss_gib')} | "
                  f"{c['load_avg_before']} / {c['load_avg_after']} |")
    md.append("")
    for name, c in results["contenders"].items():
        if "phases" in c:
            md.append(f"- {name}: median phases {c['phases']} (rollout: {c.get('rollout')}, {c.get('precision')}); "
                      f"peak RSS {c.get('peak_rss_gib')} GiB against its dry-run estimate "
                      f"{c.get('dry_run_estimate_gib')} GiB")
    md.append("\nThe process RSS includes torch and the tokenizers; a vLLM engine runs in a process of its own, "
              "not counted in it.")
    (RESULTS / "kd.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
