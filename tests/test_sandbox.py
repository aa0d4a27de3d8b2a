"""The code sandbox against hostile programs: each is contained, rejected with a reason, and leaves nothing behind."""
from __future__ import annotations

import glob
import os
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from distill.config import SandboxConfig
from distill.errors import DistillError
from distill.verify.sandbox import check_isolation, default_layers, run_sandboxed, sandbox_capabilities

# Generous for programs that should pass (the box is shared and loaded); tight for ones that must time out.
OK = SandboxConfig(timeout_s=20)
TIGHT = SandboxConfig(timeout_s=2, max_processes=32)


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def _gone(marker: str, within_s: float = 2.0) -> bool:
    """No process with `marker` in its command line (the run already waited for its namespace to go)."""
    deadline = time.monotonic() + within_s
    while _processes_with(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the sandbox that hostile programs try to write into (world-writable like /tmp)."""
    target = tmp_path / "outside"
    target.mkdir()
    target.chmod(0o777)
    return target


@pytest.fixture(autouse=True)
def no_sandbox_dirs_left():
    pattern = os.path.join(tempfile.gettempdir(), "distill-sbx-*", "run-*")
    before = set(glob.glob(pattern))
    yield
    assert set(glob.glob(pattern)) - before == set(), "a sandbox temp dir was left behind"


def test_clean_program_passes_and_reports_its_isolation():
    result = run_sandboxed("def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nprint('tests ran')\n", OK)
    assert result.passed, result.reason
    assert result.stdout.strip() == "tests ran"  # the nonce line is stripped from what the caller sees
    assert result.returncode == 0 and result.completed and not result.timed_out
    assert set(result.isolation) == set(default_layers())
    assert {"setsid", "rlimits", "audit"} <= set(result.isolation)


def test_failing_assertion_is_rejected_with_the_error():
    result = run_sandboxed("assert sorted([3, 1, 2]) == [3, 2, 1], 'wrong order'\n", OK)
    assert not result.passed
    assert result.returncode == 1
    assert "AssertionError: wrong order" in result.reason


def test_infinite_loop_is_killed_at_the_timeout():
    start = time.monotonic()
    result = run_sandboxed("while True:\n    pass\n", TIGHT)
    assert time.monotonic() - start < TIGHT.timeout_s + 5
    assert result.timed_out and not result.passed
    assert "timed out after 2 s" in result.reason


def test_fork_bomb_is_contained():
    marker = f"forkbomb-{uuid.uuid4().hex}"
    code = textwrap.dedent(f"""
        import os, sys
        while True:
            try:
                if os.fork() == 0:
                    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", "{marker}"])
            except OSError:
                pass
    """)
    start = time.monotonic()
    result = run_sandboxed(code, TIGHT)
    assert time.monotonic() - start < TIGHT.timeout_s + 5
    assert not result.passed and result.timed_out
    assert _gone(marker), "fork bomb children outlived the sandbox"


def test_ten_gib_allocation_fails_with_memory_error():
    result = run_sandboxed("block = bytearray(10 * 1024 ** 3)\nprint(len(block))\n", OK)
    assert not result.passed
    assert "MemoryError" in result.reason


@pytest.mark.parametrize("how", ["absolute", "relative", "os.open"])
def test_write_outside_its_directory_is_refused(how: str, outside: Path):
    target = outside / f"escaped-{how}.txt"
    code = {
        "absolute": f"open({str(target)!r}, 'w').write('pwned')\n",
        "relative": f"import os\nos.chdir('..')\nopen({str(target)!r}, 'w').write('pwned')\n",
        "os.open": f"import os\nfd = os.open({str(target)!r}, os.O_CREAT | os.O_WRONLY)\nos.write(fd, b'x')\n",
    }[how]
    result = run_sandboxed(code, OK)
    assert not result.passed
    assert "PermissionError" in result.reason or "Permission denied" in result.reason
    assert not target.exists()
    assert list(outside.iterdir()) == []


def test_writing_inside_its_directory_works_and_is_cleaned_up():
    result = run_sandboxed("open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n", OK)
    assert result.passed, result.reason


def test_socket_connection_is_refused():
    code = "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=3)\n"
    result = run_sandboxed(code, OK)
    assert not result.passed
    assert "network" in result.reason.lower() or "unreachable" in result.reason.lower()


def test_program_that_kills_its_own_process_group_fails_and_we_survive():
    result = run_sandboxed("import os, signal\nos.killpg(0, signal.SIGKILL)\nprint('unreachable')\n", OK)
    assert not result.passed
    assert "SIGKILL" in result.reason
    assert "unreachable" not in result.stdout


def test_program_cannot_signal_its_parent():
    code = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(0.5)\n"
    result = run_sandboxed(code, OK)
    assert not result.passed  # either the kill was refused (error) or it hit nothing we own


@pytest.mark.parametrize("exit_call", ["os._exit(0)", "sys.exit(0)", "raise SystemExit"])
def test_exiting_zero_before_the_tests_run_fails(exit_call: str):
    code = f"import os, sys\n\ndef add(a, b):\n    return a - b\n\n{exit_call}\nassert add(1, 2) == 3\n"
    result = run_sandboxed(code, OK)
    assert result.returncode == 0
    assert not result.completed and not result.passed
    assert "tests did not all run" in result.reason


def test_printing_something_sentinel_like_does_not_pass():
    result = run_sandboxed("print('\\n' + 'a' * 32 + '\\n')\nimport os\nos._exit(0)\n", OK)
    assert not result.passed


def test_daemon_left_running_is_killed_with_the_sandbox():
    marker = f"daemon-{uuid.uuid4().hex}"
    code = textwrap.dedent(f"""
        import os, sys
        if os.fork() == 0:
            os.setsid()
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", "{marker}"])
        print("parent done")
    """)
    result = run_sandboxed(code, OK)
    assert result.passed, result.reason
    assert _gone(marker), "a daemon outlived the sandbox"


def test_output_flood_is_cut_off():
    result = run_sandboxed("while True:\n    print('x' * 1000)\n", SandboxConfig(timeout_s=20, max_output_kb=64))
    assert not result.passed
    assert "64 KiB" in result.reason
    assert len(result.stdout) <= 64 * 1024


def test_file_size_limit():
    code = "open('big.bin', 'wb').write(b'x' * (64 * 1024 * 1024))\n"
    result = run_sandboxed(code, SandboxConfig(timeout_s=20, max_file_mb=4))
    assert not result.passed
    assert "File too large" in result.reason or "file size limit" in result.reason


def test_resource_limits_are_in_force_inside():
    config = SandboxConfig(timeout_s=7, memory_mb=512, max_processes=16, max_file_mb=3)
    code = textwrap.dedent("""
        import resource as r
        assert r.getrlimit(r.RLIMIT_CPU)[0] == 7, r.getrlimit(r.RLIMIT_CPU)
        assert r.getrlimit(r.RLIMIT_AS)[0] == 512 * 1024 ** 2
        assert r.getrlimit(r.RLIMIT_FSIZE)[0] == 3 * 1024 ** 2
        assert r.getrlimit(r.RLIMIT_NPROC)[0] >= 16
        assert r.getrlimit(r.RLIMIT_CORE)[0] == 0
    """)
    result = run_sandboxed(code, config)
    assert result.passed, result.reason + result.stderr


# Each layer alone must stop what it is for. Generated from the layers this host has (never skipped).
_NET = "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=3)\n"
_LAYER_CASES = [(layer, _NET) for layer in ("netns", "landlock", "audit") if layer in default_layers()]


@pytest.mark.parametrize(("layer", "code"), _LAYER_CASES)
def test_each_network_layer_alone_blocks_a_connection(layer: str, code: str):
    result = run_sandboxed(code, OK, layers=("setsid", "rlimits", layer))
    others = {"netns", "landlock", "audit"} - {layer}
    assert layer in result.isolation and not others & set(result.isolation), result.isolation
    assert not result.passed
    assert any(word in result.reason for word in ("PermissionError", "unreachable", "network", "Errno"))


_WRITE_LAYERS = [layer for layer in ("uid", "landlock", "audit") if layer in default_layers()]


@pytest.mark.parametrize("layer", _WRITE_LAYERS)
def test_each_filesystem_layer_alone_blocks_a_write(layer: str, tmp_path: Path):
    target = tmp_path / f"{layer}.txt"  # tmp_path is root-owned 0700 here, so uid alone protects it too
    result = run_sandboxed(f"open({str(target)!r}, 'w').write('x')\n", OK, layers=("setsid", "rlimits", layer))
    assert not result.passed
    assert "Permission" in result.reason
    assert not target.exists()


def test_capabilities_probe_matches_the_layers():
    caps = sandbox_capabilities()
    layers = default_layers()
    assert ("uid" in layers) == caps["root"]
    assert ("landlock" in layers) == (caps["landlock_abi"] >= 1)
    assert ("pidns" in layers) == (caps["namespaces"] or caps["userns"])
    assert ("mountns" in layers and "disk-quota" in layers) == (caps["namespaces"] or caps["userns"])
    assert ("landlock-read" in layers) == (caps["landlock_abi"] >= 1)


def test_weak_isolation_is_refused_unless_the_recipe_opts_in():
    weak = ("setsid", "rlimits", "no-new-privs", "audit")  # a host with neither namespaces nor Landlock
    with pytest.raises(DistillError, match="sandbox.allow_weak: true"):
        check_isolation(SandboxConfig(), weak)
    assert check_isolation(SandboxConfig(allow_weak=True), weak) == weak
    assert check_isolation(SandboxConfig(), weak + ("landlock",))
    assert check_isolation(SandboxConfig()) == default_layers()  # this host: strong, nothing to opt into
