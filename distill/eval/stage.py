"""`distill eval`: k samples per benchmark problem for each model, verified, scored side by side.

For each model (outer loop, so one engine serves all its benchmarks) and each benchmark:
  1. generate k samples per problem through `distill.generation` (same backends and seeded sampling as
     the teacher) into OUT/<model>/<bench>.traces.jsonl, which resumes after a crash;
  2. verify every sample with the filter's verifiers into OUT/<model>/<bench>.verdicts.jsonl (resumes
     too: code tests run in the sandbox and are worth not repeating);
  3. write one line per problem to OUT/<model>/<bench>.results.jsonl (n, correct, pass@j, the vote).
Then OUT/scores.json holds every model x benchmark score with its 95% interval, the paired
difference of each model against the first one (the base), and what reproduces the numbers
(`reproduce`: benchmark digests, templates, sampling, seeds, verifier and library versions;
distill.eval.provenance). `distill.eval.rescore` judges the stored samples again without generating.

A model is a bundled name, hub id, folder, .gguf, or a LoRA adapter folder (merged once into
OUT/<model>/merged so every backend can serve it). `label=spec` names a model in the table; `base` and
`student` are aliases the pipeline fills in from the recipe.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from distill.benchmarks import as_problem_file
from distill.config import BenchmarkConfig, EvalConfig, GenerateConfig, config_hash
from distill.errors import DistillError
from distill.eval import metrics
from distill.eval.judge import judge_pool, judge_traces
from distill.eval.models import model_identity, parse_models, prepare_model, slug
from distill.eval.provenance import reproduce_record
from distill.eval.scoring import score_benchmark
from distill.eval.table import scores_table
from distill.files import atomic_write_json, file_digest, move_aside, read_json
from distill.generation import generate
from distill.models import check_model_spec, shown_model
from distill.problems import load_problems
from distill.records import Problem
from distill.verify.code import isolation_report


@dataclass
class EvalResult:
    output_dir: Path
    scores_path: Path
    scores: dict[str, Any]                                        # scores.json content
    results: dict[str, dict[str, Path]] = field(default_factory=dict)  # label -> bench -> results.jsonl

    def value(self, label: str, bench: str, metric: str = "pass@1") -> float:
        return self.scores["scores"][label][bench][metric]["value"]


# ----------------------------------------------------------------------------------------- generation
def generation_config(config: EvalConfig, model_path: str, bench: BenchmarkConfig, output: Path) -> GenerateConfig:
    """The eval's sampling, through the same GenerateConfig the teacher uses: k samples a problem."""
    return GenerateConfig(
        model=model_path, backend=config.backend, problems=bench.path, output=output,
        sampling=config.sampling.model_copy(update={"n": config.k}), prompts=config.prompts,
        limit=bench.limit, vllm=config.vllm, openai=config.openai, hf=config.hf,
        executor=config.executor, ray=config.ray)


def _retire_stale(meta_path: Path, meta: dict[str, Any], files: list[Path]) -> None:
    """Old samples from another model or config must not be resumed into this one: move them aside."""
    if meta_path.exists():
        old = read_json(meta_path)
        if old == meta:
            return
        move_aside(files, meta_path.parent / "stale", meta_path.name.removesuffix(".meta.json"))
    atomic_write_json(meta_path, meta)


