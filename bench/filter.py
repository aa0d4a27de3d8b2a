"""Filter throughput: verified math traces/s against single-process math-verify, and sandboxed code tests/s.

    .venv/bin/python bench/filter.py [--problems 500] [--samples 4]

Math: MATH-500 gold answers turned into R1-format traces (the reference solution as the reasoning), per
problem one answer boxed as written, one rewritten in an equivalent form, two perturbed to be wrong.
The baseline is what a script would do without this toolkit: for each trace, math-verify `parse` the
gold and the answer and `verify` them, in one process. The filter runs in full (quality checks,
verification, dedup, selection, outputs) with all cores and with one worker. We also report how often
the two agree on correctness.

Code: HumanEval's 164 canonical solutions with their tests, each in a fresh sandbox, on all cores
(`verify_many`) and one at a time, with the tree as it is and, in the same run, with the sandbox of
`--baseline-rev` (the code before the warm-zygote sandbox: `git archive` of that revision, run in a
subprocess), so both figures share the machine's load.

    .venv/bin/python bench/filter.py --code-only    # the sandbox part alone (about a minute)

Writes bench/results/filter.json and bench/results/filter.md (or code.json / code.md with --code-only).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = Path(os.environ.get("DISTILL_BENCH_RESULTS") or ROOT / "bench" / "results")  # the suite's smoke runs write elsewhere
BASELINE_REV = "8adc847"  # the last commit with the one-interpreter-per-run sandbox (34 tests/s in the README)
MATH_PROMPT = "{}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


def equivalent_form(gold: str) -> str:
    """The same answer written differently (what a model might box)."""
    if re.fullmatch(r"-?\d+", gold):
        return f"{gold}.0" if len(gold) < 10 else f"\\left({gold}\\right)"
    rewritten = gold.replace("\\frac", "\\dfrac").replace(",", ", ").replace("\\left", "").replace("\\right", "")
    return rewritten if rewritten != gold else f"{{{gold}}}"


def wrong_form(gold: str, shift: int) -> str:
    """A different answer: the first number moved by `shift`, or the answer plus `shift`."""
    match = re.search(r"\d+", gold)
    if match:
        return f"{gold[:match.start()]}{int(match.group()) + shift}{gold[match.end():]}"
    return f"{gold}+{shift}"


def math_data(limit: int, samples: int, out: Path) -> tuple[Path, Path, list[dict], list[str]]:
    from distill.records import Problem, Trace

    with open(DATA / "math500" / "test.jsonl") as handle:
        rows = [json.loads(line) for line in handle][:limit]
    problems, traces, golds = [], [], []
    for row in rows:
        problem = Problem(id=row["unique_id"], problem=row["problem"], answer=row["answer"], source="math500")
        problems.append(problem.to_json())
        answers = [row["answer"], equivalent_form(row["answer"]), wrong_form(row["answer"], 1),
                   wrong_form(row["answer"], 7)]
        for sample in range(samples):
            boxed = answers[sample % len(answers)]
            reasoning = f"Attempt {sample + 1}. " + row["solution"]
            answer = f"Putting it together, the final answer is $\\boxed{{{boxed}}}$."
            completion = f"{reasoning}\n</think>\n\n{answer}"
            traces.append(Trace(problem_id=problem.id, sample=sample, teacher="bench",
                                prompt=[{"role": "user", "content": MATH_PROMPT.format(row["problem"])}],
                                completion=completion, reasoning=reasoning, answer=answer, finish_reason="stop",
                                completion_tokens=len(completion) // 4).to_json())
            golds.append(row["answer"])
    problem_file, trace_file = out / "problems.jsonl", out / "traces.jsonl"
    problem_file.write_text("".join(json.dumps(p) + "\n" for p in problems))
    trace_file.write_text("".join(json.dumps(t) + "\n" for t in traces))
    return problem_file, trace_file, traces, golds


def baseline_math_verify(traces: list[dict], golds: list[str]) -> tuple[float, float, list[bool]]:
    from math_verify import parse, verify

    start, cpu = time.perf_counter(), time.process_time()
    verdicts = []
    for trace, gold in zip(traces, golds):
        verdicts.append(bool(verify(parse(f"${gold}$"), parse(trace["answer"]))))
    return time.perf_counter() - start, time.process_time() - cpu, verdicts


def run_filter(problem_file: Path, trace_file: Path, out: Path, workers: int) -> tuple[float, float, dict, list]:
    from distill.config import FilterConfig
    from distill.filter import filter_traces
    from distill.jsonl import read_jsonl

    config = FilterConfig(input=trace_file, problems=problem_file, output_dir=out, workers=workers)
    start, cpu = time.perf_counter(), time.process_time()
    result = filter_traces(config, progress=False)
    elapsed = time.perf_counter() - start
    parent_cpu = time.process_time() - cpu
    result.stats["parent_cpu_s"] = round(parent_cpu, 2)
    cpu = parent_cpu + result.stats["worker_cpu_s"]  # this process + its workers
    verdicts = [bool(v["scores"].get("math_verify")) for v in read_jsonl(out / "checked.jsonl")]
    return elapsed, cpu, result.stats, verdicts


def humaneval_items(limit: int | None = None) -> list:
    from distill.records import Problem

    with gzip.open(DATA / "humaneval" / "HumanEval.jsonl.gz", "rt") as handle:
        rows = [json.loads(line) for line in handle][:limit]
    return [(Problem(id=r["task_id"], problem=r["prompt"], domain="code", entry_point=r["entry_point"],
                     tests=f"{r['test']}\ncheck({r['entry_point']})\n"),
             f"```python\n{r['prompt']}{r['canonical_solution']}```") for r in rows]


def code_bench(workers: int, repeat: int = 1, programs: int | None = None) -> dict:
    """HumanEval's canonical solutions (`repeat` times over) through `verify_many` and one at a time, after a
    warm-up that starts the worker forkserver (paid once per process, as in the math rows)."""
    from distill.config import SandboxConfig
    from distill.verify import verify, verify_many

    items = humaneval_items(programs) * repeat
    sandbox = SandboxConfig(timeout_s=30)
    start = time.perf_counter()
    list(verify_many(items[:8], sandbox=sandbox, workers=workers))
    startup_s = time.perf_counter() - start
    load = os.getloadavg()[0]
    start = time.perf_counter()
    parallel = list(verify_many(items, sandbox=sandbox, workers=workers))
    parallel_s = time.perf_counter() - start
    verify(*items[0], sandbox=sandbox)  # a sandbox of this process's own, started before the clock
    start, cpu = time.perf_counter(), cpu_of_tree()
    serial = [verify(problem, answer, sandbox=sandbox) for problem, answer in items]
    serial_s, serial_cpu = time.perf_counter() - start, cpu_of_tree() - cpu
    guarantees = [getattr(r, "guarantee", "") or "in-process" for r in parallel]
    return {"programs": len(items), "passed": sum(r.passed for r in parallel),
            "failed_ids": [p.id for (p, _), r in zip(items, parallel) if not r.passed],
            "serial_passed": sum(r.passed for r in serial), "workers": workers, "load_avg_at_start": round(load, 2),
            "startup_s": round(startup_s, 2), "parallel_s": round(parallel_s, 2), "serial_s": round(serial_s, 2),
            "tests_per_s": round(len(items) / parallel_s, 2), "serial_tests_per_s": round(len(items) / serial_s, 2),
            "serial_cpu_ms_per_test": round(1000 * serial_cpu / len(items), 1),
            **{kind.replace("-", "_"): guarantees.count(kind) // repeat for kind in ("structured", "proxied", "in-process")},
            "isolation_per_run": sorted({layer for r in parallel for layer in getattr(r, "isolation", ())})}


def cpu_of_tree() -> float:
    """CPU seconds of this process, its reaped children, and its live children with theirs (a sandbox
    server that forks every run stays alive): what the work cost, whatever else loads the machine."""
    tick = os.sysconf("SC_CLK_TCK")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = time.process_time() + children.ru_utime + children.ru_stime
    me = str(os.getpid())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # ppid; utime stime cutime cstime follow at 11-14
            total += sum(int(x) for x in fields[11:15]) / tick
    return total


# Runs this file's code_bench against another revision's `distill` (first on sys.path).
BASELINE_SCRIPT = """
import importlib.util, json, sys
if __name__ == "__main__":
    sys.path.insert(0, sys.argv[1])
    spec = importlib.util.spec_from_file_location("bench_filter", sys.argv[2])
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    print(json.dumps(bench.code_bench(int(sys.argv[3]), int(sys.argv[4]))))
"""


def baseline_code_bench(rev: str, workers: int, repeat: int) -> dict:
    """`code_bench` run against the `distill` package of `rev` (git archive), in a subprocess."""
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "distill"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        script = Path(tmp) / "run_baseline.py"
        script.write_text(BASELINE_SCRIPT)
        out = subprocess.run([sys.executable, str(script), tmp, __file__, str(workers), str(repeat)], check=True,
                             capture_output=True, text=True, cwd=tmp).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["rev"] = rev
    return result


def wait_for_quiet(max_load: float, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        time.sleep(10)
    print(f"load average {os.getloadavg()[0]:.2f} (wanted <= {max_load})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-load", type=float, default=None,
                        help="on a shared machine: wait until the 1-minute load average is below this")
    parser.add_argument("--wait-s", type=float, default=1800, help="longest wait for --max-load")
    parser.add_argument("--code-only", action="store_true", help="only the sandbox part (HumanEval)")
    parser.add_argument("--repeat", type=int, default=3, help="--code-only: run the 164 programs this many times")
    parser.add_argument("--programs", type=int, default=None, help="the first N HumanEval programs (default: all 164)")
    parser.add_argument("--baseline-rev", default=BASELINE_REV,
                        help="git revision whose sandbox is measured in the same run for comparison ('' to skip)")
    args = parser.parse_args()
    if args.max_load is not None:
        wait_for_quiet(args.max_load, args.wait_s)
    if args.code_only:
        code_main(args.baseline_rev, args.repeat)
        return
    from distill.verify.sandbox import default_layers

    workers = len(os.sched_getaffinity(0))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-filter-") as tmp:
        tmp_path = Path(tmp)
        problem_file, trace_file, traces, golds = math_data(args.problems, args.samples, tmp_path)
        print(f"math: {len(traces)} traces from {args.problems} MATH-500 problems", flush=True)
        base_s, base_cpu, base_verdicts = baseline_math_verify(traces, golds)
        print(f"  baseline math-verify, 1 process: {base_s:.1f} s", flush=True)
        # Paid once per process: the worker forkserver starts and warms the LaTeX parser. Measured apart
        # so the rates below compare steady-state verification, as the baseline's does.
        warm_file = tmp_path / "warm.jsonl"
        warm_file.write_text("".join(json.dumps(t) + "\n" for t in traces[:40]))
        startup_s, _, _, _ = run_filter(problem_file, warm_file, tmp_path / "warm", workers)
        print(f"  filter startup (forkserver, 40 traces): {startup_s:.1f} s", flush=True)
        full_s, full_cpu, stats, ours = run_filter(problem_file, trace_file, tmp_path / "all", workers)
        print(f"  filter, {workers} workers: {full_s:.1f} s", flush=True)
        one_s, one_cpu, _, _ = run_filter(problem_file, trace_file, tmp_path / "one", 1)
        print(f"  filter, 1 worker: {one_s:.1f} s", flush=True)
    agree = sum(a == b for a, b in zip(base_verdicts, ours))
    math = {
        "traces": len(traces), "problems": args.problems, "samples": args.samples,
        "startup_s_40_traces": round(startup_s, 2),
        "baseline_s": round(base_s, 2), "baseline_traces_per_s": round(len(traces) / base_s, 1),
        "filter_s": round(full_s, 2), "filter_traces_per_s": round(len(traces) / full_s, 1),
        "filter_1_worker_s": round(one_s, 2), "filter_1_worker_traces_per_s": round(len(traces) / one_s, 1),
        "speedup_vs_baseline": round(base_s / full_s, 2), "speedup_from_workers": round(one_s / full_s, 2),
        "baseline_cpu_s": round(base_cpu, 2), "filter_cpu_s": round(full_cpu, 2), "filter_1_worker_cpu_s": round(one_cpu, 2),
        "baseline_correct": sum(base_verdicts), "filter_correct": sum(ours), "agreement": round(agree / len(traces), 4),
        "filter_parent_cpu_s": stats["parent_cpu_s"], "filter_worker_cpu_s": stats["worker_cpu_s"],
        "filter_timings_s": stats["timings_s"], "kept": stats["kept"], "funnel": stats["funnel"],
    }
    print("code: HumanEval canonical solutions", flush=True)
    code = code_bench(workers, programs=args.programs)
    save("filter", {"machine": machine(workers, load_before), "sandbox_isolation": list(default_layers()),
                    "math": math, "code": code}, markdown)


def code_main(baseline_rev: str, repeat: int) -> None:
    from distill.verify.sandbox import default_layers

    workers = len(os.sched_getaffinity(0))
    load_before = os.getloadavg()
    print("code: HumanEval canonical solutions, this tree", flush=True)
    code = code_bench(workers, repeat)
    baseline = None
    if baseline_rev:
        print(f"code: the same with the sandbox of {baseline_rev}", flush=True)
        baseline = baseline_code_bench(baseline_rev, workers, repeat)
    save("code", {"machine": machine(workers, load_before), "sandbox_isolation": list(default_layers()),
                  "code": code, "baseline": baseline}, code_markdown)


def machine(workers: int, load_before: tuple[float, ...]) -> dict:
    return {"cpus": workers, "platform": platform.platform(), "python": platform.python_version(),
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()]}


def save(name: str, result: dict, render) -> None:
    """bench/results/NAME.json and NAME.md, and the table on stdout."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(render(result))
    print(render(result))


