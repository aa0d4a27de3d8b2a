"""Decontamination: drop training problems that share a word n-gram (8 by default) with an evaluation problem.

The R1 recipe decontaminates against every evaluation set; like open-r1 we compare problem texts (the
training prompt's question against each benchmark question), lowercased word n-grams. Benchmarks are
Problem JSONL, or raw benchmark files with a `problem` / `question` / `prompt` field (.gz read as is), in any
form distill.sources reads (parquet, save_to_disk folder, hub id), or a benchmark name (aime24, math500, ...).
A benchmark question shorter than n words is matched as a whole.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from distill.benchmarks import rows_of
from distill.config import DecontamConfig
from distill.errors import DistillError

_WORD = re.compile(r"\w+")
TEXT_FIELDS = ("problem", "question", "prompt")
ID_FIELDS = ("id", "unique_id", "task_id")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def grams(tokens: list[str], n: int) -> set[str]:
    return {" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


class Decontaminator:
    def __init__(self, config: DecontamConfig):
        self.config = config
        # n-gram length -> gram -> (benchmark file, benchmark problem id); lengths below n are short questions
        self.index: dict[int, dict[str, tuple[str, str]]] = defaultdict(dict)
        self.sources: list[dict] = []
        for path in config.against:
            self._load(Path(path))
        self.cache: dict[str, dict | None] = {}

    def _load(self, path: Path) -> None:
        count = 0
        for where, row in rows_of(path):  # a benchmark name, or any dataset spec (file, folder, hub id)
            text = next((row[f] for f in TEXT_FIELDS if isinstance(row.get(f), str)), None)
            if text is None:
                raise DistillError(f"filter.decontaminate.against: {where}: expected a problem text in one of the "
                                   f"fields {list(TEXT_FIELDS)} (a Problem JSONL or a benchmark file)")
            ident = str(next((row[f] for f in ID_FIELDS if row.get(f) is not None), where))
            tokens = words(text)
            n = min(self.config.ngram, len(tokens))
            if n == 0:
                continue
            for gram in grams(tokens, n):
                self.index[n].setdefault(gram, (str(path), ident))
            count += 1
        self.sources.append({"path": str(path), "problems": count})

    def match(self, problem_id: str, text: str) -> dict | None:
        """The first benchmark problem sharing an n-gram with `text` (cached by problem id), or None."""
        if problem_id in self.cache:
            return self.cache[problem_id]
        found = None
        tokens = words(text)
        for n, table in self.index.items():
            for gram in grams(tokens, n):
                if gram in table:
                    path, ident = table[gram]
                    found = {"benchmark": path, "benchmark_id": ident, "ngram": gram}
                    break
            if found:
                break
        self.cache[problem_id] = found
        return found

    def report(self, removed_traces: int) -> dict:
        matches = [{"problem_id": pid, **hit} for pid, hit in self.cache.items() if hit]
        return {"ngram": self.config.ngram, "against": self.sources, "problems_checked": len(self.cache),
                "problems_matched": len(matches), "traces_removed": removed_traces, "matches": matches}
