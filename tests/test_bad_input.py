"""Bad input never crashes a command and never costs a user data.

Malformed inputs are generated per command from a few families (bytes and encodings, record shapes and
types, paths, values at and beyond each bound, output paths) and every one is run in-process through the
CLI (typer's CliRunner, no model loaded), in a workspace that already holds a user's earlier outputs. Each
must end with exit code 2, one error paragraph naming the file / line / field, no traceback, and every file
that was there before byte for byte as it was. Permission cases run in a child that drops root (CI runs as
root, for whom nothing is unreadable). The number of cases per command is printed at the end of the run.
"""
from __future__ import annotations

import gzip
import json
import os
import select
import shutil
import signal
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill.cli import app

# -------------------------------------------------------------------------------------------- records
PROBLEMS = [{"id": "p1", "problem": "What is 1 + 1?", "domain": "math", "answer": "2"},
            {"id": "p2", "problem": "What is 2 + 3?", "domain": "math", "answer": "5"}]


def trace(problem_id: str = "p1", sample: int = 0) -> dict:
    return {"problem_id": problem_id, "sample": sample, "teacher": "t",
            "prompt": [{"role": "user", "content": "What is 1 + 1?"}],
            "completion": "<think>\n1 + 1 = 2\n</think>\n\nThe answer is \\boxed{2}.",
            "reasoning": "1 + 1 = 2", "answer": "The answer is \\boxed{2}.", "finish_reason": "stop"}


def jsonl(rows: list) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


GOOD_PROBLEMS = jsonl(PROBLEMS)
GOOD_TRACES = jsonl([trace("p1", 0), trace("p1", 1), trace("p2", 0)])

# What a user already has: earlier outputs of every command, each of which a failing run must leave as it was.
# imported.jsonl ends without a newline on purpose (a file written by another tool).
EARLIER = {
    "problems.jsonl": GOOD_PROBLEMS,
    "traces.jsonl": GOOD_TRACES,
    "out/checked.jsonl": jsonl([{**trace(), "kept": True}]),
    "out/kept.jsonl": jsonl([{**trace(), "kept": True}]),
    "out/rejected.jsonl": b"",
    "out/stats.json": b'{"kept": 1, "rejected": 0}\n',
    "out/checked.state.json": b'{"per_trace_hash": "x", "input_digest": "y"}\n',
    "merged.jsonl": GOOD_TRACES,
    "export/train.parquet": b"PAR1 earlier export",
    "export/hf/state.json": b"{}",
    "imported/problems.jsonl": GOOD_PROBLEMS.rstrip(b"\n"),
    "imported/traces.jsonl": GOOD_TRACES,
    "imported.jsonl": GOOD_PROBLEMS.rstrip(b"\n"),
    "data/demo/train.jsonl": GOOD_PROBLEMS,
    "recipe.yaml": b"name: mine\nrun_dir: runs/mine\nsft:\n  epochs: 1\n",
    "run/traces.jsonl": GOOD_TRACES,
    "a_file": b"just a file\n",
}


# ---------------------------------------------------------------------------------------- the families
# Bytes that are not UTF-8 JSON Lines: (name, content, the line the error must cite or None).
BAD_BYTES = [
    ("nul-bytes", b"\x00" * 16, 1),
    ("all-256-bytes", bytes(range(256)), 1),
    ("latin-1-line-2", b"\n" + '{"x": "caf\u00e9"}\n'.encode("latin-1"), 2),
    ("cp1252-quotes", b'{"id": \x93p1\x94}\n', 1),
    ("utf-16", '{"id": "p1"}\n'.encode("utf-16"), 1),
    ("gzip-named-jsonl", gzip.compress(GOOD_TRACES), 1),
    ("png-header", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 1),
    ("utf-8-bom", b"\xef\xbb\xbf" + GOOD_TRACES, 1),
    ("not-json", b"hello world\n", 1),
    ("torn-last-line", b"\n\n\n" + b'{"problem_id": "p', 4),
    ("json-array", b"[1, 2, 3]\n", 1),
    ("json-string", b'"a string"\n', 1),
    ("json-number", b"42\n", 1),
    ("json-null", b"null\n", 1),
    ("deep-nesting", b"[" * 100_000 + b"\n", 1),
    ("yaml-not-json", b"id: p1\nproblem: x\n", 1),
]
EMPTY_BYTES = [("empty", b""), ("blank-lines", b"\n  \n\t\n")]

