"""Streaming JSONL: file:line errors, skip mode, and a writer that survives SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from distill.jsonl import JsonlError, JsonlReader, JsonlWriter, count_lines, read_jsonl
from distill.records import Problem


def test_malformed_seventh_line_is_reported(tmp_path):
    path = tmp_path / "p.jsonl"
    lines = [json.dumps({"id": str(i), "problem": "x"}) for i in range(10)]
    lines[6] = '{"id": "6", "problem": '
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(JsonlError, match=rf"{path}:7: not valid JSON"):
        list(read_jsonl(path, Problem))


def test_bad_record_names_field_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "problem": "x"}\n{"id": "b", "problem": "y", "domain": "poetry"}\n')
    with pytest.raises(JsonlError, match=rf"{path}:2: field 'domain'"):
        list(read_jsonl(path, Problem))


def test_skip_mode_counts_bad_lines(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "problem": "x"}\nnot json\n[1]\n{"id": "b", "problem": "y"}\n')
    reader = JsonlReader(path, Problem, on_error="skip")
    assert [p.id for p in reader] == ["a", "b"]
    assert reader.skipped == 2 and ":2:" in reader.errors[0]


def test_writer_resumes_by_key_and_repairs_torn_tail(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlWriter(path, key=lambda r: r["k"]) as writer:
        writer.write_many({"k": i} for i in range(5))
    with open(path, "a") as handle:
        handle.write('{"k": 5, "half')  # what a dying filesystem could leave
    with JsonlWriter(path, key=lambda r: r["k"]) as writer:
        assert writer.repaired_bytes > 0 and writer.has(4) and not writer.has(5)
        assert writer.write_many({"k": i} for i in range(10)) == 5
    assert [r["k"] for r in read_jsonl(path)] == list(range(10))


WRITER_SCRIPT = """
import sys, time
from distill.jsonl import JsonlWriter
with JsonlWriter(sys.argv[1], key=lambda r: r["k"], flush_every=7) as w:
    for i in range(int(sys.argv[2])):
        if w.has(i):
            continue
        w.write({"k": i, "pad": "x" * 5000})
        time.sleep(0.002)
"""


def test_sigkill_mid_stream_leaves_whole_lines_and_rerun_completes(tmp_path):
    path, total = tmp_path / "stream.jsonl", 3000
    proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(path), str(total)])
    deadline = time.time() + 60
    while count_lines(path) < 200 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = list(read_jsonl(path))  # raises on any torn line
    assert 0 < len(partial) < total
    subprocess.run([sys.executable, "-c", WRITER_SCRIPT, str(path), str(total)], check=True)
    keys = [r["k"] for r in read_jsonl(path)]
    assert sorted(keys) == list(range(total)) and len(keys) == len(set(keys))


def test_writer_keeps_a_whole_last_record_without_newline(tmp_path):
    """Another tool's file, valid JSON to the end but no final newline: the last record is a record."""
    path = tmp_path / "out.jsonl"
    path.write_text('{"k": 0}\n{"k": 1}')
    with JsonlWriter(path, key=lambda r: r["k"]) as writer:
        assert writer.repaired_bytes == 0 and writer.has(1)
        writer.write({"k": 2})
    assert [r["k"] for r in read_jsonl(path)] == [0, 1, 2]


def test_reader_names_the_line_of_bytes_that_are_not_text(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"k": 0}\n{"k": "caf\xe9"}\n\x00\x01\n{"k": "\\ud800"}\n')
    reader = JsonlReader(path, on_error="skip")
    assert [r["k"] for r in reader] == [0] and reader.skipped == 3
    assert [e.split(": ", 1)[0] for e in reader.errors] == [f"{path}:2", f"{path}:3", f"{path}:4"]
    with pytest.raises(JsonlError, match=r"mixed.jsonl:2: not UTF-8 text \(byte 0xe9"):
        list(read_jsonl(path))
    with pytest.raises(JsonlError, match="is a folder"):
        list(read_jsonl(tmp_path))
