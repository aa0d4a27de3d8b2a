"""Scale-out: split problems across N workers by a stable hash, and join their trace files again.

`shard_of` hashes the problem id with SHA-256 (Python's `hash()` is salted per process), so every
worker, on any machine, agrees on who owns a problem without talking to the others; all n samples of a
problem land in the same shard. Shards are numbered 0..N-1: `shard=0/4` is the first of four.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from distill.errors import DistillError
from distill.files import atomic_open, atomic_write_json, input_file, output_file
from distill.jsonl import JsonlReader
from distill.records import Problem, Trace, trace_key

_SHOWN = 20  # keys listed in a report; the counts are always complete


def shard_of(problem_id: str, n: int) -> int:
    digest = hashlib.sha256(str(problem_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n


def parse_shard(spec: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 0 <= K < N."""
    try:
        k, n = (int(part) for part in spec.split("/"))
    except ValueError:
        raise DistillError(f"shard '{spec}': expected K/N, e.g. 0/4 for the first of four workers") from None
    if n < 1 or not 0 <= k < n:
        raise DistillError(f"shard '{spec}': K must be in 0..N-1 (shards are numbered from 0), N >= 1")
    return k, n


def split_shard(spec: str | None, parts: int) -> list[str]:
    """Split shard K/N into `parts` finer shards whose union is exactly K/N.

    h % (N*parts) == K + N*d implies h % N == K, so worker d of a data-parallel run owns
    `K+N*d / N*parts` and the workers partition their parent shard.
    """
    k, n = parse_shard(spec) if spec else (0, 1)
    return [f"{k + n * d}/{n * parts}" for d in range(parts)]


def expected_keys(problems: Path | Iterable[Problem], n: int) -> Iterable[str]:
    """Every `problem_id#sample` key a complete run over `problems` with n samples writes; a row that is not a
    Problem (no `id`, say) stops with its file, line and field."""
    source = JsonlReader(problems, Problem) if isinstance(problems, (str, Path)) else problems
    for problem in source:
        for sample in range(n):
            yield trace_key(problem.id, sample)


def merge_shards(paths: list[Path], output: Path, expected: Iterable[str] | None = None, *,
                 allow_empty: bool = True) -> dict[str, Any]:
    """Join shard trace files into `output` (first copy of each key wins) and report what is wrong.

    The report counts duplicates (and those whose copies differ, a sign shards ran different configs),
    lines that did not parse, config hashes seen, and, given the `expected` keys, the gaps (missing)
    and strays (unexpected). `output` appears atomically, complete or not at all; the report is also
    written beside it as `<stem>.merge.json`. With `allow_empty=False` (`distill merge`, where a user names the
    shards) a shard without a single valid trace is an error, raised before `output` is replaced: an empty or
    garbled shard must not cost the traces a previous merge wrote. Data-parallel workers' shards may be empty.
    """
    if not paths:
        raise DistillError("merge: no shard files given")
    for path in paths:
        if not Path(path).exists():
            raise DistillError(f"{path}: no such shard file")
    paths = [input_file(p, "a shard Trace JSONL") for p in paths]  # folders, permissions
    output = output_file(output, "the merged Trace JSONL")  # may be one of the inputs: replaced only at the end
    output_file(output.with_name(output.stem + ".merge.json"), "the merge report")

    digests: dict[str, bytes] = {}  # key -> digest of the copy kept, to tell benign from conflicting
    duplicates: Counter[str] = Counter()
    conflicting: set[str] = set()
    hashes: Counter[str] = Counter()
    per_shard = []
    with atomic_open(output) as out:
        for path in paths:
            reader = JsonlReader(path, Trace, on_error="skip")
            records = 0
            for trace in reader:
                records += 1
                line = json.dumps(trace.to_json(), ensure_ascii=False)
                digest = hashlib.sha256(line.encode("utf-8")).digest()
                key = trace.key
                if key in digests:
                    duplicates[key] += 1
                    if digests[key] != digest:
                        conflicting.add(key)
                    continue
                digests[key] = digest
                hashes[trace.config_hash] += 1
                out.write(line + "\n")
            per_shard.append({"path": str(path), "records": records, "bad_lines": reader.skipped,
                              "errors": reader.errors[:5]})
            if records == 0 and not allow_empty:
                why = f"{reader.skipped} line(s), none a valid trace; first: {reader.errors[0]}" if reader.skipped \
                    else "it is empty"
                raise DistillError(f"{path}: no valid trace in this shard ({why}). {output} was left as it was; "
                                   "pass --allow-empty to merge anyway")

    report: dict[str, Any] = {
        "output": str(output),
        "written": len(digests),
        "shards": per_shard,
        "bad_lines": sum(s["bad_lines"] for s in per_shard),
        "duplicates": sum(duplicates.values()),
        "duplicate_keys": sorted(duplicates)[:_SHOWN],
        "conflicting_duplicates": len(conflicting),
        "conflicting_keys": sorted(conflicting)[:_SHOWN],
        "config_hashes": dict(hashes),
    }
    if expected is not None:
        want = set(expected)
        missing = sorted(want.difference(digests))
        unexpected = sorted(set(digests).difference(want))
        report.update(expected=len(want), missing=len(missing), missing_keys=missing[:_SHOWN],
                      unexpected=len(unexpected), unexpected_keys=unexpected[:_SHOWN])
    report["complete"] = (report.get("missing", 0) == 0 and report["bad_lines"] == 0
                          and report["conflicting_duplicates"] == 0 and len(hashes) <= 1)
    atomic_write_json(output.with_name(output.stem + ".merge.json"), report)
    return report