# Valid JSON objects that are not the record the slot wants: (name, row, field the message must name).
BAD_TRACES = [
    ("problem-not-trace", PROBLEMS[0], "Problem"),
    ("no-completion", {k: v for k, v in trace().items() if k != "completion"}, "completion"),
    ("no-problem-id", {k: v for k, v in trace().items() if k != "problem_id"}, "problem_id"),
    ("sample-text", {**trace(), "sample": "zero"}, "sample"),
    ("sample-float", {**trace(), "sample": 1.5}, "sample"),
    ("prompt-string", {**trace(), "prompt": "What is 1 + 1?"}, "prompt"),
    ("prompt-ints", {**trace(), "prompt": [1, 2]}, "prompt"),
    ("completion-null", {**trace(), "completion": None}, "completion"),
    ("teacher-list", {**trace(), "teacher": ["a"]}, "teacher"),
    ("problem-id-number", {**trace(), "problem_id": 7}, "problem_id"),
    ("sample-negative", {**trace(), "sample": -1}, "sample"),
    ("sample-huge", {**trace(), "sample": 10 ** 30}, "sample"),
    ("tokens-negative", {**trace(), "completion_tokens": -5}, "completion_tokens"),
    ("lone-surrogate", {**trace(), "completion": "\ud800"}, "UTF-16"),
]
BAD_PROBLEMS = [
    ("no-problem-text", {"id": "p1", "answer": "2"}, "problem"),
    ("problem-number", {"id": "p1", "problem": 5}, "problem"),
    ("domain-unknown", {**PROBLEMS[0], "domain": "physics"}, "domain"),
    ("answer-list", {**PROBLEMS[0], "answer": ["2"]}, "answer"),
    ("tests-number", {**PROBLEMS[0], "tests": 5}, "tests"),
    ("choices-string", {**PROBLEMS[0], "choices": "abc"}, "choices"),
    ("meta-list", {**PROBLEMS[0], "meta": [1]}, "meta"),
    ("trace-not-problem", trace(), "problem"),
    ("lone-surrogate", {**PROBLEMS[0], "problem": "\udfff?"}, "UTF-16"),
]
DUPLICATE_IDS = GOOD_PROBLEMS + jsonl([PROBLEMS[0]])

# Paths that are not a readable input file: (name, path, files to create first). Directories are made from
# a trailing "/" in the files map.
BAD_INPUT_PATHS = [
    ("missing", "nope.jsonl", {}),
    ("a-folder", "adir.jsonl", {"adir.jsonl/": b""}),
    ("typo-of-local-file", "data/demo/trian", {}),
    ("under-a-file", "a_file/x.jsonl", {}),
    ("markup-in-name", "[bold]x[/bold].jsonl", {}),
    ("spec-brackets", "data/ORG/NAME[:CONFIG][/SPLIT].jsonl", {}),
]
# Output paths that cannot be written (permissions: see the non-root cases).
BAD_OUTPUT_DIRS = [("a-file", "a_file"), ("under-a-file", "a_file/out")]
BAD_OUTPUT_FILES = [("a-folder", "export"), ("under-a-file", "a_file/out.jsonl")]


@dataclass
class Case:
    command: str
    name: str
    args: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    names: tuple[str, ...] = ()  # what the message must contain: file, line, field

    @property
    def id(self) -> str:
        return f"{self.command}:{self.name}"


def bytes_cases(command: str, slot: str, args: list[str], *, skip: tuple[str, ...] = (),
                empty: bool = True) -> list[Case]:
    """Every bad-bytes file in `slot` (its name in args is the placeholder SLOT), and the empty ones."""
    cases = []
    for name, content, line in BAD_BYTES:
        if name in skip:
            continue
        cases.append(Case(command, f"{slot}:bytes:{name}", [a.replace("SLOT", f"bad-{name}.jsonl") for a in args],
                          {f"bad-{name}.jsonl": content}, (f"bad-{name}.jsonl:{line}",)))
    for name, content in EMPTY_BYTES if empty else ():
        cases.append(Case(command, f"{slot}:{name}", [a.replace("SLOT", f"{name}.jsonl") for a in args],
                          {f"{name}.jsonl": content}, (f"{name}.jsonl",)))
    return cases


def shape_cases(command: str, slot: str, args: list[str], shapes: list, *, prefix: bytes) -> list[Case]:
    """Each bad record on line 2 of a file whose line 1 is good (so the line number is checked too)."""
    line = 2 if prefix else 1
    return [Case(command, f"{slot}:shape:{name}", [a.replace("SLOT", f"shape-{name}.jsonl") for a in args],
                 {f"shape-{name}.jsonl": prefix + jsonl([row])}, (f"shape-{name}.jsonl:{line}", must))
            for name, row, must in shapes]


def path_cases(command: str, slot: str, args: list[str]) -> list[Case]:
    return [Case(command, f"{slot}:path:{name}", [a.replace("SLOT", path) for a in args], files, (path,))
            for name, path, files in BAD_INPUT_PATHS]


def value_cases(command: str, base: list[str], values: dict[str, list]) -> list[Case]:
    """KEY=VALUE overrides beyond each bound; the message must name the field."""
    return [Case(command, f"value:{key}={value}", [*base, f"{key}={value}"], {}, (f"'{key}",))
            for key, bad in values.items() for value in bad]


def option_cases(command: str, base: list[str], options: dict[str, list]) -> list[Case]:
    """CLI options outside the configs; the message must name the option."""
    return [Case(command, f"option:{opt}={value}", [*base, opt, str(value)], {}, (opt,))
            for opt, bad in options.items() for value in bad]


