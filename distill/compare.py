"""`distill demo --kd`: SFT vs on-policy distillation vs GRPO from the same student, at equal training tokens.

From one base student (SmolLM2-135M-Instruct, LoRA r 16 in every arm) and one teacher that is clearly better
at the task (the SFT student of recipes/demo-quick.yaml, made once by that recipe and reused):

    sft         the teacher samples the training problems, the verified samples are kept, the student is
                fine-tuned on them: R1's distillation recipe
    opd         on-policy distillation: the student samples, the teacher scores every token, the student
                lowers its per-token reverse KL to the teacher (distill.kd)
    grpo        GRPO on the verifier's accuracy and format rewards (distill.rl)
    opd+reward  on-policy distillation with the accuracy reward mixed into the advantage

The on-policy arms take the same number of steps of the same shape; SFT then trains for as many steps as give
it the same student training tokens (the tokens its training forward passes see) as their mean. FLOPs follow
`distill plan`'s model: training 4 x N x tokens for LoRA (6 with gradient checkpointing), sampling 2 x N x tokens, teacher scoring or
writing 2 x N_teacher x tokens. Every model is scored on the same held-out problems; each pair of arms gets a
paired 95% interval. The arms' settings are distill/data/demo/compare.yaml. Each arm resumes on its own: a
rerun redoes nothing finished and prints the result again.
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from distill.config import (
    Config,
    EvalConfig,
    FilterConfig,
    GenerateConfig,
    RewardConfig,
    RLConfig,
    SFTConfig,
    apply_overrides,
    config_hash,
    load_yaml,
    validate_config,
)
from distill.files import atomic_write_json, move_aside, read_json
from distill.jsonl import read_jsonl
from distill.kd.config import KDConfig
from distill.resources import package_root, shipped_path


class CompareConfig(Config):
    """The comparison's arms: each stage section is that stage's own config, paths and models filled in here."""

    student: str = Field("bundled:smollm2-135m-instruct", description="the one starting point of every arm")
    teacher: str | None = Field(None, description="unset: the SFT student of the teacher recipe, made once")
    teacher_recipe: str = Field("demo-quick", description="the shipped recipe that makes the teacher")
    problems: Path = Field(Path("data/demo/train.jsonl"), description="training problems of every arm")
    steps: int = Field(10, ge=1, description="optimizer steps of each on-policy arm")
    mix_weight: float | None = Field(None, gt=0, description="accuracy weight of an opd+reward arm; None: no such arm")
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    kd: KDConfig = Field(default_factory=KDConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


def compare_config(*, quick: bool = False, overrides: list[str] | None = None,
                   path: Path | None = None) -> CompareConfig:
    """The shipped comparison (its `quick:` block applied with --quick), relative paths made absolute."""
    path = path or package_root() / "data" / "demo" / "compare.yaml"
    document = load_yaml(path)
    quick_block = document.pop("quick", {})
    if quick:
        document = _merged(document, quick_block)
    document = apply_overrides(document, list(overrides or []))
    config = validate_config(CompareConfig, document, str(path))
    benches = [b.model_copy(update={"path": shipped_path(b.path)}) for b in config.eval.benchmarks]
    return config.model_copy(update={"problems": shipped_path(config.problems),
                                     "eval": config.eval.model_copy(update={"benchmarks": benches})})


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# ------------------------------------------------------------------------------------------------ arms
def make_teacher(config: CompareConfig, run_dir: Path | None, progress: bool) -> tuple[str, float]:
    """The teacher's folder and the seconds it took (0 when its run folder had it already)."""
    if config.teacher is not None:
        return config.teacher, 0.0
    from distill.demo import demo_recipe, run_offline
    from distill.stages.eval import model_aliases

    recipe = demo_recipe(name=config.teacher_recipe, run_dir=run_dir)
    started = time.monotonic()
    run_offline(recipe, progress, stages=["generate", "filter", "sft"])
    return model_aliases(recipe)["student"], time.monotonic() - started


