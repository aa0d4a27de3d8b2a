"""What `sft.deterministic` costs: the same LoRA training with it on and off, alternating, on this machine.

    .venv/bin/python bench/determinism.py [--model bundled:tiny] [--steps 8] [--repeats 2]

Data: the first 48 GSM8K training solutions as kept R1-format traces. Each run trains `--steps` LoRA steps
in a fresh subprocess and reports its training seconds (model loading and tokenization excluded); on and
off alternate `--repeats` times (the box is shared) and the best of each counts. Also checks that the two
deterministic runs saved the same adapter bytes. Writes bench/results/determinism.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
RESULTS = Path(os.environ.get("DISTILL_BENCH_RESULTS") or ROOT / "bench" / "results")  # the suite's smoke runs write elsewhere


def write_kept(path: Path, n: int) -> None:
    from distill.config import MATH_PROMPT

    with open(GSM8K, encoding="utf-8") as source, open(path, "w", encoding="utf-8") as out:
        for i, line in zip(range(n), source):
            row = json.loads(line)
            solution, _, number = row["answer"].rpartition("####")
            reasoning, answer = solution.strip(), f"The answer is $\\boxed{{{number.strip()}}}$."
            out.write(json.dumps({
                "problem_id": f"gsm8k-{i}", "sample": 0, "teacher": "gsm8k-reference",
                "prompt": [{"role": "user", "content": MATH_PROMPT.format(problem=row["question"])}],
                "completion": f"<think>\n{reasoning}\n</think>\n\n{answer}", "reasoning": reasoning,
                "answer": answer, "finish_reason": "stop", "kept": True}) + "\n")


def worker(kept: Path, out: Path, model: str, steps: int, deterministic: bool) -> None:
    from distill.config import SFTConfig
    from distill.sft import train

    result = train(SFTConfig(model=model, train_file=kept, output_dir=out, method="lora", max_steps=steps,
                             per_device_batch_size=2, gradient_accumulation_steps=1, max_length=512,
                             eval_fraction=0.0, save_steps=1000, merge=False, deterministic=deterministic),
                   progress=False)
    print(json.dumps({"train_seconds": result.metrics["train_seconds"], "adapter": str(result.adapter_dir)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="bundled:tiny")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", nargs=4, metavar=("KEPT", "OUT", "STEPS", "DETERMINISTIC"))
    args = parser.parse_args()
    if args.worker:
        kept, out, steps, det = args.worker
        worker(Path(kept), Path(out), args.model, int(steps), det == "1")
        return

    load_before = os.getloadavg()[0]
    runs: dict[str, list[float]] = {"on": [], "off": []}
    adapters: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        kept = Path(tmp) / "kept.jsonl"
        write_kept(kept, 48)
        for repeat in range(args.repeats):
            for label in ("on", "off"):
                out = Path(tmp) / f"{label}-{repeat}"
                done = subprocess.run([sys.executable, __file__, "--model", args.model, "--worker", str(kept),
                                       str(out), str(args.steps), "1" if label == "on" else "0"],
                                      capture_output=True, text=True, check=True)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                runs[label].append(row["train_seconds"])
                if label == "on":
                    adapters.append(Path(row["adapter"]))
        weights = [sorted(a.glob("*.safetensors")) for a in adapters]
        identical = all(p.read_bytes() == q.read_bytes() for p, q in zip(weights[0], weights[-1]))
    best = {label: min(times) for label, times in runs.items()}
    result = {"model": args.model, "steps": args.steps, "runs_s": runs, "best_s": best,
              "cost": round(best["on"] / best["off"], 3), "identical_adapters": identical,
              "load_avg_before": load_before, "load_avg_after": os.getloadavg()[0]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "determinism.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "determinism.md").write_text(
        f"`sft.deterministic` on {args.model}, LoRA, {args.steps} steps, best of {args.repeats} alternating runs "
        f"(load average {load_before:.1f} before, {result['load_avg_after']:.1f} after; `bench/determinism.py`)\n\n"
        "| deterministic | train s (all runs) | best |\n| --- | --- | ---: |\n"
        f"| on | {runs['on']} | {best['on']:.2f} |\n| off | {runs['off']} | {best['off']:.2f} |\n\n"
        f"Cost: **{result['cost']:.3f}x** the training time; the deterministic runs saved identical adapters: "
        f"{identical}.\n")
    print((RESULTS / "determinism.md").read_text())


if __name__ == "__main__":
    main()
