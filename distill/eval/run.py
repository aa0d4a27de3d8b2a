"""`distill eval`: k samples per benchmark problem for each model, verified, scored side by side.

For each model (outer loop, so one engine serves all its benchmarks) and each benchmark:
  1. generate k samples per problem through `distill.generation` (same backends and seeded sampling as
     the teacher) into OUT/<model>/<bench>.traces.jsonl, which resumes after a crash;
  2. verify every sample with the filter's verifiers into OUT/<model>/<bench>.verdicts.jsonl (resumes
     too: code tests run in the sandbox and are worth not repeating);
  3. write one line per problem to OUT/<model>/<bench>.results.jsonl (n, correct, pass@j, the vote).
Then OUT/scores.json holds every model x benchmark score with its 95% interval, and the paired
difference of each model against the first one (the base).

A model is a bundled name, hub id, folder, .gguf, or a LoRA adapter folder (merged once into
OUT/<model>/merged so every backend can serve it). `label=spec` names a model in the table; `base` and
`student` are aliases the pipeline fills in from the recipe.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.config import BenchmarkConfig, EvalConfig, GenerateConfig, config_hash
from distill.errors import DistillError
from distill.eval import metrics
from distill.jsonl import JsonlWriter, atomic_write_json, atomic_write_text, read_jsonl
from distill.records import Problem, Trace, trace_key

VERIFY_BATCH = 64  # verdicts written per batch: bounds memory and the work a crash can lose


@dataclass(frozen=True)
class ModelRef:
    label: str  # column name in the table, folder name under OUT
    spec: str   # what the user wrote (after alias expansion)


@dataclass
class EvalResult:
    output_dir: Path
    scores_path: Path
    scores: dict[str, Any]                                        # scores.json content
    results: dict[str, dict[str, Path]] = field(default_factory=dict)  # label -> bench -> results.jsonl

    def value(self, label: str, bench: str, metric: str = "pass@1") -> float:
        return self.scores["scores"][label][bench][metric]["value"]


# --------------------------------------------------------------------------------------------- models
def slug(text: str) -> str:
    """A folder-safe name: 'runs/x/student/merged' -> 'runs-x-student-merged'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return name[-80:] or "model"


def parse_models(entries: list[str], aliases: dict[str, str] | None = None) -> list[ModelRef]:
    """`label=spec`, an alias (`base`, `student`) or a bare spec; labels must be unique."""
    aliases = aliases or {}
    if not entries:
        if not aliases:
            raise DistillError("eval: no models given; pass --models (e.g. bundled:smollm2-135m-instruct,"
                               "runs/demo/student/merged) or set eval.models")
        entries = list(aliases)
    refs: list[ModelRef] = []
    for entry in entries:
        label, sep, spec = entry.partition("=")
        if not sep:
            label, spec = entry, entry
        label, spec = label.strip(), spec.strip()
        if spec in aliases:
            spec = aliases[spec]
        elif not sep and label in ("base", "student"):
            raise DistillError(f"eval: '{label}' is an alias that only `distill run` (or a recipe) defines; "
                               f"pass the model itself, e.g. {label}=runs/demo/student/merged")
        refs.append(ModelRef(label if sep or entry in aliases else slug(spec), spec))
    labels = [r.label for r in refs]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise DistillError(f"eval: two models share the label {duplicates}; name them with label=MODEL")
    return refs


def fingerprint(path: str) -> str:
    """Identity of a model's weights: names, sizes and mtimes of a folder's files, or the spec itself.

    A retrained student keeps its folder but not its mtimes, so its old samples are recognised as stale.
    """
    folder = Path(path)
    if not folder.is_dir():
        return hashlib.sha256(path.encode()).hexdigest()[:12]
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()[:16]


def prepare_model(ref: ModelRef, folder: Path, backend: str) -> str:
    """What the generate stage loads for `ref`: resolved, with a LoRA adapter merged once into `folder`."""
    if backend == "openai":
        return ref.spec  # the server's model name; nothing local to load
    from distill.models import resolve_model

    path = resolve_model(ref.spec)
    adapter = Path(path)
    if adapter.is_dir() and (adapter / "adapter_config.json").exists() and not (adapter / "config.json").exists():
        return merge_adapter(adapter, folder / "merged")
    return path


