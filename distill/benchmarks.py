"""Benchmarks by name: `distill eval --bench aime24` resolves to the public dataset, its fields and its answers.

Each entry names the public copy (hub id, config, split) and, where one ships beside the checkout, the offline
copy in `../shared/data` (or `$DISTILL_SHARED_DATA`), which is preferred so these work with no network. Rows
become Problems with the answer normalisation the benchmark needs:
  - AIME answers are integers 0-999, some stored with leading zeros ('025'): compared as integers;
  - AMC answers are stored as floats (142.0): written as the integer they are;
  - GPQA-Diamond's four options are shuffled with a fixed seed per question (its correct answer is always
    the first column), the gold answer being the letter the correct option lands on;
  - LiveCodeBench keeps its public test cases (a JSON list of {input, output, testtype}) in
    `meta["public_test_cases"]`; public and private cases (the private ones base64 + zlib + pickle, as
    published) become structured tests, run under LiveCodeBench's own import preamble and compared as
    its grader compares (`distill.verify.code_tests`). Its official hub id is a loading-script dataset that
    `datasets` 4+ refuses, so it is read from a local clone of the repository, else from its parquet
    conversion on the hub (lighteval/code_generation_lite), else from a datasets cache that already holds
    the official one; with none of them, one paragraph says what to download.
The R1 protocol (k samples a problem, temperature 0.6, top-p 0.95, 32k tokens) is EvalConfig's default;
`R1_K` is the k R1 reports for each (pass@1 as the mean over k).
"""
from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.config import BenchmarkConfig
from distill.errors import DistillError
from distill.files import atomic_write_text
from distill.problems import as_text, load_problems, stable_id, validate_problem
from distill.records import Problem
from distill.sources import SourceError, iter_rows
from distill.verify.code_tests import from_livecodebench

GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$")
GPQA_SEED = 0


@dataclass(frozen=True)
class Benchmark:
    name: str
    hub: str                                  # ORG/NAME[:CONFIG][/SPLIT], the public copy
    to_problem: Callable[[dict, str], Problem]
    domain: str
    shared: str | None = None                 # offline copy, relative to the shared data folder
    k: int = 4                                # R1's k for pass@1 on this benchmark
    rows: Callable[[str | Path | None], Iterator[tuple[str, dict]]] | None = None  # a reader of its own