# ----------------------------------------------------------------------------------------- per command
def filter_cases() -> list[Case]:
    base = ["filter", "--input", "traces.jsonl", "--problems", "problems.jsonl", "--out-dir", "out"]
    traces_slot = ["filter", "--input", "SLOT", "--problems", "problems.jsonl", "--out-dir", "out"]
    problems_slot = ["filter", "--input", "traces.jsonl", "--problems", "SLOT", "--out-dir", "out"]
    first_trace = jsonl([trace()])
    cases = [*bytes_cases("filter", "input", traces_slot), *bytes_cases("filter", "problems", problems_slot),
             *shape_cases("filter", "input", traces_slot, BAD_TRACES, prefix=first_trace),
             *shape_cases("filter", "problems", problems_slot, BAD_PROBLEMS, prefix=jsonl([PROBLEMS[1]])),
             *path_cases("filter", "input", traces_slot), *path_cases("filter", "problems", problems_slot)]
    cases.append(Case("filter", "problems:duplicate-ids", problems_slot[:4] + ["dup.jsonl", "--out-dir", "out"],
                      {"dup.jsonl": DUPLICATE_IDS}, ("dup.jsonl:3", "p1")))
    cases.append(Case("filter", "problems:other-set", problems_slot[:4] + ["other.jsonl", "--out-dir", "out"],
                      {"other.jsonl": jsonl([{"problem": "x"}, {"problem": "y"}])}, ("other.jsonl", "problem_id")))
    cases += [Case("filter", f"out-dir:{name}", base[:-1] + [path], {}, (path,)) for name, path in BAD_OUTPUT_DIRS]
    cases += value_cases("filter", base, {
        "math_timeout_s": [0, -5, "abc", ".inf", ".nan"], "sandbox.timeout_s": [0, -1],
        "sandbox.memory_mb": [0], "workers": [-1], "quality.max_lang_mix": [-0.1, 1.5],
        "quality.max_repeat_frac": [2], "quality.repeat_ngram": [0], "quality.max_paragraph_chars": [0],
        "dedup.threshold": [0, 1.1], "dedup.num_perm": [0], "select.k": [0, -1], "select.policy": ["best"],
        "decontaminate.ngram": [0], "verify": ["maybe"], "no_such_key": [1]})
    cases.append(Case("filter", "value:checks=[no_such_check]", [*base, "checks=[no_such_check]"], {},
                      ("no_such_check",)))
    cases.append(Case("filter", "recipe:no-filter-input", ["filter", "bad.yaml"], {"bad.yaml": b"- a\n- b\n"},
                      ("bad.yaml",)))
    return cases


def generate_cases() -> list[Case]:
    """Everything generate refuses before a teacher is loaded (an empty problem set is a run with nothing to do)."""
    slot = ["generate", "--problems", "SLOT", "-o", "traces.jsonl", "--model", "bundled:tiny"]
    base = ["generate", "--problems", "problems.jsonl", "-o", "traces.jsonl", "--model", "bundled:tiny"]
    cases = [*bytes_cases("generate", "problems", slot, empty=False), *path_cases("generate", "problems", slot),
             *shape_cases("generate", "problems", slot, BAD_PROBLEMS, prefix=jsonl([PROBLEMS[1]]))]
    cases.append(Case("generate", "problems:duplicate-ids", slot[:2] + ["dup.jsonl"] + slot[3:],
                      {"dup.jsonl": DUPLICATE_IDS}, ("dup.jsonl:3", "p1")))
    cases += [Case("generate", f"out:{name}", [*base[:3], "-o", path, *base[5:]], {}, (path,))
              for name, path in BAD_OUTPUT_FILES]
    cases += value_cases("generate", base, {
        "sampling.n": [0], "sampling.temperature": [-1], "sampling.top_p": [0, 1.5], "sampling.max_tokens": [0],
        "sampling.min_p": [2], "batch_size": [0], "limit": [0], "shard": ["3/2", "x"], "backend": ["tgi"],
        "vllm.max_num_seqs": [0], "openai.timeout_s": [0]})
    return cases