def code_markdown(r: dict) -> str:
    c, b, cpus = r["code"], r["baseline"], r["machine"]["cpus"]
    title = (f"Sandboxed HumanEval tests ({c['programs']} runs: the 164 canonical solutions x{c['programs'] // 164}; "
             f"{cpus} CPU cores, shared machine, load average at the start of each row; "
             "`bench/filter.py --code-only`)")
    header = f"| sandbox | CPU per test (1 at a time) | 1 at a time | {cpus} workers (`verify_many`) | load avg | passed |"
    lines = [title, "", header, "| --- | ---: | ---: | ---: | ---: | ---: |"]
    if b:
        lines.append(f"| before (`{b['rev']}`: a fresh interpreter per run) | {b['serial_cpu_ms_per_test']} ms | "
                     f"{b['serial_tests_per_s']} tests/s | {b['tests_per_s']} tests/s | {b['load_avg_at_start']} | "
                     f"{b['passed']}/{b['programs']} |")
    ratio = (lambda key: f" ({c[key] / b[key]:.1f}x)") if b else (lambda key: "")
    cpu_ratio = f" ({b['serial_cpu_ms_per_test'] / c['serial_cpu_ms_per_test']:.1f}x less)" if b else ""
    lines.append(f"| now (warm zygote, fork per run) | **{c['serial_cpu_ms_per_test']} ms**{cpu_ratio} | "
                 f"{c['serial_tests_per_s']} tests/s{ratio('serial_tests_per_s')} | **{c['tests_per_s']} tests/s**"
                 f"{ratio('tests_per_s')} | {c['load_avg_at_start']} | {c['passed']}/{c['programs']} |")
    lines += ["", ("CPU per test counts every process of the run (the verifying process, the sandbox and the "
                   "program), so it does not depend on what else loads the machine; the rates do: each run is a "
                   "chain of short-lived processes, and on a busy machine every hop waits for a CPU. On "
                   f"{cpus} idle cores the CPU cost alone allows about {cpus * 1000 / c['serial_cpu_ms_per_test']:.0f} "
                   "tests/s now" + (f" and {cpus * 1000 / b['serial_cpu_ms_per_test']:.0f} before." if b else ".")),
              "", (f"Every run had all of: {', '.join(c['isolation_per_run'])}. {c['structured']} of "
                   f"164 tasks ran as structured calls compared outside the sandbox, {c.get('proxied', 0)} as asserts "
                   f"in a process apart from the program, {c['in_process']} in-process. Not in the rates: starting the worker forkserver, once per "
                   f"process ({c['startup_s']} s now" + (f", {b['startup_s']} s before" if b else "") + ")."), ""]
    return "\n".join(lines)