def shared_data_dir() -> Path:
    env = os.environ.get("DISTILL_SHARED_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[1]  # the checkout; ../shared/data sits beside it
    return here.parent / "shared" / "data"


# ------------------------------------------------------------------------------------------ normalisers
def integer_answer(value: Any) -> str:
    """'025' -> '25', 142.0 -> '142', '142.0' -> '142'; anything else unchanged (as text)."""
    text = as_text(value).strip()
    if re.fullmatch(r"[+-]?\d+(\.0+)?", text):
        return str(int(float(text)))
    return text


def _need(row: dict, where: str, *names: str) -> list[Any]:
    missing = [n for n in names if row.get(n) is None]
    if missing:
        raise SourceError(f"{where}: missing field(s) {missing}; the row has {sorted(row)}")
    return [row[n] for n in names]


def _id(row: dict, where: str, prefix: str, *names: str) -> str:
    value = next((row[n] for n in names if row.get(n) is not None), None)
    return f"{prefix}-{as_text(value)}" if value is not None else f"{prefix}-{where.rsplit(' ', 1)[-1]}"


# ---------------------------------------------------------------------------------------------- rows
def aime(prefix: str) -> Callable[[dict, str], Problem]:
    def convert(row: dict, where: str) -> Problem:
        text = next((row[k] for k in ("problem", "Problem", "question") if isinstance(row.get(k), str)), None)
        answer = next((row[k] for k in ("answer", "Answer") if row.get(k) is not None), None)
        if text is None or answer is None:
            raise SourceError(f"{where}: expected an AIME row with 'problem' and 'answer'; it has {sorted(row)}")
        return validate_problem({"id": _id(row, where, prefix, "id", "ID"), "problem": text, "domain": "math",
                                 "answer": integer_answer(answer), "source": prefix,
                                 "meta": {k: row[k] for k in ("url", "year") if k in row}}, where)
    return convert


def amc(row: dict, where: str) -> Problem:
    text, answer = _need(row, where, "problem", "answer")
    return validate_problem({"id": _id(row, where, "amc23", "id"), "problem": text, "domain": "math",
                             "answer": integer_answer(answer), "source": "amc23",
                             "meta": {"url": row.get("url")}}, where)


def math500(row: dict, where: str) -> Problem:
    text, answer = _need(row, where, "problem", "answer")
    return validate_problem({"id": as_text(row.get("unique_id") or _id(row, where, "math500")), "problem": text,
                             "domain": "math", "answer": as_text(answer), "source": "math500",
                             "meta": {k: row[k] for k in ("subject", "level", "solution") if k in row}}, where)


def gsm8k(row: dict, where: str) -> Problem:
    question, solution = _need(row, where, "question", "answer")
    match = GSM8K_ANSWER.search(str(solution))
    if match is None:
        raise SourceError(f"{where}: field 'answer': expected GSM8K's worked solution ending in '#### N'")
    return validate_problem({"id": stable_id("gsm8k", question), "problem": question, "domain": "math",
                             "answer": match.group(1).replace(",", ""), "source": "gsm8k",
                             "meta": {"solution": solution}}, where)


def humaneval(row: dict, where: str) -> Problem:
    task_id, prompt, test, entry = _need(row, where, "task_id", "prompt", "test", "entry_point")
    problem = ("Complete the following Python function. Return the whole function, including the "
               f"signature, in one code block.\n\n```python\n{prompt}```")
    return validate_problem({"id": task_id, "problem": problem, "domain": "code",
                             "tests": f"{test}\ncheck({entry})\n", "entry_point": entry, "source": "humaneval",
                             "meta": {"prompt": prompt}}, where)


def gpqa(row: dict, where: str, seed: int = GPQA_SEED) -> Problem:
    question, correct, *wrong = _need(row, where, "Question", "Correct Answer", "Incorrect Answer 1",
                                      "Incorrect Answer 2", "Incorrect Answer 3")
    ident = as_text(row.get("Record ID") or _id(row, where, "gpqa"))
    options = [str(correct).strip()] + [str(w).strip() for w in wrong]
    order = list(range(4))
    random.Random(f"{seed}:{ident}").shuffle(order)  # per question, so a subset shuffles the same way
    choices = [options[i] for i in order]
    letter = "ABCD"[order.index(0)]
    return validate_problem({"id": ident, "problem": str(question).strip(), "domain": "mcq", "choices": choices,
                             "answer": letter, "source": "gpqa-diamond", "meta": {"shuffle_seed": seed}}, where)


def livecodebench(row: dict, where: str) -> Problem:
    content, qid = _need(row, where, "question_content", "question_id")
    public = row.get("public_test_cases") or "[]"
    try:
        public_tests = json.loads(public) if isinstance(public, str) else list(public)
    except json.JSONDecodeError:
        raise SourceError(f"{where}: field 'public_test_cases': expected a JSON list of "
                          "{input, output, testtype}") from None
    starter = row.get("starter_code") or ""
    problem = content + (f"\n\nStart from this code:\n```python\n{starter}\n```" if starter.strip() else
                         "\n\nRead the input from standard input and write the answer to standard output.")
    try:  # public and private cases become structured tests, compared outside the sandbox
        tests = from_livecodebench(row)
    except (ValueError, KeyError, TypeError) as exc:  # malformed cases, from JSON or the pickle
        raise SourceError(f"{where}: test cases: {exc}") from None
    meta = {"public_test_cases": public_tests, "starter_code": starter,
            **{k: row.get(k) for k in ("platform", "contest_date", "difficulty", "question_title", "metadata")}}
    return validate_problem({"id": f"lcb-{qid}", "problem": problem, "domain": "code", "source": "livecodebench",
                             "tests": tests, "meta": meta}, where)


# ------------------------------------------------------------------------------------ LiveCodeBench
LCB_RELEASE = "release_v5"
# The official repository's files, one per release increment: release_v5 is the first five.
LCB_FILES = ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl")
LCB_LOCAL = "livecodebench/code_generation_lite"   # a clone, under the shared data folder
LCB_HUB = (f"lighteval/code_generation_lite:{LCB_RELEASE}/test",        # the parquet conversion
           f"livecodebench/code_generation_lite:{LCB_RELEASE}/test")    # the official id, from a cache


def livecodebench_missing() -> str:
    local = shared_data_dir() / LCB_LOCAL
    return (f"benchmark 'livecodebench': no copy of LiveCodeBench {LCB_RELEASE} was found. The official dataset "
            "(livecodebench/code_generation_lite) is a loading-script dataset that the installed `datasets` "
            "no longer runs, so distill reads either a clone of its repository (git clone "
            f"https://huggingface.co/datasets/livecodebench/code_generation_lite {local}, which holds "
            f"{', '.join(LCB_FILES)}; or pass the folder or one of its files as --bench livecodebench=PATH), "
            "or its parquet conversion from the Hugging Face datasets cache (fetch it once with network access: "
            "python -c \"import datasets; datasets.load_dataset('lighteval/code_generation_lite', "
            f"'{LCB_RELEASE}', split='test')\", then copy the cache over if this machine is offline).")


def livecodebench_rows(source: str | Path | None) -> Iterator[tuple[str, dict]]:
    """A given copy, else the local clone, else the first hub copy the datasets cache (or the hub) has."""
    if source is not None:
        yield from _lcb_copy(Path(source) if Path(str(source)).exists() else source)
        return
    local = shared_data_dir() / LCB_LOCAL
    if local.exists():
        yield from _lcb_copy(local)
        return
    for spec in LCB_HUB:
        rows = iter_rows(spec)
        try:
            first = next(rows)
        except StopIteration:
            continue
        except (SourceError, RuntimeError, ConnectionError, OSError, ValueError):
            continue  # not cached here, or a loading script: try the next copy
        yield first
        yield from rows
        return
    raise SourceError(livecodebench_missing())


def _lcb_copy(source: str | Path) -> Iterator[tuple[str, dict]]:
    """A clone of the official repository (its release files in order) or any dataset spec of its rows."""
    if isinstance(source, Path) and source.is_dir() and (source / LCB_FILES[0]).exists():
        for name in LCB_FILES:
            if (source / name).exists():
                yield from iter_rows(source / name)
        return
    yield from iter_rows(source)


REGISTRY: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("aime24", "HuggingFaceH4/aime_2024:default/train", aime("aime24"), "math", k=64),
    Benchmark("aime25", "yentinglin/aime_2025:default/train", aime("aime25"), "math", k=64),
    Benchmark("math500", "HuggingFaceH4/MATH-500:default/test", math500, "math", "math500/test.jsonl", k=4),
    Benchmark("gpqa-diamond", "Idavidrein/gpqa:gpqa_diamond/train", gpqa, "mcq", k=8),
    Benchmark("amc23", "AI-MO/aimo-validation-amc:default/train", amc, "math", k=16),
    Benchmark("gsm8k", "openai/gsm8k:main/test", gsm8k, "math", "gsm8k/test.jsonl", k=4),
    Benchmark("humaneval", "openai/openai_humaneval:openai_humaneval/test", humaneval, "code",
              "humaneval/HumanEval.jsonl.gz", k=4),
    Benchmark("livecodebench", LCB_HUB[0], livecodebench, "code", LCB_LOCAL, k=16, rows=livecodebench_rows),
)}
R1_K = {name: b.k for name, b in REGISTRY.items()}


