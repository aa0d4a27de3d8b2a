"""Whole files: the input/output boundary, content digests, JSON read with a plain error, and writes a reader
never sees half done.

Every path a command reads or writes is checked here first (`input_file`, `output_dir`, `output_file`), so a
missing file, a folder where a file is meant, a permission problem or bytes that are not UTF-8 text end as one
DistillError naming the file (and the line), never as an OSError traceback halfway through a run.
Streaming JSON Lines live in distill.jsonl; this module is for files written or read in one piece
(configs, stats, manifests, model folders).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from distill.errors import DistillError


class InputError(DistillError):
    """A file a command reads is missing, unreadable or not text; the message starts with the path."""


class OutputError(DistillError):
    """A path a command would write cannot be written; found before any work starts."""


def input_file(path: str | Path, what: str = "file") -> Path:
    """`path` as a readable regular file, or an InputError saying what is wrong with it and what was expected."""
    path = Path(path)
    try:
        if not path.exists():
            raise InputError(f"{path}: no such file (expected {what})")
        if path.is_dir():
            raise InputError(f"{path}: is a folder, expected {what}")
        if not path.is_file():
            raise InputError(f"{path}: not a regular file, expected {what}")
        with open(path, "rb"):
            pass
    except PermissionError:
        raise InputError(f"{path}: permission denied: cannot read it (expected {what})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc}; expected {what})") from None
    return path


def input_dir(path: str | Path, what: str = "folder") -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such folder (expected {what})")
    if not path.is_dir():
        raise InputError(f"{path}: is a file, expected {what}")
    if not os.access(path, os.R_OK | os.X_OK):
        raise InputError(f"{path}: permission denied: cannot read the folder (expected {what})")
    return path


def text_problem(raw: bytes, what: str = "UTF-8 text") -> str | None:
    """Why one line of bytes is not text (binary data, another encoding), or None when it decodes."""
    if b"\0" in raw:
        return f"binary data (NUL bytes), expected {what}"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); expected {what}. "
                "Re-encode the file as UTF-8")
    return None


def decode_line(raw: bytes, path: str | Path, lineno: int, what: str = "UTF-8 text") -> str:
    """One line of a text file as str; binary bytes or another encoding name the file and the line."""
    why = text_problem(raw, what)
    if why is not None:
        raise InputError(f"{path}:{lineno}: {why}")
    return raw.decode("utf-8")


def read_text(path: str | Path, what: str = "a UTF-8 text file") -> str:
    """A whole text file through the boundary: missing, folder, permission and encoding errors name it."""
    path = input_file(path, what)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    for lineno, raw in enumerate(data.splitlines(keepends=True), start=1):
        decode_line(raw, path, lineno, what)  # raises naming the first bad line
    return data.decode("utf-8")


def _writable_dir(folder: Path, what: str, target: Path) -> None:
    """The nearest existing ancestor of `folder` must be a writable folder (so `folder` can be made)."""
    probe = folder
    while not probe.exists():
        if probe.is_symlink():
            raise OutputError(f"{target}: {probe} is a dangling link; cannot write {what} there")
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputError(f"{target}: {probe} is a file, not a folder; cannot write {what} under it")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: permission denied: {probe} is not writable, so {what} cannot be written")


def output_dir(path: str | Path, what: str = "the output folder") -> Path:
    """Check, before any work, that `path` is (or can be made as) a writable folder. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: is a file, expected a folder for {what}")
    _writable_dir(path, what, path)
    return path


def output_file(path: str | Path, what: str = "the output file") -> Path:
    """Check, before any work, that `path` can be written as a file (replaced atomically or appended to)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder, expected a file for {what}")
    _writable_dir(path.parent, what, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{path}: permission denied: the file is not writable ({what})")
    return path


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
    text = read_text(path, "a JSON file")
    try:
        return json.loads(text)
    except ValueError as exc:
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
    path = output_file(path)
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


def move_aside(paths: list[Path], stale_root: Path, label: str) -> Path | None:
    """distill's one staleness policy: outputs made under another configuration are neither resumed into nor
    deleted, they move to STALE_ROOT/<time>-<label>/ (docs/architecture.md). Returns that folder, or None when
    none of `paths` existed."""
    target = Path(stale_root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{label}"
    present = [Path(p) for p in paths if Path(p).exists()]
    if not present:
        return None
    while target.exists():  # two retirements within a second
        target = target.with_name(target.name + "+")
    target.mkdir(parents=True)
    for path in present:
        shutil.move(str(path), str(target / path.name))
    return target


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


@contextmanager
def unchanged_on_error(*paths: str | Path) -> Iterator[None]:
    """Files a command appends to come back byte for byte as they were when the block fails on bad input.

    For writers that append as they go (import, resumable stages): the bytes before the block are kept (the
    tail that an appender may repair, up to 1 MiB, is saved), and a file the block created is removed. Only a
    DistillError restores: after Ctrl-C or a crash what was written stays, so a rerun resumes from it.
    """
    saved: list[tuple[Path, int | None, bytes]] = []
    for path in map(Path, paths):
        if path.is_file():
            size = path.stat().st_size
            with open(path, "rb") as handle:
                handle.seek(max(0, size - (1 << 20)))
                saved.append((path, size, handle.read()))
        elif not path.exists():
            saved.append((path, None, b""))
    try:
        yield
    except DistillError:
        for path, size, tail in saved:
            if size is None:
                path.unlink(missing_ok=True)
                continue
            with open(path, "rb+") as handle:
                handle.seek(size - len(tail))
                handle.write(tail)
                handle.truncate(size)
        raise
