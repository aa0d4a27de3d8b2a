"""`distill demo --rl`: the self-distillation demo, then GRPO on its student, then base vs student vs student+RL.

The run is recipes/demo-self.yaml (SmolLM2 distilled into itself; demo-quick.yaml with --quick) plus the
`rl:` section of data/demo/rl.yaml, in the same run directory: a finished `distill run recipes/demo-self.yaml`
is reused (same stage keys), so only RL and the evaluation run. Not the Gemma student of `distill demo`:
measured on 2 cores, its 12 GRPO steps took 1,029 s (~70 s a step against SmolLM2's 28-48 s), the arm
1,296 s, and SFT+RL - SFT was -0.047 [-0.125, +0.031]; on SmolLM2 the arm is under 15 minutes and RL helped
(+0.090 [+0.031, +0.148]), docs/rl.md. Whether RL helped is judged on the paired difference student+RL -
student over the same held-out problems; when its 95% interval includes 0, it says so, and shows where the
reward curve went.
"""
from __future__ import annotations

import json
from pathlib import Path

from distill.config import load_yaml
from distill.demo import demo_recipe, run_offline
from distill.eval.metrics import paired_difference
from distill.files import atomic_write_json
from distill.jsonl import read_jsonl
from distill.resources import package_root

QUICK_STEPS = 6  # `--rl --quick`: half the recipe's steps


def rl_demo_recipe(*, quick: bool = False, run_dir: Path | None = None, overrides: list[str] | None = None):
    root = package_root()
    section = load_yaml(root / "data" / "demo" / "rl.yaml")["rl"]
    section["problems"] = str((root / "data" / "demo" / "train.jsonl").resolve())
    if quick:
        section["max_steps"] = QUICK_STEPS
    return demo_recipe(name="demo-quick" if quick else "demo-self", run_dir=run_dir,
                       overrides=[f"rl={json.dumps(section)}", *(overrides or [])])


def pass1_per_problem(results: Path) -> list[float]:
    return [row["correct"] / row["n"] for row in read_jsonl(results)]


def main(*, quick: bool = False, run_dir: Path | None = None, progress: bool = True,
         overrides: list[str] | None = None) -> dict:
    from distill.eval.stage import slug
    from distill.rl.logging import read_log

    recipe = rl_demo_recipe(quick=quick, run_dir=run_dir, overrides=overrides)
    console, summary, wall = run_offline(recipe, progress)
    scores = summary.scores
    bench = next(iter(scores["benchmarks"]))
    folder = Path(recipe.eval.output_dir)
    per = {label: pass1_per_problem(folder / slug(label) / f"{bench}.results.jsonl") for label in scores["scores"]}
    rl_gain = paired_difference(per["policy"], per["student"], seed=recipe.eval.sampling.seed).to_json()
    rows = read_log(Path(recipe.rl.output_dir) / "log.jsonl")
    curve = [(r["step"], round(r.get("reward", 0.0), 3), round(r.get("accuracy", 0.0), 3)) for r in rows]
    result = {"benchmark": bench, "k": scores["k"],
              "pass@1": {label: scores["scores"][label][bench]["pass@1"] for label in ("base", "student", "policy")},
              "student_minus_base": scores["deltas"]["student"][bench]["pass@1"],
              "rl_minus_student": rl_gain, "rl_helped": rl_gain["ci_low"] > 0, "rl_hurt": rl_gain["ci_high"] < 0,
              "reward_curve": curve, "wall_s": round(wall, 1), "quick": quick, "run_dir": str(recipe.run_dir),
              "stages": {s.name: {"status": s.status, "seconds": s.seconds} for s in summary.stages}}
    atomic_write_json(Path(recipe.run_dir) / "demo_rl.json", result)
    console.rule("[bold]demo --rl result")
    p = result["pass@1"]
    lines = [f"held-out '{bench}', pass@1 over k={result['k']} samples, 95% CI:"]
    for label, name in (("base", "base"), ("student", "SFT student"), ("policy", "SFT+RL")):
        lines.append(f"  {name:12s} {p[label]['value']:.3f}  [{p[label]['ci_low']:.3f}, {p[label]['ci_high']:.3f}]")
    d, g = result["student_minus_base"], rl_gain
    lines.append(f"  SFT - base      {d['value']:+.3f}  [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] (paired)")
    lines.append(f"  SFT+RL - SFT    {g['value']:+.3f}  [{g['ci_low']:+.3f}, {g['ci_high']:+.3f}] (paired)")
    if result["rl_helped"]:
        lines.append("[bold green]RL helped: the whole interval of SFT+RL - SFT is above 0[/]")
    elif result["rl_hurt"]:
        lines.append("[bold red]RL hurt: the whole interval of SFT+RL - SFT is below 0[/]")
    else:
        lines.append("[bold yellow]RL did not clearly help at this scale: the interval of SFT+RL - SFT includes 0[/]")
    lines.append("reward curve (step, mean reward, accuracy): " + ", ".join(f"({s}, {r}, {a})" for s, r, a in curve))
    lines.append(f"plot: {Path(recipe.rl.output_dir) / 'rewards.png'}; wall time {wall:.0f} s ({wall / 60:.1f} min)")
    console.print("\n".join(lines), highlight=False)
    return result
