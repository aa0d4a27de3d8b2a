"""Programs written to fool the code verifier or to harm the host: each is rejected or harmless.

Every case below is a model "answer" aimed at one of three problems with structured tests (a call-based
`add`, a stdin/stdout sum, and HumanEval-style asserts that convert to calls). Each must fail
verification, leak no secret into anything we keep (detail, stdout, stderr), and leave the host as it
was. `meets` names the isolation layers the attack runs into; for the cheap, non-destructive ones the
second test proves that each of those layers alone stops it (narrowed runs), not only all together.
"""
from __future__ import annotations

import json
import os
import stat
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from distill.config import FilterConfig, SandboxConfig
from distill.filter import filter_traces
from distill.records import CodeTests, Problem, Trace
from distill.verify import verify
from distill.verify.code import IN_PROCESS, PROXIED, STRUCTURED, guarantee_of, structured_tests
from distill.verify.sandbox import default_layers, run_sandboxed

SECRET = f"hostile-secret-{uuid.uuid4().hex}"
HOME_SECRET_DIR = Path.home() / f".distill-test-ssh-{uuid.uuid4().hex[:8]}"  # like ~/.ssh
WORLD_READABLE = Path("/tmp") / f"distill-test-secret-{uuid.uuid4().hex[:8]}.txt"
MARKER = f"hostile-daemon-{uuid.uuid4().hex}"

CONFIG = SandboxConfig(timeout_s=5, max_processes=32, max_output_kb=64, max_disk_mb=8, max_file_mb=4)

ADD = Problem(id="add", problem="add two numbers", domain="code", source="hostile",
              tests=CodeTests(fn_name="add", calls=[{"args": "[1, 2]", "expected": "3"},
                                                    {"args": "[-5, 5]", "expected": "0"},
                                                    {"args": "[10, 32]", "expected": "42"}]))
SUM = Problem(id="sum", problem="print the sum of two integers", domain="code", source="hostile",
              tests=CodeTests(stdio=[{"input": "1 2\n", "output": "3\n"}, {"input": "40 2\n", "output": "42\n"}]))
HUMANEVAL = Problem(id="he-add", problem="def add(a, b):\n", domain="code", entry_point="add", source="hostile",
                    tests="def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-5, 5) == 0\n"
                          "    assert candidate(10, 32) == 42\n\ncheck(add)\n")
# Asserts in a loop cannot become calls: they run in a process of their own, the program in another.
TEST_MARKER = f"tests-only-{uuid.uuid4().hex}"  # in the tests' source: must never reach the program
HE_LOOP = Problem(id="he-loop", problem="def add(a, b):\n", domain="code", entry_point="add", source="hostile",
                  tests=f"# {TEST_MARKER}\ndef check(candidate):\n    for x in range(3):\n"
                        "        assert candidate(x, 1) == x + 1\n\ncheck(add)\n")
PROBLEMS = {"add": ADD, "sum": SUM, "he": HUMANEVAL, "he-loop": HE_LOOP}

RIGHT = {"add": "def add(a, b):\n    return a + b\n",
         "sum": "a, b = map(int, input().split())\nprint(a + b)\n",
         "he": "def add(a, b):\n    return a + b\n",
         "he-loop": "def add(a, b):\n    return a + b\n"}


@dataclass(frozen=True)
class Hostile:
    name: str
    code: str
    meets: tuple[str, ...]  # the layers (or parent-side checks) that stop it
    problems: tuple[str, ...] = ("add", "sum", "he", "he-loop")
    narrow: bool = False  # safe to run with a single layer (no signals, forks or bombs)