def _arm_record(folder: Path, digest: str, train) -> dict[str, Any]:
    """Run `train()` once for this config digest; a rerun reads the record (and its first wall time) back."""
    record_path, stamp = folder / "arm.json", folder / "arm-config.json"
    if record_path.exists():
        record = read_json(record_path)
        if record.get("config_hash") == digest and Path(record["policy"]).exists():
            return record
    if stamp.exists() and read_json(stamp)["config_hash"] != digest:
        # Another arm's settings: moved aside whole (a crash of this one resumes from its own checkpoints).
        move_aside([folder], folder.parent / "stale", f"{folder.name}-{read_json(stamp)['config_hash'][:12]}")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stamp, {"config_hash": digest})
    started = time.monotonic()
    record = {**train(), "config_hash": digest}
    record["seconds"] = round(time.monotonic() - started, 1)
    atomic_write_json(record_path, record)
    return record


def run_grpo(config: CompareConfig, out: Path, progress: bool) -> dict[str, Any]:
    from distill.generation.engine import shutdown_llm
    from distill.rl import train

    rl = config.rl.model_copy(update={"model": config.student, "problems": config.problems, "output_dir": out,
                                      "max_steps": config.steps})

    def fit() -> dict[str, Any]:
        shutdown_llm()  # the rollouts start an engine of their own
        result = train(rl, progress=progress)
        rows = list(read_jsonl(result.log_path))
        return {"policy": str(result.policy), "tokens": int(rows[-1].get("num_tokens", 0)),
                "log": str(result.log_path), "teacher_tokens": 0}
    return _arm_record(out, config_hash(rl), fit)


def run_opd(config: CompareConfig, teacher: str, out: Path, progress: bool,
            rewards: list[RewardConfig] | None = None) -> dict[str, Any]:
    from distill.generation.engine import shutdown_llm
    from distill.kd import train

    kd = config.kd.model_copy(update={"model": config.student, "teacher": teacher, "problems": config.problems,
                                      "output_dir": out, "max_steps": config.steps, "rewards": rewards or []})

    def fit() -> dict[str, Any]:
        shutdown_llm()
        result = train(kd, progress=progress)
        tokens = int(result.metrics["tokens"])
        # The teacher scores every sequence the student trains on: the same tokens, once, forward only.
        return {"policy": str(result.policy), "tokens": tokens, "log": str(result.log_path), "teacher_tokens": tokens}
    return _arm_record(out, config_hash(kd) + teacher, fit)


