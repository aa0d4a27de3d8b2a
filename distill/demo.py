"""`distill demo`: the whole loop on the bundled models: SmolLM2-135M-Instruct teaches Gemma 3 270M base.

It runs recipes/demo.yaml through `distill.pipeline.run`: the teacher samples 4 solutions to each training
problem, the verified ones are kept, the base student is fine-tuned on them in its own chat template, and
base and student are scored on held-out problems. `--quick` runs recipes/demo-quick.yaml, SmolLM2 distilled
into itself, the loop that fits 5 minutes. It ends with the two pass@1 scores, their 95% intervals, the
paired difference, what the gain is made of and the wall time. Reruns resume: a finished demo prints its
result again in seconds.

`distill demo --rl` (`main_rl`) is the RL arm: recipes/demo-self.yaml (SmolLM2 distilled into itself;
demo-quick.yaml with --quick) plus the `rl:` section of data/demo/rl.yaml, in the same run directory: a
finished `distill run recipes/demo-self.yaml` is reused (same stage keys), so only RL and the evaluation run.
Not the Gemma student of `distill demo`: measured on 2 cores, its 12 GRPO steps took 1,029 s (~70 s a step
against SmolLM2's 28-48 s), the arm 1,296 s, and SFT+RL - SFT was -0.047 [-0.125, +0.031]; on SmolLM2 the
arm is under 15 minutes and RL helped (+0.090 [+0.031, +0.148]), docs/rl.md. Whether RL helped is judged on
the paired difference student+RL - student over the same held-out problems; when its 95% interval includes
0, it says so, and shows where the reward curve went.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from distill.config import Recipe, load_recipe, load_yaml
from distill.errors import DistillError
from distill.files import atomic_write_json
from distill.jsonl import read_jsonl
from distill.resources import package_root, shipped_path


def demo_recipe(*, quick: bool = False, run_dir: Path | None = None, overrides: list[str] | None = None,
                name: str | None = None) -> Recipe:
    """A demo recipe (`name`: demo, demo-quick or demo-self; by default the one `quick` picks) with its data
    paths made absolute, so the demo runs from any directory."""
    root = package_root()  # the recipe's data/demo/... paths are relative to it
    name = f"{name or ('demo-quick' if quick else 'demo')}.yaml"
    base = load_recipe(root / "recipes" / name)
    fixed = [f"generate.problems={shipped_path(base.generate.problems)}",
             f"filter.problems={shipped_path(base.generate.problems)}",
             "filter.decontaminate.against=[" + ",".join(str(shipped_path(p))
                                                           for p in base.filter.decontaminate.against) + "]"]
    benches = [{"name": b.name, "path": str(shipped_path(b.path)), "limit": b.limit} for b in base.eval.benchmarks]
    fixed.append("eval.benchmarks=" + json.dumps(benches))  # JSON is YAML: the override parser reads it
    if run_dir is not None:
        fixed.append(f"run_dir={Path(run_dir).resolve()}")
    return load_recipe(root / "recipes" / name, fixed + list(overrides or []))


def headline(summary) -> dict:
    """Base against student on the held-out benchmark: the numbers the demo is about."""
    scores = summary.scores
    if not scores:
        raise DistillError("the demo finished without evaluation scores; see the run directory")
    bench = next(iter(scores["benchmarks"]))
    base, student = list(scores["scores"])[:2]
    delta = scores["deltas"][student][bench]["pass@1"]
    return {"benchmark": bench, "k": scores["k"],
            "base": scores["scores"][base][bench], "student": scores["scores"][student][bench],
            "difference": delta, "student_better": delta["ci_low"] > 0,
            "gain": gain_breakdown(scores["scores"][base][bench], scores["scores"][student][bench])}


MIN_ANSWERS_TO_SPLIT = 10  # fewer answers than this say nothing about a model's accuracy when it answers


def gain_breakdown(base: dict, student: dict) -> dict:
    """What the pass@1 gain is made of: answering at all (format) against being right when answering.

    pass@1 = answered x accuracy-given-an-answer, and the difference splits exactly (the symmetric split, so
    neither part is favoured by the order): format = (answered_s - answered_b) x mean accuracy, accuracy =
    (accuracy_s - accuracy_b) x mean answered. A model with fewer than MIN_ANSWERS_TO_SPLIT answers has no
    accuracy to compare (a base that answers 1 sample of 128 is "0% right" on one sample): the difference is
    then not split, and counts as format. Point estimates; the paired interval is pass@1's.
    """
    def parts(scores: dict) -> tuple[float, int, float | None]:
        answered = 1.0 - scores["no_answer_frac"]
        count = round(answered * scores.get("samples", 0))
        known = answered > 0 and count >= MIN_ANSWERS_TO_SPLIT
        return answered, count, (scores["pass@1"]["value"] / answered if known else None)

    (a_b, n_b, c_b), (a_s, n_s, c_s) = parts(base), parts(student)
    gain = {"answered": {"base": round(a_b, 4), "student": round(a_s, 4)},
            "answers": {"base": n_b, "student": n_s},
            "accuracy_given_answer": {"base": None if c_b is None else round(c_b, 4),
                                      "student": None if c_s is None else round(c_s, 4)},
            "truncated": {"base": base.get("truncated_frac"), "student": student.get("truncated_frac")}}
    if c_b is None or c_s is None:
        difference = student["pass@1"]["value"] - base["pass@1"]["value"]
        return {**gain, "split": False, "from_format": round(difference, 4), "from_accuracy": None}
    return {**gain, "split": True, "from_format": round((a_s - a_b) * (c_b + c_s) / 2, 4),
            "from_accuracy": round((c_s - c_b) * (a_b + a_s) / 2, 4)}


def describe_gain(gain: dict) -> str:
    """The split in lines that fit 80 columns."""
    a, n, c = gain["answered"], gain["answers"], gain["accuracy_given_answer"]

    def answers(label: str) -> str:
        return f"{n[label]} answer" + ("s" if n[label] != 1 else "")

    def cell(label: str) -> str:
        return f"{a[label]:.2f} ({answers(label)})".ljust(22)

    def right(label: str) -> str:
        return (f"{c[label]:.2f}" if c[label] is not None else "n/a").ljust(22)

    lines = [f"  answered        base {cell('base')}student {cell('student')}",
             f"  right|answered  base {right('base')}student {right('student')}"]
    if gain["split"]:
        lines += [f"  the difference is {gain['from_format']:+.3f} from answering more (format)",
                  f"  and {gain['from_accuracy']:+.3f} from being right more often when answering"]
    else:
        few = "base" if c["base"] is None else "student"
        lines += [f"  the {few} gave {answers(few)} (< {MIN_ANSWERS_TO_SPLIT}): too few to say how often it",
                  f"  is right when it answers, so the difference ({gain['from_format']:+.3f}) is not split:",
                  "  it is answering at all (format) first"]
    return "\n".join(line.rstrip() for line in lines)


def run_offline(recipe: Recipe, progress: bool, stages: list[str] | None = None):
    """Run a demo recipe (or some of its stages) quietly and offline; returns (console, summary, wall seconds)."""
    from rich.console import Console

    from distill.pipeline import run

    # Everything the demo needs ships with the package: never wait on a hub that may not be reachable.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    console = Console(stderr=True)
    started = time.monotonic()
    summary = run(recipe, progress=progress, stages=stages, console=console)
    return console, summary, time.monotonic() - started


def main(*, quick: bool = False, run_dir: Path | None = None, progress: bool = True,
         overrides: list[str] | None = None) -> dict:
    """Run the demo, print base vs student with intervals and the wall time; returns the headline."""
    recipe = demo_recipe(quick=quick, run_dir=run_dir, overrides=overrides)
    console, summary, wall = run_offline(recipe, progress)
    result = headline(summary)
    result.update(wall_s=round(wall, 1), quick=quick, run_dir=str(recipe.run_dir),
                  stages={s.name: {"status": s.status, "seconds": s.seconds} for s in summary.stages})
    atomic_write_json(Path(recipe.run_dir) / "demo.json", result)
    b, s, d = result["base"]["pass@1"], result["student"]["pass@1"], result["difference"]
    verdict = ("[bold green]the student is better: the whole interval of the difference is above 0[/]"
               if result["student_better"] else
               "[bold yellow]no clear improvement: the interval of the difference includes 0[/]")
    console.rule("[bold]demo result")
    console.print(f"held-out '{result['benchmark']}', pass@1 over k={result['k']} samples, 95% CI:\n"
                  f"  base     {b['value']:.3f}  [{b['ci_low']:.3f}, {b['ci_high']:.3f}]\n"
                  f"  student  {s['value']:.3f}  [{s['ci_low']:.3f}, {s['ci_high']:.3f}]\n"
                  f"  student - base  {d['value']:+.3f}  [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] (paired bootstrap)\n"
                  f"{describe_gain(result['gain'])}\n"
                  f"{verdict}\nwall time {wall:.0f} s ({wall / 60:.1f} min); report: {summary.report}",
                  highlight=False)
    return result


# ------------------------------------------------------------------------------------ the RL arm (--rl)
RL_QUICK_STEPS = 6  # `--rl --quick`: half the recipe's steps


def rl_demo_recipe(*, quick: bool = False, run_dir: Path | None = None, overrides: list[str] | None = None):
    root = package_root()
    section = load_yaml(root / "data" / "demo" / "rl.yaml")["rl"]
    section["problems"] = str((root / "data" / "demo" / "train.jsonl").resolve())
    if quick:
        section["max_steps"] = RL_QUICK_STEPS
    return demo_recipe(name="demo-quick" if quick else "demo-self", run_dir=run_dir,
                       overrides=[f"rl={json.dumps(section)}", *(overrides or [])])


def pass1_per_problem(results: Path) -> list[float]:
    return [row["correct"] / row["n"] for row in read_jsonl(results)]


def main_rl(*, quick: bool = False, run_dir: Path | None = None, progress: bool = True,
            overrides: list[str] | None = None) -> dict:
    """Run the RL arm, print base vs SFT vs SFT+RL with intervals and the reward curve; returns the result."""
    from distill.eval.metrics import paired_difference
    from distill.eval.stage import slug
    from distill.lifecycle import read_log

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