def merge_adapter(adapter: Path, target: Path) -> str:
    """Fold a LoRA adapter into its base so vLLM and transformers serve it like any model.

    Done once: `target/.adapter` records which adapter (by fingerprint) the folder was merged from.
    """
    stamp = fingerprint(str(adapter))
    if (target / "config.json").exists() and (target / ".adapter").exists() \
            and (target / ".adapter").read_text() == stamp:
        return str(target)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.models import resolve_model
    from distill.sft.merge import ensure_stop_token, publish_dir

    base_spec = read_json(adapter / "adapter_config.json").get("base_model_name_or_path")
    if not base_spec:
        raise DistillError(f"{adapter}/adapter_config.json: no base_model_name_or_path; cannot merge the adapter")
    base_path = resolve_model(base_spec)
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path, dtype="auto"),
                                       str(adapter)).merge_and_unload()
    # An adapter saved without its tokenizer uses the base model's.
    tokenizer = AutoTokenizer.from_pretrained(adapter if (adapter / "tokenizer_config.json").exists() else base_path)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if tokenizer.eos_token_id is not None:
        ensure_stop_token(tmp, tokenizer.eos_token_id)
    (tmp / ".adapter").write_text(stamp)
    del merged
    return str(publish_dir(tmp, target))


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
        stale = meta_path.parent / "stale" / time.strftime("%Y%m%d-%H%M%S")
        for path in files:
            if path.exists():
                stale.mkdir(parents=True, exist_ok=True)
                path.rename(stale / path.name)
    atomic_write_json(meta_path, meta)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DistillError(f"{path}: unreadable JSON ({exc})") from None


# --------------------------------------------------------------------------------------- verification
def answer_text(trace: Trace) -> str:
    """What gets verified: the text after the reasoning, as in R1; the whole completion when the model
    never closed its reasoning (a base model that does not know the <think> format still gets judged
    on the answer it wrote, so base and student are compared on the same footing)."""
    return trace.answer if trace.answer.strip() else trace.completion


def load_problems(bench: BenchmarkConfig) -> dict[str, Problem]:
    if not Path(bench.path).exists():
        raise DistillError(f"benchmark '{bench.name}': {bench.path}: no such file")
    problems: dict[str, Problem] = {}
    for problem in read_jsonl(bench.path, Problem):
        if bench.limit is not None and len(problems) >= bench.limit:
            break
        if problem.id in problems:
            raise DistillError(f"benchmark '{bench.name}': {bench.path}: problem id '{problem.id}' appears twice")
        problems[problem.id] = problem
    if not problems:
        raise DistillError(f"benchmark '{bench.name}': {bench.path} holds no problems")
    return problems


def _batches(items: Iterator[Trace], size: int) -> Iterator[list[Trace]]:
    batch: list[Trace] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def verify_traces(traces_path: Path, verdicts_path: Path, problems: dict[str, Problem], k: int,
                  config: EvalConfig, progress: bool) -> None:
    """Append a verdict for every sample not yet judged (resumes by problem#sample)."""
    from distill.verify import extract_final_answer, verify_many

    with JsonlWriter(verdicts_path, key=lambda r: trace_key(r["problem_id"], r["sample"])) as writer:
        todo = (t for t in read_jsonl(traces_path, Trace)
                if t.problem_id in problems and t.sample < k and not writer.has(t.key))
        total = sum(1 for t in read_jsonl(traces_path, Trace)
                    if t.problem_id in problems and t.sample < k and not writer.has(t.key))
        with ProgressBar(progress, f"verify {verdicts_path.parent.name}/{verdicts_path.name.split('.')[0]}",
                       total) as advance:
            for batch in _batches(todo, VERIFY_BATCH):
                pairs = [(problems[t.problem_id], answer_text(t)) for t in batch]
                verdicts = verify_many(pairs, math_timeout_s=config.math_timeout_s, sandbox=config.sandbox)
                for trace, (problem, text), verdict in zip(batch, pairs, verdicts):
                    vote = extract_final_answer(problem, text, math_timeout_s=config.math_timeout_s)
                    writer.write({
                        "problem_id": trace.problem_id, "sample": trace.sample, "passed": verdict.passed,
                        "check": verdict.check, "detail": verdict.detail, "extracted": verdict.extracted,
                        "vote": vote, "completion_tokens": trace.completion_tokens,
                        "finish_reason": trace.finish_reason,
                    })
                writer.flush()
                advance(len(batch))


class ProgressBar:
    """A rich progress bar (with rate) for a known amount of work, or nothing when progress is off."""

    def __init__(self, enabled: bool, label: str, total: int):
        self.enabled, self.label, self.total = enabled and total > 0, label, total

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=self.total, rate="")
        self.start = time.monotonic()
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            rate = done[0] / max(time.monotonic() - self.start, 1e-9)
            self.bar.update(self.task, advance=n, rate=f"{rate:.1f} samples/s")

        return advance

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()


