"""Streaming JSON Lines: a reader that names `file:line` for a bad line, and a crash-safe appender.

The appender's promise: after a SIGKILL at any moment the file holds only whole, parseable lines
(each batch goes down in one `write` and is fsync'd; a torn tail from a dying disk or filesystem is cut
off when the file is next opened), and a rerun skips every key already written.
"""
from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel, ValidationError

from distill.errors import DistillError
from distill.files import InputError, input_file, output_file, text_problem

M = TypeVar("M", bound=BaseModel)


class JsonlError(DistillError):
    """A line that is not valid JSON or not a valid record; the message starts with `file:line`."""


def _open_bytes(path: Path):
    """Lines are read as bytes and decoded one by one, so a bad byte is reported with its line number."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    try:
        with _open_bytes(path) as handle:
            yield from enumerate(handle, start=1)
    except (gzip.BadGzipFile, EOFError) as exc:
        raise JsonlError(f"{path}: not a gzip file or cut short ({exc}); expected gzip-compressed JSON Lines") from None
    except OSError as exc:
        raise JsonlError(f"{path}: cannot be read ({exc.strerror or exc})") from None


class JsonlReader:
    """Iterate records of a JSONL file lazily.

    on_error="raise" stops at the first bad line with `path:line: why`; "skip" counts bad lines in
    `.skipped` (and keeps the first few messages in `.errors`) so a long run can go on.
    """

    def __init__(self, path: str | Path, model: type[M] | None = None,
                 on_error: Literal["raise", "skip"] = "raise"):
        self.path = Path(path)
        self.model = model
        self.on_error = on_error
        self.skipped = 0
        self.errors: list[str] = []

    def _bad(self, lineno: int, why: str) -> None:
        message = f"{self.path}:{lineno}: {why}"
        if self.on_error == "raise":
            raise JsonlError(message)
        self.skipped += 1
        if len(self.errors) < 20:
            self.errors.append(message)

    def __iter__(self) -> Iterator[Any]:
        for _, record in self.numbered():
            yield record

    def numbered(self) -> Iterator[tuple[int, Any]]:
        """(line number, record) pairs, for callers that cite the line later."""
        try:
            input_file(self.path, "a JSON Lines file, one JSON object a line")
        except InputError as exc:
            raise JsonlError(str(exc)) from None
        for lineno, raw in _raw_lines(self.path):
            if not raw.strip():
                continue
            why = text_problem(raw, "UTF-8 JSON Lines")
            if why is not None:
                self._bad(lineno, why)
                continue
            line = raw.decode("utf-8")
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                self._bad(lineno, f"not valid JSON ({exc.msg} at column {exc.colno})")
                continue
            except RecursionError:
                self._bad(lineno, "not valid JSON (nested too deeply)")
                continue
            if not isinstance(obj, dict):
                self._bad(lineno, f"expected a JSON object, got {type(obj).__name__}")
                continue
            if (b"\\ud" in raw or b"\\uD" in raw) and not _encodable(obj):
                self._bad(lineno, "a \\uD800-\\uDFFF escape that is half of a UTF-16 pair, not a character; "
                                  "expected UTF-8 text")
                continue
            if self.model is None:
                yield lineno, obj
                continue
            try:
                yield lineno, self.model.model_validate(obj)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"]) or "<record>"
                self._bad(lineno, f"field '{field}': {first['msg']} "
                                  f"(expected a valid {self.model.__name__})")


def _encodable(obj: Any) -> bool:
    """False when a string holds a lone surrogate (valid JSON, but no UTF-8 writer can write it back)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_jsonl(path: str | Path, model: type[M] | None = None,
               on_error: Literal["raise", "skip"] = "raise") -> Iterator[Any]:
    return iter(JsonlReader(path, model, on_error))


def count_lines(path: str | Path) -> int:
    """Non-blank lines (bytes, so a file with bad bytes is counted, not an error); 0 for a missing file."""
    path = Path(path)
    if not path.is_file():
        return 0
    return sum(1 for _, raw in _raw_lines(path) if raw.strip())


def _repair_tail(path: Path) -> int:
    """Cut a torn last line (one that is not JSON) so appends start on a clean line; returns bytes cut.

    A last line without a newline that parses as a whole JSON object is a record (a file written by another
    tool, or by hand): it gets its newline instead of being cut."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as handle:
        chunk = min(size, 1 << 20)
        handle.seek(size - chunk)
        tail = handle.read(chunk)
        if tail.endswith(b"\n"):
            last_start = tail.rfind(b"\n", 0, len(tail) - 1) + 1
            try:
                json.loads(tail[last_start:])
                return 0
            except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser
                cut_at = size - chunk + last_start
        else:
            last_start = tail.rfind(b"\n") + 1
            try:
                if isinstance(json.loads(tail[last_start:]), dict):
                    handle.seek(size)
                    handle.write(b"\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                    return 0
            except (ValueError, RecursionError):
                pass
            cut_at = size - chunk + last_start
        handle.truncate(cut_at)
        handle.flush()
        os.fsync(handle.fileno())
        return size - cut_at


class JsonlWriter:
    """Append-only JSONL writer that resumes by key.

    `key` maps a record (dict) to its identity; keys already in the file are loaded at open so
    `writer.has(key)` lets a stage skip finished work, and `write` refuses to duplicate a key.
    Records are buffered and written as one batch every `flush_every` records (and on close).
    """

    def __init__(self, path: str | Path, key: Callable[[dict], str] | None = None, flush_every: int = 16):
        self.path = output_file(path, "JSON Lines records")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key = key
        self.flush_every = flush_every
        self.keys: set[str] = set()
        self.repaired_bytes = 0
        if self.path.exists():
            self.repaired_bytes = _repair_tail(self.path)
            if key is not None:
                for obj in JsonlReader(self.path, on_error="skip"):
                    self.keys.add(key(obj))
        self._buffer: list[bytes] = []
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def has(self, key: str) -> bool:
        return key in self.keys

    @property
    def written(self) -> int:
        return len(self.keys)

    def write(self, record: dict | BaseModel) -> bool:
        obj = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
        if self.key is not None:
            k = self.key(obj)
            if k in self.keys:
                return False
            self.keys.add(k)
        self._buffer.append(json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n")
        if len(self._buffer) >= self.flush_every:
            self.flush()
        return True

    def write_many(self, records: Iterable[dict | BaseModel]) -> int:
        return sum(self.write(r) for r in records)

    def flush(self) -> None:
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        whole = os.fstat(self._fd).st_size  # appends start here: cut back to it if the disk fills up
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            os.fsync(self._fd)
        except OSError as exc:
            os.ftruncate(self._fd, whole)
            raise DistillError(f"{self.path}: {exc.strerror} while writing; the batch in progress was cut off, so "
                               f"the {count_lines(self.path)} lines in the file are all whole. Free some space "
                               "and rerun: it resumes after them.") from exc

    def close(self) -> None:
        if self._fd < 0:
            return
        self.flush()
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
