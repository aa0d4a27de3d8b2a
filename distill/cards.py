"""Dataset and model cards in the Hugging Face format (YAML front matter + markdown), with PNG plots.

A dataset card goes beside every filtered dataset (FILTER_DIR/README.md): provenance (teacher, prompts,
sampling), the filter funnel, the token-length histogram and reject reasons as plots, the
decontamination report and the license. A model card goes beside every student (STUDENT_DIR/README.md):
recipe, data, training curve and the evaluation table. Both read only files the stages wrote, so a card
can be rebuilt at any time from a run directory.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from distill.config import GenerateConfig, Recipe, RLConfig, SFTConfig, dump_yaml
from distill.files import atomic_write_text, read_json_if_any, shown_path
from distill.jsonl import count_lines, read_jsonl
from distill.plots import pyplot, save_figure

# Licenses of the models this project bundles; anything else is the user's to state.
# "gemma" is the Hub's license id for the Gemma terms of use, which bind models trained from Gemma too.
KNOWN_LICENSES = {"bundled:smollm2-135m-instruct": "apache-2.0", "bundled:tiny": "apache-2.0",
                  "bundled:gemma3-270m": "gemma"}
LICENSE_LINKS = {"gemma": "https://ai.google.dev/gemma/terms"}
# The Hub model a bundled one comes from, for the model card's `base_model` (the Hub links it).
UPSTREAM = {"bundled:smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "bundled:gemma3-270m": "google/gemma-3-270m"}


def _front_matter(meta: dict[str, Any]) -> str:
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n"


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


# ---------------------------------------------------------------------------------------------- plots
def plot_token_lengths(kept: Path, rejected: Path, out: Path) -> Path | None:
    """Histogram of completion tokens, kept against rejected (streams the files: ints only in memory)."""
    lengths = {name: [r.get("completion_tokens", 0) for r in read_jsonl(path)]
               for name, path in (("kept", kept), ("rejected", rejected)) if path.exists()}
    if not any(lengths.values()):
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    top = max(max(v) for v in lengths.values() if v) or 1
    bins = list(range(0, top + max(1, top // 30) + 1, max(1, top // 30)))
    # Rejected as a filled area, kept as an outline on top: kept is usually the much smaller set.
    if lengths.get("rejected"):
        ax.hist(lengths["rejected"], bins=bins, alpha=0.45, color="tab:red",
                label=f"rejected ({len(lengths['rejected'])})")
    if lengths.get("kept"):
        ax.hist(lengths["kept"], bins=bins, histtype="step", linewidth=2, color="tab:green",
                label=f"kept ({len(lengths['kept'])})")
    ax.set_xlabel("completion tokens")
    ax.set_ylabel("traces")
    ax.set_title("Trace length")
    ax.legend()
    return save_figure(fig, out)


def plot_reject_reasons(stats: dict[str, Any], out: Path) -> Path | None:
    """Bar chart: how many traces each check failed (a trace can fail several)."""
    failed = Counter(stats.get("failed", {}))
    if not failed:
        return None
    plt = pyplot()
    names, counts = zip(*failed.most_common())
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(names) + 1.2), dpi=110)
    ax.barh(list(reversed(names)), list(reversed(counts)), color="tab:red", alpha=0.7)
    ax.set_xlabel("traces failing the check")
    ax.set_title("Reject reasons")
    return save_figure(fig, out)


def read_training_log(log_path: Path | None) -> list[dict[str, Any]]:
    """Trainer log entries from a JSONL file or a JSON list (trainer_state.json's log_history works too)."""
    if log_path is None or not Path(log_path).exists():
        return []
    path = Path(log_path)
    if path.suffix == ".jsonl":
        return [row for row in read_jsonl(path, on_error="skip")]
    data = read_json_if_any(path) or {}
    return data.get("log_history", []) if isinstance(data, dict) else list(data)


# --------------------------------------------------------------------------------------- dataset card
@dataclass
class DatasetCard:
    path: Path
    plots: dict[str, Path]


def funnel_markdown(stats: dict[str, Any]) -> str:
    rows = ["| step | removed | remaining |", "|---|---:|---:|"]
    for row in stats.get("funnel", []):
        rows.append(f"| {row['stage']} | {row.get('removed', '')} | {row['remaining']} |")
    return "\n".join(rows) + "\n"


def _decontam_markdown(report: dict[str, Any] | None, run_dir: Path | None) -> str:
    if report is None:
        return ("No decontamination was configured (`filter.decontaminate.against` is empty): the traces were "
                "not checked against any evaluation set.\n")
    def shown(entry: Any, field: str) -> Any:
        if isinstance(entry, dict) and isinstance(entry.get(field), str):
            return {**entry, field: shown_path(entry[field], run_dir)}
        return entry

    report = {**report, "against": [shown(a, "path") for a in report.get("against", [])],
              "matches": [shown(m, "benchmark") for m in report.get("matches", [])]}
    lines = ["```json", json.dumps(report, indent=2, ensure_ascii=False)[:4000], "```"]
    return "\n".join(lines) + "\n"


def _shown(template: str) -> str:
    """A template as the model sees it, placeholders left visible ('{{}}' is str.format's escaped '{}')."""
    try:
        return template.format(problem="{problem}", choices="{choices}")
    except (KeyError, IndexError, ValueError):
        return template


def write_dataset_card(filter_dir: Path, generate: GenerateConfig, *, problems_license: str | None = None,
                       name: str = "distilled-traces", eval_sets: list[str] | None = None,
                       run_dir: Path | None = None) -> DatasetCard:
    """README.md + plots/ in `filter_dir` (which holds kept.jsonl, rejected.jsonl, stats.json); file paths
    are shown relative to `run_dir` (see distill.files.shown_path)."""
    filter_dir = Path(filter_dir)
    stats = read_json_if_any(filter_dir / "stats.json") or {}
    decontam = read_json_if_any(filter_dir / "decontamination.json")
    kept = count_lines(filter_dir / "kept.jsonl")
    plots = {}
    for key, made in (("token_lengths", plot_token_lengths(filter_dir / "kept.jsonl", filter_dir / "rejected.jsonl",
                                                           filter_dir / "plots" / "token_lengths.png")),
                      ("reject_reasons", plot_reject_reasons(stats, filter_dir / "plots" / "reject_reasons.png"))):
        if made is not None:
            plots[key] = made
    teacher_license = KNOWN_LICENSES.get(generate.model, "other")
    meta = {
        "pretty_name": name,
        "license": teacher_license if problems_license is None else problems_license,
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["distillation", "reasoning", "chain-of-thought", "rejection-sampling", "synthetic"],
        "size_categories": [_size_category(kept)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "kept.jsonl"}]}],
    }
    s = generate.sampling
    prompts = generate.prompts
    body = [
        f"# {name}\n",
        (f"Chain-of-thought traces written by `{generate.model}` and kept only when verified: "
         f"{kept} kept of {kept + stats.get('rejected', 0)} generated.\n"),
        "## Provenance\n",
        f"- **Teacher:** `{generate.model}` (backend `{generate.backend}`)",
        f"- **Problems:** `{shown_path(generate.problems, run_dir) if generate.problems else None}`"
        + (f" (first {generate.limit})" if generate.limit else ""),
        (f"- **Sampling:** temperature {s.temperature}, top-p {s.top_p}, at most {s.max_tokens} tokens, "
         f"{s.n} samples a problem, seed {s.seed} (seeded per problem and sample: reruns reproduce the traces)"),
        "- **System prompt:** " + (f"`{prompts.system_prompt}`" if prompts.system_prompt else
                                    "none set (R1); the model's chat template may add its default one")
        + f"; assistant turn prefilled with `<think>\\n`: {'yes' if prompts.prefill_think else 'no'}",
        "- **User-turn templates** (per problem domain; `{problem}` marks where the problem goes):\n",
        *[f"  - {domain}: `{json.dumps(_shown(template), ensure_ascii=False)}`"
          for domain, template in prompts.templates.items()],
        "",
        "## Filter funnel\n",
        "Each rejected trace is counted at the first check it failed, in filter order.\n",
        funnel_markdown(stats),
    ]
    if stats.get("sandbox"):
        body.append("## Code verification\n\nSandbox layers on every run: "
                    + ", ".join(stats["sandbox"]["isolation"]) + ". Tests: "
                    + ", ".join(f"{n} {k}" for k, n in stats["sandbox"]["guarantees"].items()) + ".\n")
    if "token_lengths" in plots:
        body.append("![token lengths](plots/token_lengths.png)\n")
    if "reject_reasons" in plots:
        body.append("Every check a rejected trace failed (one trace can fail several):\n")
        body.append("![reject reasons](plots/reject_reasons.png)\n")
    body += [
        "## Decontamination\n",
        (f"Checked against: {', '.join(f'`{shown_path(e, run_dir)}`' for e in eval_sets)}.\n" if eval_sets else ""),
        _decontam_markdown(decontam, run_dir),
        "## Format\n",
        ("`kept.jsonl`: one verified trace a line (`problem_id`, `sample`, `teacher`, `prompt`, `completion`, "
         "`reasoning`, `answer`, `finish_reason`, token counts, `config_hash`, plus the filter's `kept`, "
         "`reasons`, `scores`). `rejected.jsonl` has the same fields and every failed check in `reasons`. "
         "SFT turns a row into `<think>\\n{reasoning}\\n</think>\\n\\n{answer}`.\n"),
        "## License\n",
        f"The traces are outputs of `{generate.model}` (license: {teacher_license}); the problems keep the "
        "license of their source" + (f" ({problems_license})" if problems_license else "") + ". "
        "See `data_cards/` in the distill repository for the sources the project ships.\n",
    ]
    path = filter_dir / "README.md"
    atomic_write_text(path, _front_matter(meta) + "\n".join(body))
    return DatasetCard(path, plots)