# -------------------------------------------------------------------------------------------- scoring
def score_benchmark(verdicts_path: Path, results_path: Path, problems: dict[str, Problem], k: int,
                    seed: int) -> tuple[dict[str, Any], list[float]]:
    """Per-problem results file and the benchmark's scores; returns (scores, per-problem pass@1)."""
    samples: dict[str, dict[int, dict]] = {pid: {} for pid in problems}
    tokens, truncated, no_answer, count = 0, 0, 0, 0
    for row in read_jsonl(verdicts_path):
        if row["problem_id"] in samples and row["sample"] < k:
            samples[row["problem_id"]][row["sample"]] = row
    lines, per_problem, pass1 = [], [], []
    for pid, problem in problems.items():  # benchmark order, so results files line up across models
        rows = [samples[pid][s] for s in sorted(samples[pid])]
        if not rows:
            continue
        answers = [r["vote"] for r in rows]
        passed = [bool(r["passed"]) for r in rows]
        score = metrics.score_problem(answers, passed)
        per_problem.append(score)
        pass1.append(score.correct / score.n)
        tokens += sum(r.get("completion_tokens") or 0 for r in rows)
        truncated += sum(r.get("finish_reason") == "length" for r in rows)
        no_answer += sum(a is None for a in answers)
        count += len(rows)
        lines.append(json.dumps({
            "problem_id": pid, "n": score.n, "correct": score.correct,
            **{f"pass@{j}": round(score.pass_at(j), 6) for j in metrics.ks_to_report(score.n)},
            "cons_answer": score.vote.answer, "cons_votes": score.vote.votes, "cons_correct": score.vote.correct,
            "gold": problem.answer, "answers": answers, "passed": passed,
        }, ensure_ascii=False) + "\n")
    atomic_write_text(results_path, "".join(lines))
    if len(per_problem) < len(problems):
        raise DistillError(f"{verdicts_path}: {len(problems) - len(per_problem)} problems have no verified "
                           "sample; the generation did not finish (rerun to resume)")
    scores = {name: est.to_json() for name, est in metrics.aggregate(per_problem, k, seed=seed).items()}
    scores.update({
        "problems": len(per_problem), "samples": count,
        "mean_completion_tokens": round(tokens / max(count, 1), 1),
        "truncated_frac": round(truncated / max(count, 1), 4),
        "no_answer_frac": round(no_answer / max(count, 1), 4),
    })
    return scores, pass1


# ----------------------------------------------------------------------------------------------- main
def evaluate(config: EvalConfig, *, progress: bool = True, aliases: dict[str, str] | None = None,
             console=None) -> EvalResult:
    """Score every model on every benchmark (see module doc); prints the side-by-side table."""
    from distill.generation import generate

    if config.output_dir is None:
        raise DistillError("eval: output_dir is not set (set eval.output_dir or pass --out-dir)")
    if not config.benchmarks:
        raise DistillError("eval: no benchmarks; pass --bench NAME=PROBLEMS.jsonl or set eval.benchmarks")
    names = [b.name for b in config.benchmarks]
    if len(set(names)) != len(names):
        raise DistillError(f"eval: benchmark names must be unique, got {names}")
    out = Path(config.output_dir)
    refs = parse_models(config.models, aliases)
    problem_sets = {b.name: load_problems(b) for b in config.benchmarks}
    seed = config.sampling.seed

    scores: dict[str, dict[str, Any]] = {}
    pass1: dict[str, dict[str, list[float]]] = {}
    models_meta: dict[str, dict[str, str]] = {}
    results: dict[str, dict[str, Path]] = {}
    for ref in refs:
        folder = out / slug(ref.label)
        folder.mkdir(parents=True, exist_ok=True)
        path = prepare_model(ref, folder, config.backend)
        models_meta[ref.label] = {"model": ref.spec, "path": path}
        for bench in config.benchmarks:
            traces = folder / f"{bench.name}.traces.jsonl"
            verdicts = folder / f"{bench.name}.verdicts.jsonl"
            gen = generation_config(config, path, bench, traces)
            meta = {"generate_hash": config_hash(gen), "model": fingerprint(path), "problems": str(bench.path),
                    "problems_sha256": file_sha256(Path(bench.path)), "limit": bench.limit,
                    "verify": [config.math_timeout_s, config.sandbox.model_dump()]}
            _retire_stale(folder / f"{bench.name}.meta.json", meta, [traces, verdicts])
            generate(gen, progress=progress)
            problems = problem_sets[bench.name]
            verify_traces(traces, verdicts, problems, config.k, config, progress)
            results_path = folder / f"{bench.name}.results.jsonl"
            bench_scores, bench_pass1 = score_benchmark(verdicts, results_path, problems, config.k, seed)
            scores.setdefault(ref.label, {})[bench.name] = bench_scores
            pass1.setdefault(ref.label, {})[bench.name] = bench_pass1
            results.setdefault(ref.label, {})[bench.name] = results_path

    # Each model against the first (the base): paired over the same problems, so the interval is tight.
    deltas: dict[str, dict[str, Any]] = {}
    first = refs[0].label
    for ref in refs[1:]:
        for bench in config.benchmarks:
            diff = metrics.paired_difference(pass1[ref.label][bench.name], pass1[first][bench.name], seed=seed)
            deltas.setdefault(ref.label, {})[bench.name] = {"pass@1": diff.to_json(), "against": first}

    document = {
        "k": config.k, "sampling": config.sampling.model_dump(mode="json"), "backend": config.backend,
        "config_hash": config_hash(config), "models": models_meta,
        "benchmarks": {b.name: {"path": str(b.path), "problems": len(problem_sets[b.name])}
                       for b in config.benchmarks},
        "scores": scores, "deltas": deltas,
    }
    scores_path = out / "scores.json"
    atomic_write_json(scores_path, document)
    if progress:
        from rich.console import Console

        from distill.eval.table import scores_table

        (console or Console(stderr=True)).print(scores_table(document))
    return EvalResult(out, scores_path, document, results)
