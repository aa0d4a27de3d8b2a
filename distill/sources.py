"""Rows from anywhere: a JSONL / JSON / parquet / CSV file, a `save_to_disk` folder, or a Hugging Face hub id.

A *dataset spec* is one string:
  - a file: `data/aime.jsonl`, `train.jsonl.gz`, `x.json`, `x.parquet`, `x.csv`;
  - a folder written by `datasets.save_to_disk` (a Dataset, or a DatasetDict: add `:SPLIT`, default train);
  - a hub id with optional config and split: `open-r1/OpenR1-Math-220k`, `openai/gsm8k:main/test`,
    `open-r1/OpenR1-Math-220k:default/train` (split defaults to train).

Every reader streams (memory flat in the number of rows) and yields `(where, row)`, `where` naming the file
and line, or the dataset and row, so a bad row can be reported in one sentence. JSONL goes through distill's
own reader (it reports `file:line` and tolerates rows whose types differ, which Arrow's JSON reader refuses);
everything else goes through `datasets`. Offline (`HF_HUB_OFFLINE=1`) a hub id is read from the local
Hugging Face datasets cache; a dataset that is not there gets one paragraph saying how to fetch it.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.errors import DistillError
from distill.files import InputError, input_file, read_text
from distill.jsonl import JsonlError, JsonlReader

FILE_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".json": "json"}  # .json: read by _json_rows
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson")


class SourceError(DistillError):
    """A source that cannot be read, or a row that does not hold what was expected."""


@dataclass(frozen=True)
class Spec:
    text: str                 # as the user wrote it
    kind: str                 # jsonl | file | disk | hub
    path: str                 # file or folder path, or hub id
    config: str | None = None
    split: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "hub":
            return f"dataset {self.path}" + (f" ({self.config or 'default'}/{self.split or 'train'})")
        return self.path


def parse_spec(spec: str | Path) -> Spec:
    text = str(spec)
    if text.endswith(JSONL_SUFFIXES):
        return Spec(text, "jsonl", text)
    if Path(text).suffix in FILE_BUILDERS:
        return Spec(text, "file", text)
    base, _, split = text.rpartition(":") if ":" in text else (text, "", "")
    if Path(text).is_dir():
        return Spec(text, "disk", text)
    if base and Path(base).is_dir():
        return Spec(text, "disk", base, split=split)
    if Path(text).exists():
        raise SourceError(f"{text}: not a format distill reads; expected .jsonl(.gz), .json, .parquet, .csv, a "
                          "save_to_disk folder or a hub id such as open-r1/OpenR1-Math-220k:default/train")
    if looks_local(text):
        raise SourceError(f"{text}: no such file or folder (expected a dataset file such as .jsonl, .parquet, "
                          ".csv, or a save_to_disk folder); check the path")
    return _hub_spec(text)


def looks_local(text: str) -> bool:
    """A path the user meant on this machine, not a hub id: it starts like one (./, /, ~) or its folder
    exists here (`data/demo/trian`, a typo of train.jsonl, must not be looked up on the hub)."""
    if text.startswith((".", "/", "~", "\\")) or "\\" in text:
        return True
    base = text.partition(":")[0]
    parent = Path(base).parent
    return str(parent) not in ("", ".") and parent.is_dir()


def _hub_spec(text: str) -> Spec:
    repo, _, rest = text.partition(":")
    parts = repo.split("/")
    if len(parts) == 3 and not rest:            # org/name/split
        repo, rest = "/".join(parts[:2]), "/" + parts[2]
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise SourceError(f"{text}: no such file or folder, and not a hub id (expected ORG/NAME[:CONFIG][/SPLIT], "
                          "e.g. open-r1/OpenR1-Math-220k:default/train)")
    config, _, split = rest.partition("/")
    return Spec(text, "hub", repo, config or None, split or None)


def iter_rows(spec: str | Path | Spec) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, row) for every row of the source, streaming."""
    spec = spec if isinstance(spec, Spec) else parse_spec(spec)
    if spec.kind == "jsonl":
        yield from _jsonl_rows(Path(spec.path))
        return
    if spec.kind == "file" and Path(spec.path).suffix == ".json":
        yield from _json_rows(Path(spec.path))
        return
    rows = {"file": _file_rows, "disk": _disk_rows, "hub": _hub_rows}[spec.kind](spec)
    for index, row in enumerate(rows, start=1):
        yield f"{spec.label} row {index}", row


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        for lineno, row in JsonlReader(path).numbered():
            yield f"{path}:{lineno}", row
    except JsonlError as exc:
        raise SourceError(str(exc)) from None


