"""JSONL files read by byte offset, so a page of 50 rows out of 100k costs 50 seeks, not a whole read.

`lines_of(path, keys)` indexes a file in one streaming pass: each line's offset plus the few fields the
filters need (`keys(row)`). The index is kept until the file's size or mtime changes. `search` scans the
raw bytes once per (file, query) and keeps the matching line numbers, so paging through the results of
one search does not scan again.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Keys = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Line:
    offset: int
    length: int
    keys: dict[str, Any]


class LineFile:
    def __init__(self, path: Path, keys: Keys):
        self.path = Path(path)
        self.lines: list[Line] = []
        offset = 0
        with open(self.path, "rb") as handle:
            for raw in handle:
                if raw.strip():
                    try:
                        row = json.loads(raw)
                    except ValueError:
                        row = None  # a torn last line of a stage still writing: not shown, not fatal
                    if isinstance(row, dict):
                        self.lines.append(Line(offset, len(raw), keys(row)))
                offset += len(raw)

    def __len__(self) -> int:
        return len(self.lines)

    def read(self, indices: Iterable[int]) -> list[dict[str, Any]]:
        rows = []
        with open(self.path, "rb") as handle:
            for i in indices:
                line = self.lines[i]
                handle.seek(line.offset)
                rows.append(json.loads(handle.read(line.length)))
        return rows

    def search(self, query: str) -> set[int]:
        """Lines whose text values contain `query` (case-insensitive); a raw byte match is confirmed
        on the parsed values, so a query that only matches a field name or a JSON escape does not count."""
        needle = query.lower()
        raw_needle = needle.encode()
        found = set()
        by_offset = {line.offset: i for i, line in enumerate(self.lines)}
        offset = 0
        with open(self.path, "rb") as handle:
            for raw in handle:
                i = by_offset.get(offset)
                offset += len(raw)
                if i is None or raw_needle not in raw.lower():
                    continue
                if needle in " ".join(_strings(json.loads(raw))).lower():
                    found.add(i)
        return found


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


_lock = threading.Lock()
_files: dict[tuple[str, str], tuple[tuple[int, int], LineFile]] = {}
_searches: OrderedDict[tuple, set[int]] = OrderedDict()
SEARCHES_KEPT = 32


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def lines_of(path: Path, keys: Keys, kind: str) -> LineFile:
    """The index of `path` (`kind` names the keys function, so two views of one file keep two indexes)."""
    path = Path(path)
    stamp, slot = _stamp(path), (str(path), kind)
    with _lock:
        cached = _files.get(slot)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    built = LineFile(path, keys)  # outside the lock: another request may read a small file meanwhile
    with _lock:
        _files[slot] = (stamp, built)
    return built


def search(lines: LineFile, query: str) -> set[int]:
    slot = (str(lines.path), _stamp(lines.path), query.lower())
    with _lock:
        if slot in _searches:
            _searches.move_to_end(slot)
            return _searches[slot]
    found = lines.search(query)
    with _lock:
        _searches[slot] = found
        while len(_searches) > SEARCHES_KEPT:
            _searches.popitem(last=False)
    return found