def import_cases() -> list[Case]:
    slot = ["import", "SLOT", "-o", "imported.jsonl"]
    cases = [*bytes_cases("import", "source", slot), *path_cases("import", "source", slot)]
    cases += shape_cases("import", "source", ["import", "problems", "SLOT", "-o", "imported.jsonl"],
                         [s for s in BAD_PROBLEMS if s[0] not in ("trace-not-problem", "no-problem-text")],
                         prefix=jsonl([PROBLEMS[1]]))
    cases.append(Case("import", "source:duplicate-ids", ["import", "dup.jsonl", "-o", "imported.jsonl"],
                      {"dup.jsonl": DUPLICATE_IDS}, ("dup.jsonl:3", "p1")))
    cases.append(Case("import", "source:no-known-columns", ["import", "cols.jsonl", "-o", "imported.jsonl"],
                      {"cols.jsonl": jsonl([{"foo": 1}])}, ("cols.jsonl:1", "foo")))
    for ext, content in ((".csv", bytes(range(256)) * 4), (".parquet", b"not parquet at all"),
                         (".json", b"{ not json"), (".json", b"\xff\xfe\x00\x00")):
        name = f"garbage{ext}" if content[:1] != b"\xff" else f"garbage-bytes{ext}"
        cases.append(Case("import", f"source:{name}", ["import", name, "-o", "imported.jsonl"], {name: content},
                          (name,)))
    cases += [Case("import", f"out:{name}", ["import", "problems.jsonl", "-o", path], {}, (path,))
              for name, path in (("dir-is-file", "a_file"), ("under-a-file", "a_file/x.jsonl"),
                                 ("folder-under-a-file", "a_file/sub"))]
    cases.append(Case("import", "out:jsonl-is-a-folder", ["import", "problems.jsonl", "-o", "adir.jsonl"],
                      {"adir.jsonl/": b""}, ("adir.jsonl",)))
    cases += option_cases("import", ["import", "problems.jsonl", "-o", "imported.jsonl"],
                          {"--limit": [0, -1, "x"], "--format": ["nope"], "--field": ["problem", "=q", "problem="],
                           "--domain": ["physics"]})
    return cases


def merge_cases() -> list[Case]:
    slot = ["merge", "SLOT", "-o", "merged.jsonl"]
    problems_slot = ["merge", "traces.jsonl", "-o", "merged.jsonl", "--problems", "SLOT"]
    # (a shard with some good lines is merged and its bad lines reported: merge's own contract)
    cases = [*bytes_cases("merge", "shard", slot, skip=("utf-8-bom",)), *path_cases("merge", "shard", slot),
             *bytes_cases("merge", "problems", problems_slot), *path_cases("merge", "problems", problems_slot)]
    # A shard whose every line is a bad record: nothing valid, so the earlier merge must stay.
    cases += [Case("merge", f"shard:all-invalid:{name}", ["merge", f"s-{name}.jsonl", "-o", "merged.jsonl"],
                   {f"s-{name}.jsonl": jsonl([row])}, (f"s-{name}.jsonl",)) for name, row, _ in BAD_TRACES]
    cases.append(Case("merge", "shard:one-good-one-empty", ["merge", "traces.jsonl", "empty.jsonl", "-o",
                                                            "merged.jsonl"], {"empty.jsonl": b""}, ("empty.jsonl",)))
    cases += shape_cases("merge", "problems", problems_slot,
                         [("no-id", {"problem": "x"}, "id"), *BAD_PROBLEMS[:7]], prefix=jsonl([PROBLEMS[1]]))
    cases += [Case("merge", f"out:{name}", ["merge", "traces.jsonl", "-o", path], {}, (path,))
              for name, path in BAD_OUTPUT_FILES]
    cases += option_cases("merge", ["merge", "traces.jsonl", "-o", "merged.jsonl", "--problems", "problems.jsonl"],
                          {"-n": [0, -1, "two"]})
    return cases


def export_cases() -> list[Case]:
    slot = ["export", "SLOT", "-o", "export"]
    cases = [*bytes_cases("export", "kept", slot), *path_cases("export", "kept", slot),
             *shape_cases("export", "kept", slot, BAD_TRACES, prefix=jsonl([trace()]))]
    cases.append(Case("export", "kept:prompt-without-content", slot[:1] + ["np.jsonl", "-o", "export"],
                      {"np.jsonl": jsonl([{**trace(), "prompt": [{"role": "user"}]}])}, ("np.jsonl:1", "prompt")))
    cases.append(Case("export", "kept:no-user-turn", slot[:1] + ["nu.jsonl", "-o", "export"],
                      {"nu.jsonl": jsonl([{**trace(), "prompt": []}])}, ("nu.jsonl:1", "prompt")))
    cases += [Case("export", f"out:{name}", ["export", "traces.jsonl", "-o", path], {}, (path,))
              for name, path in BAD_OUTPUT_DIRS]
    return cases


def sft_cases() -> list[Case]:
    slot = ["sft", "--dry-run", "--train-file", "SLOT"]
    base = ["sft", "--dry-run", "--train-file", "traces.jsonl"]
    cases = [*bytes_cases("sft", "train-file", slot), *path_cases("sft", "train-file", slot),
             *shape_cases("sft", "train-file", slot, BAD_TRACES, prefix=jsonl([trace()]))]
    cases += value_cases("sft", base, {
        "learning_rate": [0, -1, ".inf"], "max_length": [0, -1], "epochs": [0, -2], "per_device_batch_size": [0],
        "gradient_accumulation_steps": [0, -8], "warmup_ratio": [1, 5, -0.1], "weight_decay": [-1],
        "max_grad_norm": [-1], "lora.r": [0], "lora.alpha": [0], "lora.dropout": [1], "eval_fraction": [1, -0.1],
        "method": ["half"], "max_steps": [-2], "save_steps": [0], "logging_steps": [0], "eval_steps": [0],
        "save_total_limit": [0], "overlong": ["cut"], "precision": ["fp8"], "trainer_args": ["{no_such_arg: 1}"]})
    cases += option_cases("sft", base, {"--world-size": [0, -1]})
    cases.append(Case("sft", "recipe:list", ["sft", "--dry-run", "r.yaml"], {"r.yaml": b"- 1\n"}, ("r.yaml",)))
    return cases