def source_of(bench: Benchmark) -> str:
    """The offline copy when it is there, else the public dataset spec."""
    if bench.shared is not None and (shared_data_dir() / bench.shared).exists():
        return str(shared_data_dir() / bench.shared)
    return bench.hub


def iter_benchmark(name: str, source: str | Path | None = None) -> Iterator[Problem]:
    bench = REGISTRY[name]
    seen: set[str] = set()
    rows = bench.rows(source) if bench.rows is not None else iter_rows(source or source_of(bench))
    for where, row in rows:
        problem = bench.to_problem(row, f"benchmark '{name}': {where}")
        if problem.id in seen:
            raise SourceError(f"benchmark '{name}': {where}: problem id '{problem.id}' appears twice")
        seen.add(problem.id)
        yield problem


def rows_of(spec: str | Path) -> Iterator[tuple[str, dict]]:
    """(where, row) of a benchmark name (its Problems, e.g. for decontamination) or of any dataset spec."""
    name = str(spec)
    if name in REGISTRY:
        for problem in iter_benchmark(name):
            yield f"benchmark '{name}' problem {problem.id}", problem.to_json()
        return
    yield from iter_rows(spec)


def benchmark_problems(name: str, path: str | Path | None = None, limit: int | None = None) -> dict[str, Problem]:
    """The problems of an eval benchmark: a registry name (its public or offline copy, unless `path` points
    at another copy of the same benchmark), or any Problem source under any name."""
    if name not in REGISTRY:
        if path is None:
            raise DistillError(f"benchmark '{name}': not a known benchmark ({', '.join(REGISTRY)}); give its "
                               "problems as NAME=PATH (a Problem JSONL, a dataset file or folder, or a hub id)")
        return load_problems(path, limit=limit, label=f"benchmark '{name}'")
    if path is not None and str(path).endswith(".jsonl") and _is_problem_jsonl(path):
        return load_problems(path, limit=limit, label=f"benchmark '{name}'")
    problems: dict[str, Problem] = {}
    for problem in iter_benchmark(name, path):
        if limit is not None and len(problems) >= limit:
            break
        problems[problem.id] = problem
    if not problems:
        raise DistillError(f"benchmark '{name}': {path or source_of(REGISTRY[name])} holds no problems")
    return problems


def as_problem_file(bench: BenchmarkConfig, folder: Path) -> BenchmarkConfig:
    """The benchmark with `path` pointing at a Problem JSONL: itself when it is one already, else the named
    benchmark or dataset spec written once to FOLDER/NAME.jsonl (rewritten only when its content changes)."""
    try:
        if bench.path is not None and str(bench.path).endswith(".jsonl") and _is_problem_jsonl(bench.path):
            return bench
        problems = benchmark_problems(bench.name, bench.path)
    except SourceError as exc:
        prefix = f"benchmark '{bench.name}': "
        raise SourceError(str(exc) if str(exc).startswith(prefix) else prefix + str(exc)) from None
    target = Path(folder) / f"{bench.name}.jsonl"
    text = "".join(json.dumps(p.to_json(), ensure_ascii=False) + "\n" for p in problems.values())
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        atomic_write_text(target, text)
    return bench.model_copy(update={"path": target})


def _is_problem_jsonl(path: str | Path) -> bool:
    """A file distill wrote already (Problem records), rather than the benchmark's raw rows."""
    for _, row in iter_rows(path):
        return "id" in row and "problem" in row and "domain" in row
    return False
