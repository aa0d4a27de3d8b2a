"""What the page asks for, as JSON-ready dicts: the overview, and pages of problems, samples and eval.

Samples are the filter's verdicts (kept.jsonl and rejected.jsonl, each reject with every failing check),
or the raw traces when the filter has not run. Eval pages put the models side by side on each benchmark
problem: the per-problem result line of each model and its samples with their verdicts. The kd page puts each
recorded answer's per-token teacher - student log-probs before and after training side by side.
"""
from __future__ import annotations

import itertools
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from distill.errors import DistillError
from distill.eval.table import rows as score_rows
from distill.files import read_json_if_any
from distill.kd import disagreement
from distill.problems import iter_problems
from distill.records import Problem
from distill.view.layout import RunFiles
from distill.view.lines import LineFile, lines_of, search

MAX_PAGE = 200
HITS_KEPT = 16  # filtered sample lists kept for paging
STATUSES = ("all", "kept", "rejected")
EVAL_FILTERS = ("all", "differ", "improved", "regressed")


def _sample_keys(row: dict[str, Any]) -> dict[str, Any]:
    return {"problem_id": str(row.get("problem_id", "")), "sample": row.get("sample", 0),
            "kept": row.get("kept"), "checks": sorted({r.get("check", "?") for r in row.get("reasons") or []})}


def _eval_keys(row: dict[str, Any]) -> dict[str, Any]:
    return {"problem_id": str(row.get("problem_id", "")), "sample": row.get("sample", 0)}


def page_bounds(offset: int, limit: int) -> tuple[int, int]:
    if offset < 0 or limit < 1:
        raise DistillError("offset must be >= 0 and limit >= 1")
    return offset, min(limit, MAX_PAGE)