def rl_cases() -> list[Case]:
    slot = ["rl", "--dry-run", "--problems", "SLOT", "--model", "bundled:tiny"]
    base = ["rl", "--dry-run", "--problems", "problems.jsonl", "--model", "bundled:tiny"]
    cases = [*bytes_cases("rl", "problems", slot), *path_cases("rl", "problems", slot),
             *shape_cases("rl", "problems", slot, BAD_PROBLEMS, prefix=jsonl([PROBLEMS[1]]))]
    cases.append(Case("rl", "problems:no-gold-answer", slot[:3] + ["na.jsonl"] + slot[4:],
                      {"na.jsonl": jsonl([{"id": "p1", "problem": "x"}])}, ("na.jsonl", "answer")))
    cases.append(Case("rl", "problems:not-set", ["rl", "--dry-run", "--model", "bundled:tiny"], {}, ("rl.problems",)))
    cases += value_cases("rl", base, {
        "learning_rate": [0, -1], "num_generations": [1, 0], "max_steps": [0], "temperature": [0, -1],
        "top_p": [0, 1.5], "beta": [-1], "epsilon": [0], "epsilon_high": [0], "warmup_ratio": [1, -1],
        "math_timeout_s": [0, -5], "max_completion_length": [0], "prompts_per_step": [0],
        "gradient_accumulation_steps": [3], "rewards": ["[{name: acuracy}]", "[{name: accuracy, weight: .inf}]"],
        "pass_rate_filter.band": ["[0.9, 0.1]", "[-1, 2]"], "pass_rate_filter.k": [1], "vllm.gpu_memory_utilization": [0, 1.5],
        "template": ["plain"], "loss_type": ["ppo"]})
    cases += option_cases("rl", base, {"--world-size": [0, -3]})
    return cases


def plan_cases() -> list[Case]:
    slot = ["plan", "SLOT"]
    cases = [Case("plan", f"recipe:bytes:{name}", ["plan", f"r-{name}.yaml"], {f"r-{name}.yaml": content},
                  (f"r-{name}.yaml",)) for name, content, _ in BAD_BYTES if b"\x00" in content or name.startswith(
                      ("latin", "cp1252", "deep", "json-array", "json-string", "json-number", "not-json", "torn"))]
    cases += [Case("plan", f"recipe:path:{name}", [a.replace("SLOT", path) for a in slot], files, (path,))
              for name, path, files in BAD_INPUT_PATHS if name != "a-folder"]
    cases += option_cases("plan", ["plan", "recipe.yaml"], {
        "--traces": [0, -5], "--keep-rate": [0, -0.1, 1.5], "--mean-tokens": [0, -3], "--usd-per-hour": [-1]})
    cases.append(Case("plan", "option:--gpu=tpu", ["plan", "recipe.yaml", "--gpu", "tpu"], {}, ("tpu",)))
    return cases


def eval_cases() -> list[Case]:
    base = ["eval", "--models", "bundled:tiny"]
    cases = [Case("eval", f"bench:path:{name}", [*base, "--bench", f"b={path}"], files, (path,))
             for name, path, files in BAD_INPUT_PATHS]
    cases += bytes_cases("eval", "bench", [*base, "--bench", "b=SLOT"])
    cases += shape_cases("eval", "bench", [*base, "--bench", "b=SLOT"], BAD_PROBLEMS[:7], prefix=jsonl([PROBLEMS[1]]))
    cases += [Case("eval", f"bench:spec:{spec}", [*base, "--bench", spec], {}, ("--bench",))
              for spec in ("", "=", "=problems.jsonl", "b=", "no-such-benchmark")]
    cases += option_cases("eval", [*base, "--bench", "b=problems.jsonl"], {"-k": [0, -1], "--limit": [0, -2]})
    cases.append(Case("eval", "option:--models=,", ["eval", "--models", " , ", "--bench", "b=problems.jsonl"], {},
                      ("--models",)))
    cases += value_cases("eval", [*base, "--bench", "b=problems.jsonl"], {
        "sampling.temperature": [-1], "sampling.top_p": [0, 2], "sampling.max_tokens": [0], "math_timeout_s": [0],
        "vllm.tensor_parallel_size": [0], "openai.concurrency": [0], "hf.batch_size": [0], "backend": ["tgi"]})
    return cases


