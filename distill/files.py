"""Whole files: content digests, JSON read with a plain error, and writes a reader never sees half done.

Streaming JSON Lines live in distill.jsonl; this module is for files written or read in one piece
(configs, stats, manifests, model folders).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from distill.errors import DistillError


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (16 hex digits), read in blocks so a large file costs no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()[:16]


def stat_fingerprint(path: str | Path) -> str:
    """Identity of a file or folder from names, sizes and mtimes, without reading the bytes (16 hex digits).

    For model folders and training files that are too big to hash on every run: rewriting one changes its
    mtime, so a retrained student or an edited file is recognised as new.
    """
    path = Path(path)
    digest = hashlib.sha256(str(path.resolve()).encode())
    for file in sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]:
        stat = file.stat()
        digest.update(f"\0{file.name}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def read_json(path: str | Path) -> Any:
    """A JSON file's content; a missing or broken file is one sentence naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DistillError(f"{path}: unreadable JSON ({exc})") from None


def read_json_if_any(path: str | Path) -> Any | None:
    """A JSON file's content, or None when it is missing or unreadable (optional outputs, e.g. stats)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def atomic_open(path: str | Path) -> Iterator[TextIO]:
    """A text file written in pieces that appears at `path` only when the block ends without an error.

    Readers see the old content or the new, never half of it; after an error or a kill the old file is
    untouched and the temporary one is gone (or left as a dot-file beside it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a whole file so readers see the old or the new content, never half of it."""
    with atomic_open(path) as handle:
        handle.write(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def publish_dir(tmp: Path, final: Path) -> Path:
    """Replace the folder `final` with the finished folder `tmp` (a reader never sees a half-written one)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final


def shown_path(path: str | Path, run_dir: str | Path | None = None) -> str:
    """How a card or report names a file: relative to the run directory when inside it, a file shipped with
    distill by its place in the package (`distill/data/demo/eval.jsonl`), anything else as given. A card then
    reads the same on every machine and names no one's cache or checkout."""
    from distill.resources import package_root  # resources needs nothing from here: no cycle

    given = Path(path)
    resolved = given.resolve()
    for root, prefix in ((run_dir, ""), (package_root(), "distill/")):
        if root is not None and resolved.is_relative_to(Path(root).resolve()):
            return prefix + resolved.relative_to(Path(root).resolve()).as_posix()
        if not given.is_absolute():
            return str(given)  # as the user wrote it: already the same on every machine
    return str(given)
