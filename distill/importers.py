"""Turn benchmark files into Problem JSONL: GSM8K, MATH-style, HumanEval-style, or any JSONL with a field map."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from distill.errors import DistillError
from distill.jsonl import JsonlWriter, read_jsonl
from distill.records import Problem

GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$")


def _stable_id(prefix: str, text: str) -> str:
    return f"{prefix}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def gsm8k(path: Path) -> Iterator[Problem]:
    for i, row in enumerate(read_jsonl(path), start=1):
        match = GSM8K_ANSWER.search(row.get("answer", ""))
        if "question" not in row or match is None:
            raise DistillError(f"{path}:{i}: expected GSM8K fields 'question' and 'answer' ending in '#### N'")
        yield Problem(id=_stable_id("gsm8k", row["question"]), problem=row["question"], domain="math",
                      answer=match.group(1).replace(",", ""), source=f"gsm8k:{path.name}",
                      meta={"solution": row["answer"]})


def math(path: Path) -> Iterator[Problem]:
    for i, row in enumerate(read_jsonl(path), start=1):
        if "problem" not in row or "answer" not in row:
            raise DistillError(f"{path}:{i}: expected MATH fields 'problem' and 'answer'")
        pid = row.get("unique_id") or _stable_id("math", row["problem"])
        yield Problem(id=str(pid), problem=row["problem"], domain="math", answer=str(row["answer"]),
                      source=f"math:{path.name}",
                      meta={k: row[k] for k in ("subject", "level", "solution") if k in row})


def humaneval(path: Path) -> Iterator[Problem]:
    for i, row in enumerate(read_jsonl(path), start=1):
        missing = {"task_id", "prompt", "test", "entry_point"} - row.keys()
        if missing:
            raise DistillError(f"{path}:{i}: HumanEval row lacks {sorted(missing)}")
        problem = ("Complete the following Python function. Return the whole function, including the "
                   f"signature, in one code block.\n\n```python\n{row['prompt']}```")
        yield Problem(id=row["task_id"], problem=problem, domain="code",
                      tests=f"{row['test']}\ncheck({row['entry_point']})\n", entry_point=row["entry_point"],
                      source=f"humaneval:{path.name}", meta={"prompt": row["prompt"]})


def mapped(path: Path, field_map: dict[str, str], domain: str = "math") -> Iterator[Problem]:
    """Any JSONL: `field_map` maps Problem fields to the file's keys, e.g. {'problem': 'question', 'answer': 'label'}."""
    for i, row in enumerate(read_jsonl(path), start=1):
        data: dict = {"domain": domain, "source": f"jsonl:{path.name}"}
        for target, key in field_map.items():
            if key not in row:
                raise DistillError(f"{path}:{i}: field map wants '{key}' (for {target}) but the row has "
                                   f"{sorted(row)}")
            data[target] = row[key] if target != "answer" else str(row[key])
        for target in ("problem", "answer", "tests", "domain", "id"):
            if target not in data and target in row:
                data[target] = row[target]
        data.setdefault("id", _stable_id(path.stem, str(data.get("problem", i))))
        if "problem" not in data:
            raise DistillError(f"{path}:{i}: no problem text; map it with problem=KEY")
        yield Problem.model_validate(data)


IMPORTERS = {"gsm8k": gsm8k, "math": math, "humaneval": humaneval}


def import_problems(kind: str, source: Path, output: Path, field_map: dict[str, str] | None = None,
                    domain: str = "math", limit: int | None = None) -> int:
    if kind == "jsonl":
        rows = mapped(source, field_map or {}, domain)
    elif kind in IMPORTERS:
        rows = IMPORTERS[kind](source)
    else:
        raise DistillError(f"unknown importer '{kind}'; expected one of {sorted(IMPORTERS) + ['jsonl']}")
    written = 0
    with JsonlWriter(output, key=lambda r: r["id"]) as writer:
        for problem in rows:
            if limit is not None and written >= limit:
                break
            written += writer.write(problem)
    return written