def view_cases() -> list[Case]:
    cases = [Case("view", f"run-dir:{name}", ["view", "--no-browser", path], files, (path,))
             for name, path, files in (("missing", "nope", {}), ("a-file", "a_file", {}),
                                       ("empty-folder", "emptyrun", {"emptyrun/": b""}),
                                       ("not-a-run", "export", {}), ("markup", "[red]run[/red]", {}))]
    cases += [Case("view", f"run-dir:{name}", ["view", "--no-browser", "brokenrun"], files, ("brokenrun",))
              for name, files in (("binary-recipe-only", {"brokenrun/recipe.yaml": bytes(range(256))}),
                                  ("traces-is-a-folder", {"brokenrun/traces.jsonl/": b""}),
                                  ("garbled-manifests", {"brokenrun/stages/generate.json": b"\xff{"}),
                                  ("recipe-is-a-folder", {"brokenrun/recipe.yaml/": b""}))]
    cases += option_cases("view", ["view", "--no-browser", "run"], {"--port": [-1, 65536, "http"]})
    cases.append(Case("view", "option:--host=unresolvable", ["view", "--no-browser", "run", "--host", "999.1.1.1"],
                      {}, ("999.1.1.1",)))
    return cases


def recipe_cases() -> list[Case]:
    yaml_shapes = [
        ("top-level-list", b"- generate\n- filter\n", "mapping"),
        ("top-level-scalar", b"just text\n", "mapping"),
        ("unknown-field", b"name: x\nsft:\n  epochz: 1\n", "epochz"),
        ("bad-type", b"name: x\nsft:\n  epochs: many\n", "epochs"),
        ("negative", b"name: x\nsft:\n  learning_rate: -1\n", "learning_rate"),
        ("tab-indent", b"name: x\nsft:\n\tepochs: 1\n", ":3"),
        ("unclosed-quote", b"name: 'x\n", "r-unclosed-quote.yaml"),
        ("python-tag", b"name: !!python/object/apply:os.system ['true']\n", "r-python-tag.yaml"),
        ("section-list", b"name: x\nfilter: [1, 2]\n", "filter"),
        ("run-dir-list", b"name: x\nrun_dir: [a]\n", "run_dir"),
    ]
    cases = [Case("recipes", f"run:yaml:{name}", ["run", f"r-{name}.yaml"], {f"r-{name}.yaml": content},
                  (f"r-{name}.yaml", must)) for name, content, must in yaml_shapes]
    cases += [Case("recipes", f"run:bytes:{name}", ["run", f"r-{name}.yaml"], {f"r-{name}.yaml": content},
                   (f"r-{name}.yaml",)) for name, content, _ in BAD_BYTES if b"\x00" in content
              or name.startswith(("latin", "cp1252", "deep", "utf-8-bom"))]
    cases += [Case("recipes", f"run:path:{name}", ["run", path], files, (path,))
              for name, path, files in BAD_INPUT_PATHS if name not in ("a-folder", "typo-of-local-file")]
    cases += [Case("recipes", f"run:override:{o}", ["run", "recipe.yaml", o], {}, (must,))
              for o, must in (("sft.epochs=-1", "sft.epochs"), ("sft.lora.r=0", "sft.lora.r"),
                              ("generate.sampling.n=0", "generate.sampling.n"),
                              ("filter.math_timeout_s=0", "filter.math_timeout_s"), ("eval.k=0", "eval.k"),
                              ("import_traces.limit=0", "import_traces.limit"), ("rl.rewards=[{name: nope}]", "nope"),
                              ("nosuchstage.x=1", "nosuchstage"), ("run_dir=[1]", "run_dir"),
                              ("generate.shard=1/0/2", "generate.shard"))]
    cases.append(Case("recipes", "run:not-an-override", ["run", "recipe.yaml", "sft.epochs"], {}, ("sft.epochs",)))
    cases += [Case("recipes", f"show:{name}", ["recipes", "show", name], {}, (name,))
              for name in ("nope", "[bold]demo[/bold]", "../etc/passwd")]
    cases += [Case("recipes", f"cp:{name}", ["recipes", "cp", "demo", dest], {}, (dest,))
              for name, dest in (("exists", "a_file"), ("under-a-file", "a_file/x.yaml"),
                                 ("missing-folder", "no/such/dir/x.yaml"))]
    return cases


def models_cases() -> list[Case]:
    gguf_header = b"GGUF" + (3).to_bytes(4, "little")
    files = [("text-named-gguf", "m.gguf", b"hello\n"), ("empty-gguf", "e.gguf", b""),
             ("magic-only", "t.gguf", b"GGUF"), ("header-cut", "h.gguf", gguf_header + b"\x01\x00"),
             ("bad-version", "v.gguf", b"GGUF" + (99).to_bytes(4, "little") + b"\x01" + b"\x00" * 15),
             ("zero-tensors", "z.gguf", gguf_header + b"\x00" * 16), ("plain-file", "a_file", None),
             ("folder-no-config", "adir", {}), ("missing-gguf", "nope.gguf", None),
             ("missing-folder", "./no/such/model", None), ("unknown-bundled", "bundled:nope", None),
             ("empty-bundled-name", "bundled:", None), ("folder-named-gguf", "d.gguf", {}),
             ("gguf-under-missing-folder", "no/such/x.gguf", None), ("home-path-missing", "~/no/such/model", None)]
    cases = []
    for name, path, content in files:
        made = {path: content} if isinstance(content, bytes) else ({f"{path}/": b""} if content == {} else {})
        cases.append(Case("models", f"prepare:{name}", ["models", "--prepare", path], made, (path,)))
    return cases