def run_sft(config: CompareConfig, teacher: str, out: Path, target_tokens: int, progress: bool) -> dict[str, Any]:
    """The teacher writes traces, the verifier keeps the right ones, SFT trains on them for `target_tokens`."""
    from distill.filter import filter_traces
    from distill.generation import generate
    from distill.generation.engine import shutdown_llm
    from distill.sft import train
    from distill.sft.train import epoch_tokens

    sft = config.sft.model_copy(update={"model": config.student, "train_file": out / "filter" / "kept.jsonl",
                                        "output_dir": out / "student"})
    digest = "+".join([config_hash(sft), config_hash(config.generate), config_hash(config.filter), teacher,
                       str(target_tokens)])

    def fit() -> dict[str, Any]:
        gen = config.generate.model_copy(update={"model": teacher, "problems": config.problems,
                                                 "output": out / "traces.jsonl"})
        written = generate(gen, progress=progress)
        # The held-out problems are never trained on, whatever the filter section says.
        decontaminate = config.filter.decontaminate.model_copy(
            update={"against": [b.path for b in config.eval.benchmarks]})
        filter_traces(config.filter.model_copy(update={"input": written.output, "problems": config.problems,
                                                       "output_dir": out / "filter", "decontaminate": decontaminate}),
                      progress=progress)
        shutdown_llm()  # the teacher's engine: training needs the memory
        # The budget in steps: an epoch's real tokens (packed exactly as training packs them) over its steps.
        rows, tokens = epoch_tokens(sft)
        batch = sft.per_device_batch_size * sft.gradient_accumulation_steps
        per_step = tokens / -(-rows // batch)
        steps = max(1, round(target_tokens / per_step))
        result = train(sft.model_copy(update={"max_steps": steps}), progress=progress)
        generated = sum(t["completion_tokens"] + t.get("prompt_tokens", 0) for t in read_jsonl(written.output))
        return {"policy": str(result.merged_dir or result.adapter_dir), "tokens": int(result.metrics["tokens"]),
                "log": str(result.log_path), "teacher_tokens": generated, "steps": steps,
                "tokens_per_step": round(per_step, 1)}
    return _arm_record(out, digest, fit)


# ------------------------------------------------------------------------------------------------ score
def score(config: CompareConfig, models: dict[str, str], out: Path, progress: bool):
    from distill.eval import evaluate
    from distill.generation.engine import shutdown_llm

    shutdown_llm()
    eval_config = config.eval.model_copy(update={"models": list(models), "output_dir": out})
    return evaluate(eval_config, progress=progress, aliases=models)


def pairwise(per_problem: dict[str, list[float]], seed: int) -> dict[str, dict[str, Any]]:
    """Every later label against every earlier one: 'b - a' with its paired 95% interval."""
    from distill.eval.metrics import paired_difference

    return {f"{b} - {a}": paired_difference(per_problem[b], per_problem[a], seed=seed).to_json()
            for a, b in itertools.combinations(per_problem, 2)}


def flops(params: dict[str, float], arm: dict[str, Any], trainer: Config, on_policy: bool) -> dict[str, float]:
    """`distill plan`'s counting: training k N per token (plan.training_flops_per_token), sampling a forward
    (plan.FORWARD_FLOPS N), the teacher's forward FORWARD_FLOPS N_T."""
    from distill.plan import FORWARD_FLOPS, training_flops_per_token

    k = training_flops_per_token(trainer.method, trainer.gradient_checkpointing)
    sampling = FORWARD_FLOPS * params["student"] * arm["tokens"] if on_policy else 0
    student = k * params["student"] * arm["tokens"] + sampling
    teacher = FORWARD_FLOPS * params["teacher"] * arm["teacher_tokens"]
    return {"student": student, "teacher": teacher, "total": student + teacher}


def parameters(model: str) -> float:
    from distill.models import resolve_model
    from distill.sft.modeling import count_parameters

    counts, _ = count_parameters(resolve_model(model), SFTConfig(model=model, method="full"))
    return float(counts.total)


# ------------------------------------------------------------------------------------------------ main
def main_kd(*, quick: bool = False, run_dir: Path | None = None, progress: bool = True,
            overrides: list[str] | None = None, teacher_run_dir: Path | None = None) -> dict[str, Any]:
    """Run every arm and the evaluation, print the comparison, write compare.json and compare.png."""
    import os

    from rich.console import Console

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything it needs ships with the package
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    config = compare_config(quick=quick, overrides=overrides)
    run_dir = Path(run_dir or ("runs/demo-kd-quick" if quick else "runs/demo-kd")).resolve()
    console = Console(stderr=True)
    from distill.models import check_model_spec

    # A mistyped model stops here, before the teacher is made or any arm's folder is touched.
    for spec in (config.student, config.teacher):
        if spec is not None:
            check_model_spec(spec)
    teacher, teacher_s = make_teacher(config, teacher_run_dir, progress)

    started = time.monotonic()
    arms = {"grpo": run_grpo(config, run_dir / "grpo", progress),
            "opd": run_opd(config, teacher, run_dir / "opd", progress)}
    if config.mix_weight is not None:
        arms["opd+reward"] = run_opd(config, teacher, run_dir / "opd-reward", progress,
                                     rewards=[RewardConfig(name="accuracy", weight=config.mix_weight)])
    target = round(sum(a["tokens"] for a in arms.values()) / len(arms))
    arms = {"sft": run_sft(config, teacher, run_dir / "sft", target, progress), **arms}
    models = {"base": config.student, "teacher": teacher, **{name: arm["policy"] for name, arm in arms.items()}}
    evaluation = score(config, models, run_dir / "eval", progress)
    wall = time.monotonic() - started

    bench = config.eval.benchmarks[0].name
    per_problem = {label: [row["correct"] / row["n"] for row in read_jsonl(evaluation.results[label][bench])]
                   for label in models}
    params = {"student": parameters(config.student), "teacher": parameters(teacher)}
    trainers = {"sft": config.sft, "grpo": config.rl, "opd": config.kd, "opd+reward": config.kd}
    result = {
        "benchmark": bench, "k": config.eval.k, "problems": len(per_problem["base"]), "quick": quick,
        "teacher": teacher, "teacher_seconds": round(teacher_s, 1), "student": config.student,
        "target_tokens": target, "wall_s": round(wall, 1), "run_dir": str(run_dir),
        "pass@1": {label: evaluation.scores["scores"][label][bench]["pass@1"] for label in models},
        "arms": {name: {**arm, "flops": flops(params, arm, trainers[name], on_policy=name != "sft")}
                 for name, arm in arms.items()},
        "pairs": pairwise(per_problem, config.eval.sampling.seed or 0),
    }
    result["verdict"] = verdict(result)
    plot_arms(result, run_dir / "compare.png")
    atomic_write_json(run_dir / "compare.json", result)
    console.rule("[bold]demo --kd result")
    console.print(describe(result), highlight=False)
    return result


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    """The arm with the highest pass@1, and whether each other arm is clearly below it (paired interval)."""
    arms = list(result["arms"])
    best = max(arms, key=lambda a: result["pass@1"][a]["value"])
    clearly = {}
    for other in (a for a in arms if a != best):
        key = f"{best} - {other}" if f"{best} - {other}" in result["pairs"] else f"{other} - {best}"
        d = result["pairs"][key]
        low = d["ci_low"] if key.startswith(best) else -d["ci_high"]
        clearly[other] = low > 0
    return {"best": best, "clearly_better_than": [a for a, yes in clearly.items() if yes],
            "not_separated_from": [a for a, yes in clearly.items() if not yes]}


def describe(result: dict[str, Any]) -> str:
    p, arms = result["pass@1"], result["arms"]
    lines = [f"held-out '{result['benchmark']}' ({result['problems']} problems), pass@1 over k={result['k']} samples,",
             "95% CI; per arm: student training tokens, FLOPs (student, teacher), wall seconds",
             f"  {'model':10s} {'pass@1':6s} {'95% CI':14s} {'tokens':>6s} {'student':>7s} {'teacher':>7s} {'wall':>5s}"]
    for label in p:
        arm = arms.get(label)
        cells = (f"{arm['tokens']:6d} {arm['flops']['student']:7.1e} {arm['flops']['teacher']:7.1e} "
                 f"{arm['seconds']:5.0f}") if arm else ""
        lines.append(f"  {label:10s} {p[label]['value']:.3f}  [{p[label]['ci_low']:.3f}, {p[label]['ci_high']:.3f}] "
                     f"{cells}".rstrip())
    lines.append("paired differences, 95% CI:")
    for key, d in result["pairs"].items():
        if not key.endswith("- teacher"):
            lines.append(f"  {key:19s} {d['value']:+.3f}  [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")
    v = result["verdict"]
    said = f"[bold]{v['best']}[/] scores highest"
    if v["clearly_better_than"]:
        said += f"; clearly above {', '.join(v['clearly_better_than'])}"
    if v["not_separated_from"]:
        said += f"; not separated from {', '.join(v['not_separated_from'])} (the interval includes 0)"
    lines.append(said)
    lines.append(f"arms and eval {result['wall_s']:.0f} s ({result['wall_s'] / 60:.1f} min), teacher "
                 f"{result['teacher_seconds']:.0f} s; plot: {Path(result['run_dir']) / 'compare.png'}")
    return "\n".join(lines)


def plot_arms(result: dict[str, Any], path: Path) -> None:
    """Each arm's own training signal against the student training tokens, side by side."""
    from distill.plots import pyplot, save_figure

    panels = [("SFT: loss on the teacher's traces", ["sft"], ["loss"]),
              ("KL(student || teacher) on its samples", ["opd", "opd+reward"], ["kl_exact"]),
              ("accuracy of the student's samples", ["grpo", "opd+reward"], ["accuracy", "reward/accuracy"])]
    figure, axes = pyplot().subplots(1, 3, figsize=(15, 4))
    for axis, (title, names, keys) in zip(axes, panels):
        for name in (n for n in names if n in result["arms"]):
            rows = read_jsonl(result["arms"][name]["log"])
            points = [(r.get("tokens") or r.get("num_tokens"), next(r[k] for k in keys if k in r)) for r in rows
                      if any(k in r for k in keys) and (r.get("tokens") or r.get("num_tokens"))]
            if points:
                axis.plot(*zip(*points), marker="o", markersize=3, label=name)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("student training tokens")
        if axis.lines:
            axis.legend()
    save_figure(figure, path)