def markdown(r: dict) -> str:
    m, c, cpus = r["math"], r["code"], r["machine"]["cpus"]
    rows = [
        (f"{m['traces']} MATH-500 traces", "math-verify parse + verify, 1 process (baseline)", m["baseline_s"],
         f"{m['baseline_traces_per_s']} traces/s"),
        ("same", "`filter_traces`, 1 worker (full filter)", m["filter_1_worker_s"],
         f"{m['filter_1_worker_traces_per_s']} traces/s"),
        ("same", f"`filter_traces`, {cpus} workers (full filter)", m["filter_s"],
         f"**{m['filter_traces_per_s']} traces/s** ({m['speedup_vs_baseline']}x baseline)"),
        (f"{c['programs']} HumanEval solutions + tests", "sandbox, 1 at a time", c["serial_s"],
         f"{c['serial_tests_per_s']} tests/s"),
        ("same", f"sandbox, {c['workers']} workers (`verify_many`)", c["parallel_s"], f"**{c['tests_per_s']} tests/s**"),
    ]
    load = r["machine"]["load_avg_before"][0]
    cpu = {0: m["baseline_cpu_s"], 1: m["filter_1_worker_cpu_s"], 2: m["filter_cpu_s"]}
    lines = [f"Filter throughput ({cpus} CPU cores, load average {load} at the start; `bench/filter.py`)", "",
             "| workload | setup | wall (s) | CPU (s, all processes) | rate |", "| --- | --- | ---: | ---: | ---: |"]
    lines += [f"| {a} | {b} | {t} | {cpu.get(i, '')} | {rate} |" for i, (a, b, t, rate) in enumerate(rows)]
    lines += ["", (f"Starting the worker forkserver (once per process) took {m['startup_s_40_traces']} s with a "
                   "40-trace warm-up run, not included above."),
              "", (f"Math verdicts agree with the baseline on {m['agreement']:.1%} of traces ({m['filter_correct']} vs "
                   f"{m['baseline_correct']} judged correct); {c['passed']}/{c['programs']} canonical solutions pass "
                   f"in the sandbox ({', '.join(r['sandbox_isolation'])})."), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