ALL = [*generate_cases(), *filter_cases(), *import_cases(), *merge_cases(), *export_cases(), *sft_cases(), *rl_cases(),
       *plan_cases(), *eval_cases(), *view_cases(), *recipe_cases(), *models_cases()]
COUNTS = Counter(case.command for case in ALL)


# ---------------------------------------------------------------------------------------------- running
def make_workspace(root: Path, case_files: dict[str, bytes]) -> dict[Path, bytes]:
    for rel, content in {**EARLIER, **case_files}.items():
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return snapshot(root)


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def changed(before: dict[Path, bytes], root: Path) -> list[str]:
    return [str(rel) for rel, content in before.items()
            if not (root / rel).is_file() or (root / rel).read_bytes() != content]


def check_outcome(case: Case, result, before: dict[Path, bytes], root: Path) -> None:
    output = result.output
    assert "Traceback" not in output, f"{case.id}: traceback\n{output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{case.id}: raised {type(result.exception).__name__}: {result.exception}\n{output}"
    assert result.exit_code == 2, f"{case.id}: exit {result.exit_code}\n{output}"
    flat = " ".join(output.replace("│", " ").split())
    assert "error" in flat.lower() or "invalid value" in flat.lower(), f"{case.id}: no error paragraph\n{output}"
    for must in case.names:
        assert " ".join(str(must).split()) in flat, f"{case.id}: the message does not name {must!r}\n{output}"
    assert not changed(before, root), f"{case.id}: changed earlier outputs {changed(before, root)}"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    os.environ["HF_HUB_OFFLINE"] = "1"
    return CliRunner()


@pytest.mark.parametrize("case", ALL, ids=[c.id for c in ALL])
def test_bad_input_is_one_clear_error_and_costs_nothing(case: Case, runner, tmp_path, monkeypatch):
    before = make_workspace(tmp_path, case.files)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, case.args, terminal_width=10_000)
    check_outcome(case, result, before, tmp_path)


# ------------------------------------------------------------------------------------- permissions
# (name, args, files to make, {path: mode} to apply, what the message must name). Run as a user without
# root's override: a file or folder the user may not read or write.
PERMISSION_CASES = [
    ("filter:input-unreadable", ["filter", "--input", "traces.jsonl", "--problems", "problems.jsonl", "--out-dir",
                                 "out"], {"traces.jsonl": 0o000}, "traces.jsonl"),
    ("filter:problems-unreadable", ["filter", "--input", "traces.jsonl", "--problems", "problems.jsonl",
                                    "--out-dir", "out"], {"problems.jsonl": 0o000}, "problems.jsonl"),
    ("filter:out-dir-read-only", ["filter", "--input", "traces.jsonl", "--problems", "problems.jsonl", "--out-dir",
                                  "out"], {"out": 0o555}, "out"),
    ("filter:checked-read-only", ["filter", "--input", "traces.jsonl", "--problems", "problems.jsonl", "--out-dir",
                                  "out"], {"out/checked.jsonl": 0o444}, "checked.jsonl"),
    ("filter:new-out-dir-in-read-only-folder", ["filter", "--input", "traces.jsonl", "--problems",
                                                "problems.jsonl", "--out-dir", "ro/new"], {"ro": 0o555}, "ro"),
    ("import:source-unreadable", ["import", "problems.jsonl", "-o", "imported.jsonl"], {"problems.jsonl": 0o000},
     "problems.jsonl"),
    ("import:out-read-only", ["import", "problems.jsonl", "-o", "imported.jsonl"], {"imported.jsonl": 0o444},
     "imported.jsonl"),
    ("import:out-dir-read-only", ["import", "problems.jsonl", "-o", "imported"], {"imported": 0o555}, "imported"),
    ("merge:shard-unreadable", ["merge", "traces.jsonl", "-o", "merged.jsonl"], {"traces.jsonl": 0o000},
     "traces.jsonl"),
    ("merge:problems-unreadable", ["merge", "traces.jsonl", "-o", "merged.jsonl", "--problems", "problems.jsonl"],
     {"problems.jsonl": 0o000}, "problems.jsonl"),
    ("merge:out-folder-read-only", ["merge", "traces.jsonl", "-o", "ro/merged.jsonl"], {"ro": 0o555}, "ro"),
    ("export:kept-unreadable", ["export", "traces.jsonl", "-o", "export"], {"traces.jsonl": 0o000}, "traces.jsonl"),
    ("export:out-read-only", ["export", "traces.jsonl", "-o", "export"], {"export": 0o555}, "export"),
    ("sft:train-file-unreadable", ["sft", "--dry-run", "--train-file", "traces.jsonl"], {"traces.jsonl": 0o000},
     "traces.jsonl"),
    ("rl:problems-unreadable", ["rl", "--dry-run", "--problems", "problems.jsonl", "--model", "bundled:tiny"],
     {"problems.jsonl": 0o000}, "problems.jsonl"),
    ("plan:recipe-unreadable", ["plan", "recipe.yaml"], {"recipe.yaml": 0o000}, "recipe.yaml"),
    ("eval:bench-unreadable", ["eval", "--models", "bundled:tiny", "--bench", "b=problems.jsonl"],
     {"problems.jsonl": 0o000}, "problems.jsonl"),
    ("view:run-dir-unreadable", ["view", "--no-browser", "run"], {"run": 0o000}, "run"),
    ("recipes:run-recipe-unreadable", ["run", "recipe.yaml"], {"recipe.yaml": 0o000}, "recipe.yaml"),
    ("recipes:cp-into-read-only", ["recipes", "cp", "demo", "ro"], {"ro": 0o555}, "ro"),
    ("models:gguf-unreadable", ["models", "--prepare", "m.gguf"], {"m.gguf": 0o000}, "m.gguf"),
]
# What the commands import lazily, imported before the child gives up root (the interpreter's own files may
# sit where the unprivileged user cannot read them).
LAZY_IMPORTS = ["distill.filter", "distill.export", "distill.sft.data", "distill.rl.data", "distill.generation.shards",
                "distill.importers", "distill.view", "distill.plan", "distill.benchmarks", "distill.logs",
                "distill.config", "distill.models", "distill.pipeline", "datasets"]