def _json_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """A .json file read by distill, not by Arrow, so a bad one is one sentence with its line and column: a list
    of objects, an object of equal-length columns, or JSON Lines under a .json name."""
    try:
        text = read_text(path, "a JSON file")
    except InputError as exc:
        raise SourceError(str(exc)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # one object a line: JSON Lines named .json
            yield from _jsonl_rows(path)
            return
        raise SourceError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise SourceError(f"{path}: not valid JSON (nested too deeply)") from None
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()) \
            and len({len(v) for v in data.values()}) == 1:
        data = [dict(zip(data, values)) for values in zip(*data.values())]
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise SourceError(f"{path}: expected a list of objects (rows), got a JSON {type(data).__name__}")
    for index, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise SourceError(f"{path} row {index}: expected a JSON object, got {type(row).__name__}")
        yield f"{path} row {index}", row


def _file_rows(spec: Spec) -> Iterator[dict]:
    builder = FILE_BUILDERS[Path(spec.path).suffix]
    try:
        input_file(spec.path, f"a {builder} file")
    except InputError as exc:
        raise SourceError(str(exc)) from None
    if builder == "parquet" and not _parquet_magic(Path(spec.path)):
        # checked here: datasets would log its own error line about the file before raising
        raise SourceError(f"{spec.path}: not a parquet file (no PAR1 magic bytes at its start and end)")
    import datasets

    try:
        data = datasets.load_dataset(builder, data_files=spec.path, split="train", streaming=True)
        yield from data
    except (ValueError, TypeError, OSError, datasets.exceptions.DatasetGenerationError) as exc:
        raise SourceError(f"{spec.path}: cannot be read as {builder} ({_short(exc)})") from None


def _parquet_magic(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(4)
        if path.stat().st_size < 8:
            return False
        handle.seek(-4, os.SEEK_END)
        return head == b"PAR1" and handle.read(4) == b"PAR1"


def _disk_rows(spec: Spec) -> Iterator[dict]:
    import datasets

    try:
        data = datasets.load_from_disk(spec.path)
    except (OSError, ValueError) as exc:
        raise SourceError(f"{spec.path}: not a folder written by datasets.save_to_disk ({_short(exc)})") from None
    if isinstance(data, datasets.DatasetDict):
        split = spec.split or ("train" if "train" in data else next(iter(data)))
        if split not in data:
            raise SourceError(f"{spec.path}: no split '{split}'; it has {sorted(data)} (write PATH:SPLIT)")
        data = data[split]
    yield from data  # memory-mapped Arrow: iterating does not load the table into memory


def _hub_rows(spec: Spec) -> Iterator[dict]:
    import datasets

    split = spec.split or "train"
    try:
        data = datasets.load_dataset(spec.path, spec.config, split=split, streaming=True,
                                     cache_dir=os.environ.get("HF_DATASETS_CACHE"))  # read now, not at import
    except (ConnectionError, FileNotFoundError, ValueError, OSError) as exc:
        raise SourceError(_missing_hub_dataset(spec, split, exc)) from None
    yield from data


def _missing_hub_dataset(spec: Spec, split: str, exc: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    cache = os.environ.get("HF_DATASETS_CACHE") or "~/.cache/huggingface/datasets"
    config = f"'{spec.config}'" if spec.config else "None"
    fetch = (f"python -c \"import datasets; datasets.load_dataset('{spec.path}', {config}, split='{split}')\"")
    where = f"not in the local Hugging Face datasets cache ({cache}) and HF_HUB_OFFLINE=1 forbids downloading it" \
        if offline else f"could not be loaded ({_short(exc)})"
    return (f"{spec.label}: {where}. Download it once on a machine with network access ({fetch}, which fills "
            f"that cache; copy the cache folder over if this machine is offline), or pass a local file or "
            f"save_to_disk folder instead.")


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