# ----------------------------------------------------------------------------------------------- main
def evaluate(config: EvalConfig, *, progress: bool = True, aliases: dict[str, str] | None = None,
             console=None) -> EvalResult:
    """Score every model on every benchmark (see module doc); prints the side-by-side table."""
    if config.output_dir is None:
        raise DistillError("eval: output_dir is not set (set eval.output_dir or pass --out-dir)")
    if not config.benchmarks:
        raise DistillError("eval: no benchmarks; pass --bench NAME=PROBLEMS.jsonl or set eval.benchmarks")
    names = [b.name for b in config.benchmarks]
    if len(set(names)) != len(names):
        raise DistillError(f"eval: benchmark names must be unique, got {names}")
    out = Path(config.output_dir)
    refs = parse_models(config.models, aliases)
    if config.backend != "openai":  # a served model's name is the server's business
        for ref in refs:  # a mistyped student folder stops now, not after the base model has been scored
            check_model_spec(ref.spec)
    # Named benchmarks and dataset specs become Problem JSONL files that generate and the meta hash can read,
    # so each is read back through the one Problem reader.
    config = config.model_copy(update={"benchmarks": [as_problem_file(b, out / "benchmarks") for b in config.benchmarks]})
    problem_sets = {b.name: load_problems(b.path, limit=b.limit, label=f"benchmark '{b.name}'")
                    for b in config.benchmarks}
    # Refuses weak isolation before any model is sampled; the layers go into scores.json.
    sandbox = {b.name: isolation_report(config.sandbox, problem_sets[b.name].values()) for b in config.benchmarks}
    seed = config.sampling.seed

    scores: dict[str, dict[str, Any]] = {}
    pass1: dict[str, dict[str, list[float]]] = {}
    models_meta: dict[str, dict[str, str]] = {}
    results: dict[str, dict[str, Path]] = {}
    with judge_pool() as pool:
        for ref in refs:
            _score_model(ref, config, out, problem_sets, pool, progress, scores, pass1, models_meta, results)

    deltas = paired_deltas([ref.label for ref in refs], [b.name for b in config.benchmarks], pass1, seed)

    document = {
        "k": config.k, "sampling": config.sampling.model_dump(mode="json"), "backend": config.backend,
        "config_hash": config_hash(config), "models": models_meta,
        "benchmarks": {b.name: {"path": str(b.path), "problems": len(problem_sets[b.name])}
                       for b in config.benchmarks},
        "scores": scores, "deltas": deltas,
        "sandbox": {name: report for name, report in sandbox.items() if report is not None},
        "reproduce": reproduce_record(config, problem_sets, models_meta),
    }
    scores_path = out / "scores.json"
    atomic_write_json(scores_path, document)
    if progress:
        (console or Console(stderr=True)).print(scores_table(document))
    return EvalResult(out, scores_path, document, results)


def paired_deltas(labels: list[str], benches: list[str], pass1: dict[str, dict[str, list[float]]],
                  seed: int) -> dict[str, dict[str, Any]]:
    """Each model against the first (the base): paired over the same problems, so the interval is tight."""
    deltas: dict[str, dict[str, Any]] = {}
    for label in labels[1:]:
        for bench in benches:
            diff = metrics.paired_difference(pass1[label][bench], pass1[labels[0]][bench], seed=seed)
            deltas.setdefault(label, {})[bench] = {"pass@1": diff.to_json(), "against": labels[0]}
    return deltas


def _score_model(ref, config: EvalConfig, out: Path, problem_sets: dict[str, dict[str, Problem]], pool,
                 progress: bool, scores: dict, pass1: dict, models_meta: dict, results: dict) -> None:
    """One model on every benchmark: generate (resuming), judge, score; fills the four tables by label."""
    folder = out / slug(ref.label)
    folder.mkdir(parents=True, exist_ok=True)
    path = prepare_model(ref, folder, config.backend)
    models_meta[ref.label] = {"model": shown_model(ref.spec), "path": path}
    for bench in config.benchmarks:
        traces = folder / f"{bench.name}.traces.jsonl"
        verdicts = folder / f"{bench.name}.verdicts.jsonl"
        gen = generation_config(config, path, bench, traces)
        meta = {"generate_hash": config_hash(gen), "model": model_identity(path), "problems": str(bench.path),
                "problems_sha256": file_digest(bench.path), "limit": bench.limit,
                "verify": [config.math_timeout_s, config.sandbox.model_dump()]}
        _retire_stale(folder / f"{bench.name}.meta.json", meta, [traces, verdicts])
        generate(gen, progress=progress)
        problems = problem_sets[bench.name]
        judge_traces(pool, traces, verdicts, problems, config.k, config.math_timeout_s, config.sandbox, progress)
        results_path = folder / f"{bench.name}.results.jsonl"
        bench_scores, bench_pass1 = score_benchmark(verdicts, results_path, problems, config.k,
                                                    config.sampling.seed)
        scores.setdefault(ref.label, {})[bench.name] = bench_scores
        pass1.setdefault(ref.label, {})[bench.name] = bench_pass1
        results.setdefault(ref.label, {})[bench.name] = results_path