def run_unprivileged(cases: list[tuple[str, list[str], Path]]) -> list[dict]:
    """Run each (name, args, workspace) through the CLI as `nobody` (in a forked child when we are root)."""
    import importlib

    def run_all() -> list[dict]:
        out = []
        runner = CliRunner()
        for name, args, root in cases:
            os.chdir(root)
            result = runner.invoke(app, args, terminal_width=10_000)
            raised = result.exception is not None and not isinstance(result.exception, SystemExit)
            out.append({"name": name, "exit": result.exit_code, "output": result.output,
                        "raised": f"{type(result.exception).__name__}: {result.exception}" if raised else None})
        return out

    if os.geteuid() != 0:
        return run_all()
    for module in LAZY_IMPORTS:
        importlib.import_module(module)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, run, report through the pipe
        code = 0
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            payload = json.dumps(run_all()).encode()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            payload, code = json.dumps([{"name": "child", "raised": repr(exc)}]).encode(), 1
        with os.fdopen(write, "wb") as pipe:
            pipe.write(payload)
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        if not select.select([pipe], [], [], 300)[0]:  # a case that never ends (a server that started)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the unprivileged cases did not finish within 300 s")
        payload = pipe.read()
    os.waitpid(pid, 0)
    return json.loads(payload)


def test_permission_problems_are_one_clear_error_and_cost_nothing(tmp_path_factory):
    base = Path(tempfile.mkdtemp(prefix="distill-perm-", dir="/tmp"))  # reachable by `nobody`, unlike pytest's
    try:
        planned, befores = [], {}
        for name, args, modes, must in PERMISSION_CASES:
            root = base / name.replace(":", "-")
            root.mkdir()
            before = make_workspace(root, {"m.gguf": b"GGUF" + b"\x03\x00\x00\x00" + b"\x01" * 16, "ro/": b"",
                                           "imported/": b""})
            for dirpath, _, filenames in os.walk(root):
                for entry in [dirpath, *(os.path.join(dirpath, f) for f in filenames)]:
                    os.chown(entry, 65534, 65534) if os.geteuid() == 0 else None
            for rel, mode in modes.items():
                (root / rel).chmod(mode)
            planned.append((name, args, root))
            befores[name] = (root, before, modes, must)
        os.chmod(base, 0o755)
        results = run_unprivileged(planned)
        for result in results:
            assert result.get("raised") is None, f"{result['name']}: raised {result['raised']}\n{result.get('output')}"
            root, before, modes, must = befores[result["name"]]
            for rel in modes:
                (root / rel).chmod(0o755 if (root / rel).is_dir() else 0o644)
            output = result["output"]
            assert "Traceback" not in output, f"{result['name']}: traceback\n{output}"
            assert result["exit"] == 2, f"{result['name']}: exit {result['exit']}\n{output}"
            assert must in output and any(w in output.lower() for w in ("permission", "not writable", "not readable")), \
                f"{result['name']}: unclear message\n{output}"
            assert not changed(before, root), f"{result['name']}: changed {changed(before, root)}"
        assert len(results) == len(PERMISSION_CASES)
        COUNTS.update(name.split(":")[0] for name, *_ in PERMISSION_CASES)
    finally:
        for dirpath, dirnames, _ in os.walk(base):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_count_of_cases_per_command(capsys):
    """Printed for the closing note (pytest -s shows it)."""
    with capsys.disabled():
        print("\nmalformed cases per command:", dict(sorted(COUNTS.items())), "total", sum(COUNTS.values()))
    assert set(COUNTS) == {"generate", "filter", "import", "merge", "export", "sft", "rl", "plan", "eval", "view",
                           "recipes", "models"}
    assert min(COUNTS.values()) >= 10