class RunData:
    """The queries over one run directory; indexes are built on first use and rebuilt when a file changes."""

    def __init__(self, layout: RunFiles):
        self.layout = layout
        self._problems: dict[str, Problem] | None = None
        self._bench_problems: dict[str, dict[str, Problem]] = {}
        self._order: tuple[tuple[int, ...], list[tuple[LineFile, int]]] = ((), [])
        self._hits: dict[tuple, list[tuple[LineFile, int]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ sources
    def problems(self) -> dict[str, Problem]:
        """The training problems by id (empty when the recipe's problem file is not on this machine)."""
        with self._lock:
            if self._problems is None:
                path = self.layout.problems
                problems = iter_problems(path, label="problems") if path else iter(())
                limit = (self.layout.recipe.get("generate") or {}).get("limit")  # generate took the first N
                self._problems = {p.id: p for p in itertools.islice(problems, limit)}
            return self._problems

    def sample_files(self) -> list[LineFile]:
        """kept.jsonl and rejected.jsonl, or the unfiltered traces."""
        names = [self.layout.filter_file(n) for n in ("kept.jsonl", "rejected.jsonl")]
        paths = [p for p in names if p is not None] or ([self.layout.traces] if self.layout.traces else [])
        return [lines_of(p, _sample_keys, "samples") for p in paths]

    def sample_order(self) -> list[tuple[LineFile, int]]:
        """Every sample, by problem (in the problem file's order) then sample number."""
        files = self.sample_files()
        built_for = tuple(id(lines) for lines in files)  # the same LineFile objects while no file changed
        if self._order[0] == built_for:
            return self._order[1]
        rank = {pid: i for i, pid in enumerate(self.problems())}
        for lines in files:  # problems missing from the file go after, in order of appearance
            for line in lines.lines:
                rank.setdefault(line.keys["problem_id"], len(rank))
        order = [(lines, i) for lines in files for i in range(len(lines))]
        order.sort(key=lambda item: (rank[item[0].lines[item[1]].keys["problem_id"]],
                                     item[0].lines[item[1]].keys["sample"]))
        self._order = (built_for, order)
        return order

    # ---------------------------------------------------------------------------------------- overview
    def overview(self) -> dict[str, Any]:
        layout = self.layout
        stats = read_json_if_any(layout.filter_dir / "stats.json") if layout.filter_dir else None
        counts, reasons, problem_ids = Counter(), Counter(), set()
        for lines in self.sample_files():
            for line in lines.lines:
                kept = line.keys["kept"]
                counts["samples"] += 1
                counts["kept" if kept else "rejected" if kept is False else "unfiltered"] += 1
                reasons.update(line.keys["checks"])
                problem_ids.add(line.keys["problem_id"])
        scores = layout.scores()
        evaluation = None
        if scores:
            header, body = score_rows(scores)
            evaluation = {"header": header, "rows": body, "k": scores.get("k"),
                          "benchmarks": list(scores.get("benchmarks", {})), "models": scores.get("models", {})}
        return {
            "name": layout.name, "run_dir": layout.run_dir.name, "description": layout.recipe.get("description"),
            "stages": [{"stage": m.get("stage"), "status": m.get("status"), "seconds": m.get("seconds"),
                        "key": m.get("key")} for m in layout.manifests()],
            "filtered": layout.filter_dir is not None, "counts": dict(counts),
            "problems": len(self.problems()) or len(problem_ids),
            "reasons": dict(reasons.most_common()), "funnel": (stats or {}).get("funnel"),
            "plots": layout.plots(), "eval": evaluation, "kd": layout.disagreement_file() is not None,
        }

    # ---------------------------------------------------------------------------------------- problems
    def problems_page(self, offset: int = 0, limit: int = 50, q: str = "", only: str = "all") -> dict[str, Any]:
        offset, limit = page_bounds(offset, limit)
        tally: dict[str, Counter] = {}
        prompts: dict[str, tuple[LineFile, int]] = {}
        for lines in self.sample_files():
            for i, line in enumerate(lines.lines):
                pid = line.keys["problem_id"]
                tally.setdefault(pid, Counter())["samples"] += 1
                tally[pid]["kept"] += line.keys["kept"] is True
                prompts.setdefault(pid, (lines, i))
        problems = self.problems()
        ids = list(problems) + [pid for pid in tally if pid not in problems]
        if only == "none_kept":
            ids = [pid for pid in ids if tally.get(pid, Counter())["kept"] == 0]
        elif only != "all":
            raise DistillError(f"only must be 'all' or 'none_kept', got '{only}'")
        texts = {pid: self._problem_text(problems.get(pid), prompts.get(pid)) for pid in ids} if q else {}
        if q:
            needle = q.lower()
            ids = [pid for pid in ids if needle in pid.lower() or needle in texts[pid].lower()]
        items = []
        for pid in ids[offset:offset + limit]:
            problem = problems.get(pid)
            counts = tally.get(pid, Counter())
            items.append({"id": pid, "problem": texts.get(pid) or self._problem_text(problem, prompts.get(pid)),
                          "answer": problem.answer if problem else None, "domain": problem.domain if problem else None,
                          "samples": counts["samples"], "kept": counts["kept"]})
        return {"total": len(ids), "offset": offset, "items": items}

    @staticmethod
    def _problem_text(problem: Problem | None, prompt: tuple[LineFile, int] | None) -> str:
        """The problem statement, or the last user turn of a trace's prompt when the problem file is absent."""
        if problem is not None:
            return problem.problem
        if prompt is None:
            return ""
        row = prompt[0].read([prompt[1]])[0]
        users = [m.get("content", "") for m in row.get("prompt") or [] if m.get("role") == "user"]
        return users[-1] if users else ""

    # ----------------------------------------------------------------------------------------- samples
    def samples_page(self, offset: int = 0, limit: int = 20, status: str = "all", reason: str = "",
                     q: str = "", problem: str = "") -> dict[str, Any]:
        offset, limit = page_bounds(offset, limit)
        if status not in STATUSES:
            raise DistillError(f"status must be one of {', '.join(STATUSES)}, got '{status}'")
        matched = {id(lines): search(lines, q) for lines in self.sample_files()} if q else None

        def wanted(lines: LineFile, i: int) -> bool:
            keys = lines.lines[i].keys
            return ((status == "all" or (keys["kept"] is True) == (status == "kept"))
                    and (not reason or reason in keys["checks"])
                    and (not problem or keys["problem_id"] == problem)
                    and (matched is None or i in matched[id(lines)]))

        order = self.sample_order()
        # The same filter paged needs no second scan. The files' identities key it: the hits hold those
        # LineFile objects, so no newer index can reuse their ids while the entry lives.
        slot = (self._order[0], status, reason, q.lower(), problem)
        hits = self._hits.get(slot)
        if hits is None:
            hits = [(lines, i) for lines, i in order if wanted(lines, i)]
            self._hits = {**dict(list(self._hits.items())[-(HITS_KEPT - 1):]), slot: hits}
        problems = self.problems()
        items = []
        for lines, i in hits[offset:offset + limit]:
            row = lines.read([i])[0]
            gold = problems.get(str(row.get("problem_id")))
            row["gold"] = gold.answer if gold else None
            row["problem"] = gold.problem if gold else None
            items.append(row)
        return {"total": len(hits), "offset": offset, "items": items}

    # -------------------------------------------------------------------------------------------- eval
    def bench_problems(self, bench: str, scores: dict[str, Any]) -> dict[str, Problem]:
        with self._lock:
            if bench not in self._bench_problems:
                path = scores.get("benchmarks", {}).get(bench, {}).get("path")
                found = path and Path(path).exists()
                self._bench_problems[bench] = {p.id: p for p in iter_problems(path, label=bench)} if found else {}
            return self._bench_problems[bench]

    def eval_page(self, bench: str = "", offset: int = 0, limit: int = 10, q: str = "",
                  show: str = "all") -> dict[str, Any]:
        """Each benchmark problem with every model's result and samples, side by side."""
        offset, limit = page_bounds(offset, limit)
        scores = self.layout.scores()
        if not scores:
            raise DistillError("this run has no evaluation (no eval/scores.json)")
        benches = list(scores.get("benchmarks", {}))
        bench = bench or benches[0]
        if bench not in benches:
            raise DistillError(f"no benchmark '{bench}' in this run; it has {', '.join(benches)}")
        if show not in EVAL_FILTERS:
            raise DistillError(f"show must be one of {', '.join(EVAL_FILTERS)}, got '{show}'")
        labels = list(scores.get("scores", {}))
        results = {label: self._results(label, bench) for label in labels}
        problems = self.bench_problems(bench, scores)
        ids = list(problems) or list(dict.fromkeys(pid for r in results.values() for pid in r))
        ids = [pid for pid in ids if self._eval_shown(pid, labels, results, show)]
        if q:
            needle = q.lower()
            ids = [pid for pid in ids if needle in pid.lower() or (pid in problems and (
                needle in problems[pid].problem.lower() or needle in str(problems[pid].answer).lower()))]
        items = []
        for pid in ids[offset:offset + limit]:
            problem = problems.get(pid)
            items.append({"id": pid, "problem": problem.problem if problem else "", "answer":
                          problem.answer if problem else results[labels[0]].get(pid, {}).get("gold"),
                          "models": {label: {**results[label].get(pid, {}), "samples": self._eval_samples(label, bench, pid)}
                                     for label in labels}})
        return {"bench": bench, "benchmarks": benches, "models": labels, "total": len(ids), "offset": offset,
                "items": items}

    def _results(self, label: str, bench: str) -> dict[str, dict[str, Any]]:
        path = self.layout.eval_file(label, bench, "results")
        if path is None:
            return {}
        lines = lines_of(path, _eval_keys, "results")
        return {row["problem_id"]: row for row in lines.read(range(len(lines)))}

    @staticmethod
    def _eval_shown(pid: str, labels: list[str], results: dict[str, dict], show: str) -> bool:
        if show == "all":
            return True
        rate = [results[label].get(pid, {}).get("correct", 0) / max(results[label].get(pid, {}).get("n", 1), 1)
                for label in labels]
        if show == "differ":
            return len(set(rate)) > 1
        return rate[-1] > rate[0] if show == "improved" else rate[-1] < rate[0]

    def _eval_samples(self, label: str, bench: str, pid: str) -> list[dict[str, Any]]:
        """The model's samples of one problem: completion and answer from traces, verdict from verdicts."""
        found: dict[int, dict[str, Any]] = {}
        for kind in ("traces", "verdicts"):
            path = self.layout.eval_file(label, bench, kind)
            if path is None:
                continue
            lines = lines_of(path, _eval_keys, "eval")
            where = [i for i, line in enumerate(lines.lines) if line.keys["problem_id"] == pid]
            for row in lines.read(where):
                found.setdefault(row.get("sample", 0), {}).update(row)
        keep = ("sample", "completion", "reasoning", "answer", "passed", "check", "detail", "extracted", "vote",
                "finish_reason", "completion_tokens")
        return [{k: row[k] for k in keep if k in row} for _, row in sorted(found.items())]


    # ---------------------------------------------------------------------------------------------- kd
    def kd_page(self) -> dict[str, Any]:
        """The disagreement record (a handful of rows, read whole): each sample with its phases side by side,
        and the token means per phase."""
        path = self.layout.disagreement_file()
        if path is None:
            raise DistillError(f"this run has no kd disagreement record (kd/{disagreement.FILE})")
        found = disagreement.read(path.parent)
        samples: dict[int, dict[str, Any]] = {}
        keep = ("step", "completion", "tokens", "teacher_logprobs", "student_logprobs", "disagreement", "kl", "mean",
                "mean_abs", "mean_kl")
        for row in found:
            sample = samples.setdefault(row.get("sample", 0), {"sample": row.get("sample", 0), "phases": {}})
            sample.update(problem_id=row.get("problem_id"), problem=row.get("problem"))
            sample["phases"][row.get("phase")] = {k: row[k] for k in keep if k in row}
        return {"phases": disagreement.summary(found), "order": list(disagreement.PHASES),
                "items": [samples[k] for k in sorted(samples)]}