# ----------------------------------------------------------------------------------------- model card
def write_model_card(student_dir: Path, sft: SFTConfig, *, scores: dict[str, Any] | None = None,
                     training: dict[str, Any] | None = None, plot_path: Path | None = None,
                     dataset_card: Path | None = None, recipe: Recipe | None = None,
                     kept: int | None = None, run_dir: Path | None = None) -> Path:
    """README.md in the student folder: what it was trained from, on what, how, and how it scores (file
    paths relative to `run_dir`; the recipe block is the exact configuration, as run). `plot_path` is the
    training curve sft drew (RUN_DIR/student/training.png)."""
    from distill.eval.provenance import reproduce_markdown
    from distill.eval.table import markdown_table

    student_dir = Path(student_dir)
    curve = Path(plot_path) if plot_path is not None and Path(plot_path).exists() else None
    meta: dict[str, Any] = {
        "base_model": UPSTREAM.get(sft.model, sft.model),
        "library_name": "peft" if sft.method in ("lora", "qlora") else "transformers",
        "license": KNOWN_LICENSES.get(sft.model, "other"),
        **({"license_link": LICENSE_LINKS[license]} if (license := KNOWN_LICENSES.get(sft.model)) in LICENSE_LINKS
           else {}),
        "pipeline_tag": "text-generation",
        "tags": ["distillation", "reasoning", "distill", sft.method],
    }
    if scores:
        meta["model-index"] = [{"name": student_dir.name, "results": _model_index(scores)}]
    body = [
        f"# {recipe.name if recipe else student_dir.name}: distilled student\n",
        (recipe.description.strip() + "\n") if recipe and recipe.description else "",
        "## Training\n",
        f"- **Base model:** `{sft.model}`; method **{sft.method}**"
        + (f" (r={sft.lora.r}, alpha={sft.lora.alpha}, targets {sft.lora.target_modules})"
           if sft.method != "full" else ""),
        f"- **Data:** `{shown_path(sft.train_file, run_dir) if sft.train_file else None}`"
        + (f", {kept} verified traces" if kept is not None else "")
        + (f" (dataset card: `{shown_path(dataset_card, run_dir)}`)" if dataset_card else ""),
        f"- **Schedule:** {sft.epochs} epochs" + (f" / {sft.max_steps} steps" if sft.max_steps > 0 else "")
        + f", learning rate {sft.learning_rate} ({sft.lr_scheduler}, warmup {sft.warmup_ratio}), batch "
        f"{sft.per_device_batch_size} x {sft.gradient_accumulation_steps} accumulation, max length "
        f"{sft.max_length}, packing {sft.packing}, seed {sft.seed}",
        "- **Reproducibility:** " + ("deterministic: the same seed, data and machine give bitwise-identical "
                                     "weights (transformers full_determinism, examples in key order)"
                                     if sft.deterministic else "not deterministic (sft.deterministic=false)"),
        "- Loss on the assistant turn only (`<think>\\n{reasoning}\\n</think>\\n\\n{answer}`, EOS included).\n",
    ]
    if training:
        scalars = {k: v for k, v in training.items() if isinstance(v, (int, float, str)) and k != "model"}
        body += ["| metric | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in scalars.items()], ""]
    if curve is not None:
        shown = curve.relative_to(student_dir) if curve.is_relative_to(student_dir) else curve
        body.append(f"![training curve]({shown})\n")
    body.append("## Evaluation\n")
    if scores:
        sampling = scores["sampling"]
        body += [(f"k={scores['k']} samples a problem (temperature {sampling['temperature']}, top-p "
                  f"{sampling['top_p']}, at most {sampling['max_tokens']} tokens); pass@1 is the mean over the "
                  "k samples, cons@k the majority vote; [95% CI] bootstrap over problems (Wilson for 0/1 "
                  "scores); the last column is the paired difference against the base.\n"),
                 markdown_table(scores), *reproduce_markdown(scores)]
    else:
        body.append("Not evaluated yet: run `distill eval --models base=BASE,student=THIS_FOLDER --bench NAME=FILE`.\n")
    if recipe is not None:
        body += ["## Recipe\n", "```yaml", dump_yaml(recipe).strip(), "```\n"]
    if KNOWN_LICENSES.get(sft.model) == "gemma":
        body += ["## License\n", ("The base model is Gemma 3, provided under and subject to the Gemma Terms of Use "
                                  f"({LICENSE_LINKS['gemma']}); this student is a Model Derivative under those terms "
                                  "and its use must follow them and the Gemma Prohibited Use Policy.\n")]
    body += ["## Limitations\n",
             ("A student distilled from its own or a small teacher inherits that teacher's errors; scores "
              "hold for the evaluated benchmarks and sampling settings only.\n")]
    path = student_dir / "README.md"
    atomic_write_text(path, _front_matter(meta) + "\n".join(body))
    return path


def _model_index(scores: dict[str, Any]) -> list[dict[str, Any]]:
    label = next(reversed(scores["scores"]))  # the last model: the student in `base,student`
    results = []
    for bench, values in scores["scores"][label].items():
        metrics = [{"type": name, "name": f"{name} (k={scores['k']})", "value": round(v["value"], 4)}
                   for name, v in values.items() if isinstance(v, dict) and "value" in v]
        results.append({"task": {"type": "text-generation"},
                        "dataset": {"name": bench, "type": "json"}, "metrics": metrics})
    return results


# ---------------------------------------------------------------------------------------- policy card
def write_policy_card(policy_dir: Path, rl: RLConfig, *, training: dict[str, Any] | None = None,
                      scores: dict[str, Any] | None = None, log_path: Path | None = None,
                      recipe: Recipe | None = None, student_card: Path | None = None) -> Path:
    """README.md in the RL output folder: the GRPO stage (and the SFT card it continues), rewards, scores."""
    from distill.eval.provenance import reproduce_markdown
    from distill.eval.table import markdown_table

    policy_dir = Path(policy_dir)
    rows = read_training_log(log_path)
    meta = {"base_model": UPSTREAM.get(rl.model, rl.model), "pipeline_tag": "text-generation",
            "library_name": "peft" if rl.method in ("lora", "qlora") else "transformers",
            "tags": ["reasoning", "distill", "grpo", "rl", rl.method]}
    if scores:
        meta["model-index"] = [{"name": policy_dir.name, "results": _model_index(scores)}]
    first, last = (rows[0], rows[-1]) if rows else ({}, {})
    body = [
        f"# {recipe.name if recipe else policy_dir.name}: GRPO policy\n",
        (recipe.description.strip() + "\n") if recipe and recipe.description else "",
        "## RL stage (GRPO, rule-based rewards)\n",
        f"- **Started from:** `{rl.model}`" + (f" (its SFT card: `{student_card}`)" if student_card else
                                             " (no SFT stage: R1-Zero style)"),
        f"- **Method:** {rl.method}; template `{rl.template}`; problems `{rl.problems}`",
        "- **Rewards:** " + ", ".join(f"{r.name} x {r.weight}" for r in rl.rewards),
        f"- **GRPO:** {rl.prompts_per_step} problems x {rl.num_generations} completions a step, {rl.max_steps} "
        f"steps, beta {rl.beta}, clip {rl.epsilon}" + (f"/{rl.epsilon_high}" if rl.epsilon_high else "")
        + f", loss {rl.loss_type}, reward scaling {rl.scale_rewards}, temperature {rl.temperature}, max "
        f"completion {rl.max_completion_length} tokens, learning rate {rl.learning_rate}, seed {rl.seed}",
    ]
    if rows:
        body.append(f"- **Reward:** {first.get('reward', 0):.3f} at step {first['step']} -> "
                    f"{last.get('reward', 0):.3f} at step {last['step']} (per-step log: `log.jsonl`)\n")
        body.append("![rewards](rewards.png)\n")
    if training:
        scalars = {k: v for k, v in training.items() if isinstance(v, (int, float, str)) and k != "model"}
        body += ["| metric | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in scalars.items()], ""]
    body.append("## Evaluation\n")
    body += [markdown_table(scores), *reproduce_markdown(scores)] if scores else ["Not evaluated yet.\n"]
    if recipe is not None:
        body += ["## Recipe\n", "```yaml", dump_yaml(recipe).strip(), "```\n"]
    path = policy_dir / "README.md"
    atomic_write_text(path, _front_matter(meta) + "\n".join(body))
    return path
