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

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.errors import DistillError
from distill.jsonl import JsonlError, JsonlReader

FILE_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".json": "json"}
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
    return _hub_spec(text)


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
        if not Path(spec.path).exists():
            raise SourceError(f"{spec.path}: no such file")
        yield from _jsonl_rows(Path(spec.path))
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


def _file_rows(spec: Spec) -> Iterator[dict]:
    if not Path(spec.path).exists():
        raise SourceError(f"{spec.path}: no such file")
    import datasets

    builder = FILE_BUILDERS[Path(spec.path).suffix]
    try:
        data = datasets.load_dataset(builder, data_files=spec.path, split="train", streaming=True)
        yield from data
    except (ValueError, TypeError, OSError, datasets.exceptions.DatasetGenerationError) as exc:
        raise SourceError(f"{spec.path}: cannot be read as {builder} ({_short(exc)})") from None


def _disk_rows(spec: Spec) -> Iterator[dict]:
    import datasets

    try:
        data = datasets.load_from_disk(spec.path)
    except (FileNotFoundError, ValueError) as exc:
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
