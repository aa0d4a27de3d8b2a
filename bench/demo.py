"""The demo's wall time and scores: `distill demo` (target <= 20 min) and `--quick` (<= 5 min) on this machine.

    .venv/bin/python bench/demo.py [--quick] [--keep RUN_DIR]

Runs the demo as a user would (`distill demo` in a subprocess, fresh run directory, bundled models
already converted) and records the wall time, each stage's seconds, the CPU time the demo's processes
got, the load average around it (the targets hold "while nothing else runs"; a busy machine says so
here), and the held-out scores: base and student pass@1 with 95% intervals and their paired difference.

Writes bench/results/demo.json and bench/results/demo.md (one entry per variant, the latest replacing
the previous one of the same variant).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("DISTILL_BENCH_RESULTS") or ROOT / "bench" / "results")  # the suite's smoke runs write elsewhere
TARGET_S = {"full": 20 * 60, "quick": 5 * 60}


def run_demo(quick: bool, run_dir: Path, overrides: list[str] = ()) -> dict:
    command = ([sys.executable, "-m", "distill.cli", "demo", "--run-dir", str(run_dir)] + (["--quick"] if quick else [])
               + list(overrides))
    load_before = os.getloadavg()
    started = time.monotonic()
    with open(run_dir.parent / "demo.log", "wb") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.monotonic() - started
    if done.returncode != 0:
        tail = (run_dir.parent / "demo.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"distill demo failed ({done.returncode}):\n{tail}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    headline = json.loads((run_dir / "demo.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    kept = summary["funnel"][-1]["remaining"] if summary.get("funnel") else None
    generated = summary["funnel"][0]["remaining"] if summary.get("funnel") else None
    return {
        "variant": "quick" if quick else "full", "wall_s": round(wall, 1),
        "target_s": TARGET_S["quick" if quick else "full"],
        "cpu_s": round(children.ru_utime + children.ru_stime, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "stages_s": {s["name"]: s["seconds"] for s in summary["stages"]},
        "kept": kept, "generated": generated, "benchmark": headline["benchmark"], "k": headline["k"],
        "base": headline["base"], "student": headline["student"], "difference": headline["difference"],
        "student_better": headline["student_better"],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def ci(score: dict) -> str:
    return f"{score['value']:.3f} [{score['ci_low']:.3f}, {score['ci_high']:.3f}]"


def markdown(entries: dict[str, dict]) -> str:
    lines = [("`distill demo` on this machine (`bench/demo.py`); pass@1 on the held-out facts, 95% CI; the "
              "difference is paired over the same problems."), "",
             ("| variant | wall time (target) | CPU time | load avg before | stages (s) | kept / generated | "
              "base pass@1 | student pass@1 | student - base |"),
             "| --- | ---: | ---: | --- | --- | --- | --- | --- | --- |"]
    for entry in entries.values():
        stages = ", ".join(f"{k} {v:.0f}" for k, v in entry["stages_s"].items())
        lines.append(
            f"| {entry['variant']} | {entry['wall_s']:.0f} s ({entry['target_s']} s) | {entry['cpu_s']:.0f} s | "
            f"{entry['load_average_before'][0]:.1f} | {stages} | {entry['kept']} / {entry['generated']} | "
            f"{ci(entry['base']['pass@1'])} | {ci(entry['student']['pass@1'])} | "
            f"{entry['difference']['value']:+.3f} [{entry['difference']['ci_low']:+.3f}, "
            f"{entry['difference']['ci_high']:+.3f}] |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it (default: a temp dir)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="recipe overrides passed to `distill demo` (the suite's smoke run shrinks the demo)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-demo-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        entry = run_demo(args.quick, work / "run", args.overrides)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "demo.json"
    entries = json.loads(path.read_text()) if path.exists() else {}
    entries[entry["variant"]] = entry
    path.write_text(json.dumps(entries, indent=2) + "\n")
    (RESULTS / "demo.md").write_text(markdown(entries))
    print(markdown(entries))


if __name__ == "__main__":
    main()
