"""Run untrusted Python (model-written solutions plus their tests) with every isolation this host allows.

Layers, strongest first; `sandbox_capabilities()` probes once which ones work and `run_sandboxed`
applies all of them (the result lists them in `isolation`):

- `pidns` + `netns`: fresh pid, network and IPC namespaces (root, or an unprivileged user namespace).
  No network interface exists, and when the run ends the kernel kills everything the program started.
- `uid`: as root, the program runs under a private uid, so RLIMIT_NPROC bounds a fork bomb and it owns
  no file outside its directory.
- `landlock`: writes only inside the fresh temp dir, no TCP bind/connect, no signals to processes outside.
- `rlimits`: CPU seconds, address space, processes, file size; `setsid`: its own process group, killed
  whole (SIGKILL) on timeout or when the run ends.
- `audit`: an interpreter audit hook refusing IP sockets and writes outside the directory (the only guard
  left on hosts without namespaces or Landlock; native code can get around it).

A program passes only if it exits 0 *and* the bootstrap printed a secret nonce after the program's last
line, i.e. every test ran. The nonce lives in the same process as the program, so this stops programs that
exit early, not code written to search the verifier's own stack for it.
"""
from __future__ import annotations

import functools
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from distill.config import SandboxConfig

BOOT = Path(__file__).with_name("_sandbox_boot.py")
BOOT_FAILED = 111
# Private uids for sandboxed programs: far above any real account; one per worker process (by pid).
UID_BASE = 1 << 24
DRAIN_AFTER_EXIT_S = 0.5
TERMINATE_GRACE_S = 5.0


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str
    reason: str  # empty when the program passed
    completed: bool = False  # the program ran to its last line
    isolation: tuple[str, ...] = ()
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return self.completed and self.returncode == 0 and not self.timed_out and not self.reason


@functools.cache
def sandbox_capabilities() -> dict:
    """What this host allows (root, namespaces, user namespaces, Landlock ABI), probed once per process."""
    out = subprocess.run([sys.executable, "-I", "-B", str(BOOT), "--probe"], capture_output=True,
                         text=True, timeout=30, check=True)
    return json.loads(out.stdout)


def default_layers() -> tuple[str, ...]:
    caps = sandbox_capabilities()
    layers = ["setsid", "rlimits", "audit"]
    if caps["root"]:
        layers.append("uid")
    if caps["namespaces"]:
        layers += ["pidns", "netns"]
    elif caps["userns"]:
        layers += ["userns", "pidns", "netns"]
    if caps["landlock_abi"] >= 1:
        layers.append("landlock")
    return tuple(layers)


def run_sandboxed(code: str, config: SandboxConfig, *, layers: Collection[str] | None = None) -> SandboxResult:
    """Run `code` as a Python program in a fresh temp dir; see the module docstring for the guarantees.

    `layers` narrows the isolation to a subset of `default_layers()` (tests use it to show each layer
    alone); the default is everything the host supports."""
    available = default_layers()
    chosen = tuple(layer for layer in available if layers is None or layer in layers)
    workdir = Path(tempfile.mkdtemp(prefix="distill-sbx-"))
    uid = UID_BASE + os.getpid()
    try:
        (workdir / "main.py").write_text(code, encoding="utf-8")
        if "uid" in chosen:
            os.chown(workdir, uid, uid)
        return _run(workdir, config, chosen, uid)
    finally:
        shutil.rmtree(workdir, onerror=_make_writable)


def _run(workdir: Path, config: SandboxConfig, layers: tuple[str, ...], uid: int) -> SandboxResult:
    nonce = secrets.token_hex(16)
    spec = {"nonce": nonce, "layers": list(layers), "uid": uid, "memory_mb": config.memory_mb,
            "cpu_s": max(1, int(config.timeout_s + 0.999)), "max_processes": config.max_processes,
            "max_file_mb": config.max_file_mb}
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir),
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-I", "-B", str(BOOT)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir, env=env,
                            start_new_session=True)
    try:
        try:
            proc.stdin.write((json.dumps(spec) + "\n").encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        stdout, stderr, timed_out, overflow = _collect(proc, start + config.timeout_s,
                                                       config.max_output_kb * 1024)
    finally:
        _kill_group(proc)
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
    duration = time.monotonic() - start
    out = stdout.decode("utf-8", "replace")
    err = stderr.decode("utf-8", "replace")
    completed = f"\n{nonce}\n" in out
    out = out.replace(f"\n{nonce}\n", "")
    code = proc.returncode
    reason = _reason(code, completed, timed_out, overflow, err, config)
    return SandboxResult(returncode=code, timed_out=timed_out, stdout=out, stderr=err, reason=reason,
                         completed=completed, isolation=layers, duration_s=duration)


def _collect(proc: subprocess.Popen, deadline: float, limit: int) -> tuple[bytes, bytes, bool, bool]:
    """Read both pipes until they close, the deadline passes or the output cap is hit."""
    buffers = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    selector = selectors.DefaultSelector()
    for fd in buffers:
        selector.register(fd, selectors.EVENT_READ)
    timed_out = overflow = False
    exited_at: float | None = None
    try:
        while selector.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = proc.poll() is None
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            # A grandchild that kept our pipes open must not hold a finished run hostage.
            if exited_at is not None and now - exited_at > DRAIN_AFTER_EXIT_S:
                break
            for key, _ in selector.select(timeout=min(deadline - now, 0.05)):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fd)
                    continue
                buffers[key.fd] += data
                if len(buffers[key.fd]) > limit:
                    overflow = True
                    del buffers[key.fd][limit:]
            if overflow:
                break
    finally:
        selector.close()
    return bytes(buffers[proc.stdout.fileno()]), bytes(buffers[proc.stderr.fileno()]), timed_out, overflow


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop the run and return only once its processes are gone."""
    if proc.poll() is None:
        proc.terminate()  # the bootstrap kills its namespace and waits for the kernel to reap it
        try:
            proc.wait(timeout=TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    try:  # whatever is left in the group (all of it, where there is no pid namespace)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _reason(code: int | None, completed: bool, timed_out: bool, overflow: bool, stderr: str,
            config: SandboxConfig) -> str:
    if timed_out:
        return f"timed out after {config.timeout_s:g} s (process group killed)"
    if overflow:
        return f"output over the {config.max_output_kb} KiB limit (killed)"
    if code == BOOT_FAILED and "sandbox setup failed" in stderr:
        return stderr.strip().splitlines()[-1]
    if code is not None and (code < 0 or code > 128):
        signum = -code if code < 0 else code - 128
        name = _signal_name(signum)
        if signum == signal.SIGXCPU:
            return f"CPU time limit exceeded ({name})"
        if signum == signal.SIGXFSZ:
            return f"file size limit of {config.max_file_mb} MiB exceeded ({name})"
        return f"killed by {name}"
    if code:
        last = _last_line(stderr)
        return f"exit code {code}: {last}" if last else f"exit code {code}"
    if not completed:
        return "exited with code 0 before its last line ran (the tests did not all run)"
    return ""


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _make_writable(function, path, excinfo) -> None:
    """rmtree helper: a program may have chmod'ed its files read-only; take them back and retry."""
    os.chmod(os.path.dirname(path), 0o700)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
        shutil.rmtree(path, onerror=_make_writable)
    else:
        os.unlink(path)