def _src(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + "\n"


def _leak(expr: str) -> str:
    """A solution that returns/prints whatever `expr` read (and raises with it), for every problem."""
    return _src(f"""
        import os, sys
        def _grab():
            try:
                return {expr}
            except BaseException as exc:
                return repr(exc)
        loot = str(_grab())
        print(loot)
        print(loot, file=sys.stderr)
        def add(a, b):
            raise ValueError(loot)
        raise SystemExit(loot[:500])
    """)


CORPUS = [
    # ---- forging completion: there is no in-sandbox signal to forge, results are compared outside
    Hostile("exit-zero-before-tests", "import os\nos._exit(0)\n", ("parent-compares",)),
    Hostile("sys-exit-zero", "import sys\nsys.exit(0)\n", ("parent-compares",)),
    Hostile("forge-results-on-fd3", _src("""
        import os
        for guess in ("True", "0", "None", "3"):
            os.write(3, (guess + "\\n").encode())
        os._exit(0)
    """), ("parent-compares",)),
    Hostile("search-memory-for-nonce-and-expected", _src("""
        import gc, os, sys
        found = []
        for obj in gc.get_objects():
            if isinstance(obj, dict) and ("nonce" in obj or "expected" in obj or "output" in obj):
                found.append(repr(obj)[:200])
        frame = sys._getframe()
        while frame is not None:
            found += [k for k in frame.f_locals if "nonce" in k or "expect" in k]
            frame = frame.f_back
        for fd in range(0, 64):
            try:
                os.write(fd, b"\\n".join(x.encode() for x in found) + b"\\n")
            except OSError:
                pass
        os._exit(0)
    """), ("parent-compares", "no-expected-values-inside")),
    Hostile("patch-repr-and-json", _src("""
        import builtins, json
        builtins.repr = lambda value: "3"
        json.dumps = lambda *a, **k: "3"
        def add(a, b):
            return 3
        print(3)
    """), ("parent-compares",)),
    Hostile("equal-to-everything", _src("""
        class Anything:
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            __hash__ = object.__hash__
            def __str__(self): return "3"
        def add(a, b):
            return Anything()
        print(Anything())
    """), ("parent-compares", "literal-only-results")),
    Hostile("int-subclass-equal-to-everything", _src("""
        class Anything(int):
            def __eq__(self, other): return True
        def add(a, b):
            return Anything(7)
        print(Anything(7))
    """), ("parent-compares", "literal-only-results")),
    Hostile("repr-that-is-code", _src("""
        class Payload:
            def __repr__(self):
                return "__import__('os').system('touch /tmp/pwned-by-repr')"
        def add(a, b):
            return Payload()
    """), ("literal-only-results",)),
    Hostile("memorise-tests-from-own-files", _src("""
        import glob, os, re
        seen = ""
        for path in glob.glob("*") + glob.glob("../*") + glob.glob("/proc/self/cmdline"):
            try:
                seen += open(path, errors="ignore").read()
            except OSError:
                pass
        memo = dict(re.findall(r"candidate\\((.*?)\\) == (.*)", seen))
        def add(a, b):
            return int(memo.get(f"{a}, {b}", "-1"))
        print(memo.get("1, 2", "-1"))
    """), ("no-expected-values-inside", "landlock-read")),
    Hostile("read-the-test-process", _src("""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        tests = os.getppid()
        print("ptrace", libc.ptrace(16, tests, 0, 0), ctypes.get_errno())  # PTRACE_ATTACH
        for name in ("mem", "environ", "cmdline", "fd/4", "maps"):
            try:
                print(open(f"/proc/{tests}/{name}", "rb").read(4096))
            except OSError as exc:
                print(name, exc)
        for fd in (3, 4):
            try:
                print(os.read(fd, 4096))
            except OSError as exc:
                print(fd, exc)
        def add(a, b):
            return 0
    """), ("not-dumpable", "landlock-read", "sealed-fds-closed")),
    # ---- reading the host
    Hostile("read-home-ssh-key", _leak(f"open({str(HOME_SECRET_DIR / 'id_ed25519')!r}).read()"),
            ("mountns", "uid", "landlock-read"), narrow=True),
    Hostile("read-etc-shadow", _leak("open('/etc/shadow').read()"), ("uid", "landlock-read"), narrow=True),
    Hostile("read-world-readable-tmp-file", _leak(f"open({str(WORLD_READABLE)!r}).read()"), ("landlock-read",),
            narrow=True),
    Hostile("read-environment", _leak("dict(os.environ)"), ("fixed-environment",)),
    Hostile("read-proc-environ-of-every-process", _leak(
        "[open(f'/proc/{p}/environ', 'rb').read() for p in os.listdir('/proc') if p.isdigit()]"),
        ("landlock-read", "pidns", "uid")),
    Hostile("read-project-source", _leak("open('/work/shared/DESIGN.md').read()[:100]"), ("landlock-read",),
            narrow=True),
    Hostile("user-namespace-to-regain-capabilities", _src(f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        print("unshare", libc.unshare(0x10000000), ctypes.get_errno())
        print(open({str(WORLD_READABLE)!r}).read())
    """), ("landlock-read", "no-new-privs")),
    # ---- escaping the run
    Hostile("daemon-outlives-run", _src(f"""
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", "{MARKER}"])
            os._exit(0)
        time.sleep(0.2)
    """), ("pidns",)),
    Hostile("kill-parent-and-everything", _src("""
        import os, signal
        for target in (os.getppid(), -1, 1):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError as exc:
                print(exc)
    """), ("pidns", "uid", "landlock-scope")),
    Hostile("kill-every-pid", _src("""
        import os, signal
        hit = 0
        for pid in range(2, 1 << 16):
            try:
                os.kill(pid, signal.SIGTERM)
                hit += 1
            except OSError:
                pass
        print(hit)
    """), ("pidns", "uid", "landlock-scope")),
    Hostile("connect-out", _src("""
        import socket
        socket.create_connection(("1.1.1.1", 80), timeout=2).sendall(b"GET /")
    """), ("netns", "landlock-net", "audit"), narrow=True),
    Hostile("write-outside", _src("""
        open("/tmp/distill-hostile-escape.txt", "w").write("pwned")
    """), ("landlock-write", "audit"), narrow=True),
    # ---- resource bombs
    Hostile("fork-bomb", _src("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """), ("rlimits", "pidns", "timeout")),
    Hostile("memory-bomb", "block = bytearray(8 * 1024 ** 3)\n", ("rlimits",)),
    Hostile("disk-bomb-many-files", _src("""
        for i in range(1000):
            open(f"f{i}.bin", "wb").write(b"x" * (3 * 1024 * 1024))
    """), ("disk-quota", "rlimits")),
    Hostile("output-bomb", "while True:\n    print('x' * 4096)\n", ("output-cap",)),
    Hostile("cpu-spin", "while True:\n    pass\n", ("timeout",)),
    Hostile("crash-interpreter", "import ctypes\nctypes.string_at(0)\n", ("parent-compares",)),
]


@pytest.fixture(scope="module", autouse=True)
def host_secrets():
    HOME_SECRET_DIR.mkdir(mode=0o700)
    (HOME_SECRET_DIR / "id_ed25519").write_text(SECRET)
    WORLD_READABLE.write_text(SECRET)
    WORLD_READABLE.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    os.environ["DISTILL_HOSTILE_SECRET"] = SECRET
    yield
    os.environ.pop("DISTILL_HOSTILE_SECRET", None)
    WORLD_READABLE.unlink()
    (HOME_SECRET_DIR / "id_ed25519").unlink()
    HOME_SECRET_DIR.rmdir()


def _answer(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}```\n"


def _no_daemon(within_s: float = 2.0) -> bool:
    deadline = time.monotonic() + within_s
    while True:
        alive = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, MARKER)]
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _cmdline_has(pid: str, marker: str) -> bool:
    try:
        return marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_hostile_program_is_rejected_and_leaks_nothing(case: Hostile):
    config = CONFIG.model_copy(update={"timeout_s": 2}) if "timeout" in case.meets else CONFIG
    for key in case.problems:
        problem = PROBLEMS[key]
        start = time.monotonic()
        result = verify(problem, _answer(case.code), sandbox=config)
        assert time.monotonic() - start < 30, "a hostile program stalled the verifier"
        assert not result.passed, f"{case.name} fooled the verifier on {key}: {result.detail}"
        assert result.guarantee == (PROXIED if key == "he-loop" else STRUCTURED)
        assert set(result.isolation) == set(default_layers())
        assert SECRET not in result.detail and TEST_MARKER not in result.detail
        assert len(result.detail) <= 400  # what a program printed is kept short
    assert not Path("/tmp/pwned-by-repr").exists()
    assert not Path("/tmp/distill-hostile-escape.txt").exists()
    assert _no_daemon(), "a daemon outlived its run"
    assert verify(ADD, _answer(RIGHT["add"]), sandbox=CONFIG).passed  # the sandbox still works after it
    assert verify(HE_LOOP, _answer(RIGHT["he-loop"]), sandbox=CONFIG).passed


NARROW = [(case, layer) for case in CORPUS if case.narrow for layer in case.meets
          if layer in default_layers() and layer != "mountns"]


@pytest.mark.parametrize(("case", "layer"), NARROW, ids=lambda v: getattr(v, "name", v))
def test_each_layer_it_meets_stops_it_alone(case: Hostile, layer: str):
    """Run with only that layer (mountns is the zygote's and always there): still nothing leaks or escapes."""
    family = layer.split("-")[0] if layer.startswith("landlock") else layer
    result = run_sandboxed(case.code, CONFIG, layers=("setsid", "rlimits", family), mode="script")
    assert layer in result.isolation
    assert result.returncode != 0 or result.reason
    assert SECRET not in result.stdout + result.stderr + result.reason
    assert not Path("/tmp/distill-hostile-escape.txt").exists()


def test_secrets_are_out_of_reach_of_a_correct_program_too():
    """Not a matter of rejecting bad answers: a right answer that also prints secrets gets none."""
    code = RIGHT["sum"] + _src(f"""
        import os
        for path in ({str(HOME_SECRET_DIR / 'id_ed25519')!r}, {str(WORLD_READABLE)!r}, "/etc/shadow"):
            try:
                print(open(path).read())
            except OSError as exc:
                print(type(exc).__name__)
        print(os.environ.get("DISTILL_HOSTILE_SECRET"))
    """)
    result = run_sandboxed(code, CONFIG, mode="script", stdin="1 2\n")
    assert result.returncode == 0, result.reason
    assert SECRET not in result.stdout
    assert result.stdout.split()[:1] == ["3"]


def test_the_program_never_sees_the_proxied_tests():
    """What the program can print, read or raise holds nothing of the tests' source."""
    spy = _src("""
        import gc, glob, os, sys
        seen = [repr(o)[:300] for o in gc.get_objects() if isinstance(o, (dict, str))]
        for path in glob.glob("*") + glob.glob("/tmp/*") + glob.glob("../*"):
            try:
                seen.append(open(path, errors="ignore").read())
            except OSError:
                pass
        needle = "assert " + "candi" + "date("  # built here, so its own source does not hold it
        print("saw the tests:", any(needle in text for text in seen))
        def add(a, b):
            return a + b
    """)
    result = run_sandboxed(spy, CONFIG, mode="proxy", fn_name="add", tests=HE_LOOP.tests, prelude="")
    assert result.passed, result.reason  # the right function, so the tests pass...
    assert "saw the tests: False" in result.stdout  # ...yet it never saw them


def test_guarantees_per_kind_of_test():
    bare = Problem(id="bare", problem="add", domain="code", tests="assert add(1, 2) == 3\n")
    assert isinstance(structured_tests(HE_LOOP), str) and isinstance(structured_tests(HUMANEVAL), CodeTests)
    assert [guarantee_of(p) for p in (ADD, SUM, HUMANEVAL, HE_LOOP, bare)] == \
        [STRUCTURED, STRUCTURED, STRUCTURED, PROXIED, IN_PROCESS]
    good = verify(bare, _answer(RIGHT["add"]), sandbox=CONFIG)
    bad = verify(bare, _answer("def add(a, b):\n    return 0\n"), sandbox=CONFIG)
    assert good.passed and good.guarantee == IN_PROCESS and "in-process" in good.detail
    assert not bad.passed and bad.guarantee == IN_PROCESS


def test_filter_run_over_the_corpus_is_unharmed(tmp_path: Path):
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(p.to_json()) + "\n" for p in PROBLEMS.values()))
    cheap = [c for c in CORPUS if "timeout" not in c.meets]  # the spinning ones are covered above
    traces, sample = [], 0
    for key, problem in PROBLEMS.items():
        for code in [RIGHT[key]] + [c.code for c in cheap]:
            answer = _answer(code)
            traces.append(Trace(problem_id=problem.id, sample=sample, teacher="hostile", prompt=[
                {"role": "user", "content": problem.problem}], completion=f"Let me think.\n</think>\n\n{answer}",
                reasoning="Let me think.", answer=answer, finish_reason="stop").to_json())
            sample += 1
    source = tmp_path / "traces.jsonl"
    source.write_text("".join(json.dumps(t) + "\n" for t in traces))
    config = FilterConfig(input=source, problems=problems, output_dir=tmp_path / "out", workers=2, sandbox=CONFIG,
                          quality={"allow_code_in_reasoning": True}, dedup={"exact": False, "near": False})
    result = filter_traces(config, progress=False)
    kept = [json.loads(line) for line in (tmp_path / "out" / "kept.jsonl").read_text().splitlines()]
    assert sorted(v["answer"] for v in kept) == sorted(_answer(RIGHT[k]) for k in PROBLEMS)
    assert result.rejected == len(traces) - len(PROBLEMS)
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="ignore"), f"a secret reached {path.name}"
    sandbox = result.stats["sandbox"]
    assert set(sandbox["isolation"]) == set(default_layers())
    assert sandbox["guarantees"] == {STRUCTURED: 3, PROXIED: 1}
    assert _no_daemon()
