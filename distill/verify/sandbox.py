"""Run untrusted Python (model-written solutions) with every isolation this host allows.

Each verifying process keeps one warm interpreter, the zygote (`_sandbox_boot.py`, standard library
only), and every run is a fork of it inside fresh isolation, so a run costs a few forks rather than an
interpreter start. Layers (`SandboxResult.isolation` lists those applied; `sandbox_capabilities()`
says what the host allows):

- `pidns`, `ipcns`: a fresh pid and IPC namespace per run; when the run ends the kernel kills every
  process it started. `netns`: an empty network namespace (no interface). `mountns`: /root and /home
  are empty directories (the interpreter's prefix is bound back where it lives there).
- `uid`: a private uid with no capabilities (so no reading through permissions), RLIMIT_NPROC bounds a
  fork bomb. `no-new-privs`: no setuid binary gives them back.
- `landlock-read`: reads only the standard library, the interpreter, the system libraries and its own
  directory; `landlock-write`: writes only in its directory; `landlock-net`: no TCP bind/connect;
  `landlock-scope`: no signals or abstract sockets to processes outside the run.
- `disk-quota`: the run's directory is a private tmpfs of `max_disk_mb` (many files under the per-file
  limit cannot fill the host's disk).
- `rlimits`: CPU seconds, address space, processes, file size; `setsid`; `audit`: an interpreter audit
  hook refusing IP sockets and writes outside the directory (the last layer; native code gets around it).

The environment is a fixed minimal one (no variable of the verifying process reaches a program).
Expected outputs never enter the sandbox: the program's stdout, or the reprs of its function's results,
come back and the caller compares them (`distill.verify.code_tests`). Only legacy assertion programs
(`mode="assert"`) report completion from inside, which a program written to fool us could forge; their
verdict says so.
"""
from __future__ import annotations

import atexit
import functools
import json
import multiprocessing.util
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from distill.config import SandboxConfig
from distill.errors import DistillError

BOOT = Path(__file__).with_name("_sandbox_boot.py")
BOOT_FAILED = 111
# Private uids for sandboxed programs: far above any real account; one per verifying process (by pid).
UID_BASE = 1 << 24
TERMINATE_GRACE_S = 5.0
START_TIMEOUT_S = 30.0
# What "isolation" means for refusing weak set-ups: at least one of these must hold reads and writes.
STRONG_LAYERS = {"mountns", "landlock"}


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None
    timed_out: bool
    stdout: str
    stderr: str
    reason: str  # empty when the program ran to its end without error
    completed: bool = False  # assert mode: the program ran to its last line
    isolation: tuple[str, ...] = ()
    duration_s: float = 0.0
    results: tuple[str, ...] = ()  # call mode: one repr (or "!Error: ...") per call

    @property
    def passed(self) -> bool:
        return self.completed and self.returncode == 0 and not self.timed_out and not self.reason


@functools.cache
def sandbox_capabilities() -> dict:
    """What this host allows (root, namespaces, user namespaces, Landlock ABI), probed once per process."""
    out = subprocess.run([_interpreter(), "-I", "-S", "-B", str(BOOT), "--probe"], capture_output=True,
                         text=True, timeout=30, check=True)
    return json.loads(out.stdout)


def default_layers() -> tuple[str, ...]:
    """Every layer the zygote applies to each run on this host."""
    return _zygote().layers


def check_isolation(config: SandboxConfig, layers: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The layers a run will get (`layers`: what a host offers, default this one's); refuses
    (DistillError) when neither namespaces nor Landlock work, unless the recipe opted in with
    `sandbox.allow_weak: true`."""
    layers = default_layers() if layers is None else layers
    if not STRONG_LAYERS & set(layers) and not config.allow_weak:
        raise DistillError(
            "code verification refused: this host allows neither namespaces nor Landlock, so untrusted "
            f"programs would run with only {', '.join(layers)} (an audit hook that native code gets around). "
            "Run on a Linux host with Landlock (5.13+) or user namespaces, or accept the risk with "
            "`sandbox.allow_weak: true` in the recipe.")
    return layers


def run_sandboxed(code: str, config: SandboxConfig, *, layers: Collection[str] | None = None,
                  mode: str = "assert", stdin: str | None = None, calls: list[str] | None = None,
                  fn_name: str | None = None, tests: str | None = None, prelude: str = "") -> SandboxResult:
    """Run `code` as a Python program in a fresh directory; see the module docstring.

    mode "assert": the program holds its own tests (passes when it runs to its end); "script": feed it
    `stdin` and hand back what it printed; "call": run it, then call `fn_name(*args)` for each Python
    literal argument list in `calls` (reprs of the results in `results`); "proxy": run `tests` (after
    `prelude`, the problem's helper code) in a process of their own, calling `fn_name` of the program
    in another (passes when the tests reach their end). `layers` narrows the isolation to a subset of
    `default_layers()` (tests use it to show each layer alone)."""
    return _zygote().run(code, config, layers, mode, stdin, calls, fn_name, tests, prelude)


# ---------------------------------------------------------------------------------------- zygote
def _interpreter() -> str:
    """The base interpreter (not a venv's): the zygote runs standard library only."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


class _Zygote:
    """This process's warm sandbox interpreter; restarted if it dies, one run at a time."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.lock = threading.Lock()
        _sweep_orphaned_bases()
        self.base = Path(tempfile.mkdtemp(prefix=f"distill-sbx-{os.getpid()}-"))
        self.base.chmod(0o711)
        self.uid = UID_BASE + os.getpid()
        self.runs = 0
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.layers: tuple[str, ...] = ()
        self._start()

    def _start(self) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        self.proc = subprocess.Popen([_interpreter(), "-I", "-S", "-B", str(BOOT), "--serve", str(self.base),
                                      str(theirs.fileno()), "[]"], pass_fds=[theirs.fileno()], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        theirs.close()
        self.sock = mine
        mine.settimeout(START_TIMEOUT_S)
        try:
            hello = json.loads(mine.recv(1 << 16) or b"{}")
        except (OSError, ValueError) as exc:
            hello = {"error": f"sandbox did not start: {exc}"}
        if "error" in hello or "layers" not in hello:
            self.close()
            raise DistillError(hello.get("error") or "sandbox did not start (no greeting from the zygote)")
        mine.settimeout(None)
        self.layers = tuple(hello["layers"])

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            _kill_tree(self.proc)
            self.proc = None

    def run(self, code: str, config: SandboxConfig, layers: Collection[str] | None, mode: str,
            stdin: str | None, calls: list[str] | None, fn_name: str | None, tests: str | None,
            prelude: str) -> SandboxResult:
        wanted = set(self.layers if layers is None else layers) | {"mountns", "no-new-privs"}  # always on
        chosen = tuple(layer for layer in self.layers if layer in wanted or layer.split("-")[0] in wanted)
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.close()
                self._start()
            self.runs += 1
            workdir = self.base / f"run-{self.runs}"
            workdir.mkdir(mode=0o700)
            try:
                (workdir / "main.py").write_text(code, encoding="utf-8")
                if stdin is not None:
                    (workdir / "stdin.txt").write_text(stdin, encoding="utf-8")
                if calls is not None:
                    (workdir / "calls.txt").write_text("".join(c.replace("\n", " ") + "\n" for c in calls),
                                                       encoding="utf-8")
                if "uid" in chosen:
                    for path in (workdir, *workdir.iterdir()):
                        os.chown(path, self.uid, self.uid)
                nonce = secrets.token_hex(16) if mode in ("assert", "proxy") else ""
                spec = {"run": self.runs, "workdir": str(workdir), "layers": list(chosen), "uid": self.uid, "mode": mode,
                        "nonce": nonce, "fn_name": fn_name, "memory_mb": config.memory_mb,
                        "max_disk_mb": config.max_disk_mb,
                        "stdin": str(workdir / "stdin.txt") if stdin is not None else None,
                        "cpu_s": max(1, int(config.timeout_s + 0.999)), "max_processes": config.max_processes,
                        "max_file_mb": config.max_file_mb,
                        "env": {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir),
                                "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}}
                sealed = {"nonce": nonce, "tests": tests or "", "prelude": prelude} if mode == "proxy" else None
                if sealed is not None:
                    spec["nonce"] = ""  # the proxy gets it through the sealed fd, after its program forked
                return self._execute(spec, config, chosen, nonce, sealed)
            finally:
                shutil.rmtree(workdir, onerror=_make_writable)

    def _execute(self, spec: dict, config: SandboxConfig, layers: tuple[str, ...], nonce: str,
                 sealed: dict | None) -> SandboxResult:
        pipes = [os.pipe() for _ in range(4)]  # stdout, stderr, results, status
        fds = [w for _, w in pipes]
        if sealed is not None:  # an unlinked file: no path to open it by, only this fd
            with tempfile.TemporaryFile(dir=self.base) as handle:
                handle.write(json.dumps(sealed).encode())
                handle.seek(0)
                fds.append(os.dup(handle.fileno()))
        start = time.monotonic()
        try:
            socket.send_fds(self.sock, [json.dumps(spec).encode()], fds)
        finally:
            for fd in fds:
                os.close(fd)
        readers = [r for r, _ in pipes]
        try:
            outputs, status, timed_out, overflow = self._collect(readers, spec["run"], start + config.timeout_s,
                                                                 config.max_output_kb * 1024)
        finally:
            for fd in readers:
                os.close(fd)
        out, err, res = (data.decode("utf-8", "replace") for data in outputs)
        lines = tuple(res.split("\n")[:-1])  # whole lines only: a run killed mid-write leaves a partial one
        completed = not nonce or nonce in lines
        if spec["mode"] != "call":
            lines = ()
        reason = _reason(status, completed, timed_out, overflow, err, config)
        return SandboxResult(returncode=status, timed_out=timed_out, stdout=out, stderr=err, reason=reason,
                             completed=completed, isolation=layers, duration_s=time.monotonic() - start,
                             results=lines)

    def _collect(self, readers: list[int], run: int, deadline: float, limit: int
                 ) -> tuple[list[bytes], int | None, bool, bool]:
        """Read the run's pipes (stdout, stderr, results, status) until they all closed, the deadline passed
        or the output cap was hit; then make sure the run is gone. Returns the first three and the status."""
        buffers = {fd: bytearray() for fd in readers}
        selector = selectors.DefaultSelector()
        for fd in readers:
            selector.register(fd, selectors.EVENT_READ)
        selector.register(self.sock, selectors.EVENT_READ)
        pid: int | None = None
        status: int | None = None
        timed_out = overflow = False
        try:
            while any(fd in selector.get_map() for fd in readers):
                now = time.monotonic()
                if now >= deadline:
                    timed_out = status is None
                    break
                for key, _ in selector.select(timeout=deadline - now):
                    if key.fileobj is self.sock:
                        message = json.loads(self.sock.recv(1 << 16) or b"{}")
                        if message.get("run") != run:
                            continue  # the late status of an earlier run
                        pid = message.get("pid", pid)
                        if "status" in message:
                            status = message["status"]
                            selector.unregister(self.sock)
                            # Its namespace is gone, so its pipes are closed; without a pid namespace
                            # (a narrowed test set-up) a leftover may hold them: read for 1 s more.
                            deadline = min(deadline, time.monotonic() + 1.0)
                        continue
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
        written = bytes(buffers[readers[3]]).strip()
        if status is None and not (timed_out or overflow) and written.lstrip(b"-").isdigit():
            status = int(written)  # init's word: the program ended and its namespace is going down
        if status is None:
            status = self._stop(pid, run, kill=timed_out or overflow)
        return [bytes(buffers[fd]) for fd in readers[:3]], status, timed_out, overflow

    def _stop(self, pid: int | None, run: int, kill: bool) -> int | None:
        """No status from the run's init: on a timeout or the output cap, SIGTERM the run (its init is killed
        and the namespace reaped); then (and when set-up failed) take the zygote's status. A zygote that
        does not answer is replaced."""
        try:
            while kill and pid is None:
                message = json.loads(self._recv(TERMINATE_GRACE_S))
                pid = message.get("pid") if message.get("run") == run else None
            if kill:
                self._terminate(pid)
            while True:
                message = json.loads(self._recv(TERMINATE_GRACE_S))
                if message.get("run") == run and "status" in message:
                    return message["status"]
        except (OSError, ValueError, KeyError, TimeoutError):
            self.close()
            return None

    def _terminate(self, pid: int) -> None:
        """SIGTERM the run's R, only while it is still the zygote's child: R may have ended and been reaped
        meanwhile, and its pid be someone else's now (the pidfd pins the process we checked)."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if self.proc is not None and ppid == self.proc.pid:
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        except (OSError, ValueError):
            pass
        finally:
            os.close(pidfd)

    def _recv(self, timeout_s: float) -> bytes:
        self.sock.settimeout(timeout_s)
        try:
            data = self.sock.recv(1 << 16)
        finally:
            self.sock.settimeout(None)
        if not data:
            raise OSError("zygote closed its socket")
        return data

    def shutdown(self) -> None:
        self.close()
        shutil.rmtree(self.base, ignore_errors=True)


_ZYGOTE: _Zygote | None = None
_ZYGOTE_LOCK = threading.Lock()


def _zygote() -> _Zygote:
    """This process's zygote (a forked child of a process with one starts its own)."""
    global _ZYGOTE
    with _ZYGOTE_LOCK:
        if _ZYGOTE is None or _ZYGOTE.owner != os.getpid():
            _ZYGOTE = _Zygote()
            atexit.register(_ZYGOTE.shutdown)
            # multiprocessing children leave through os._exit (no atexit), but run these finalizers
            multiprocessing.util.Finalize(_ZYGOTE, _ZYGOTE.shutdown, exitpriority=10)
        return _ZYGOTE


def _sweep_orphaned_bases() -> None:
    """Remove the run directories of verifying processes that were killed (SIGKILL skips atexit)."""
    for base in Path(tempfile.gettempdir()).glob("distill-sbx-*-*"):
        owner = base.name.split("-")[2]
        if not owner.isdigit():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(base, onerror=_make_writable)
        except PermissionError:
            continue


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def _reason(code: int | None, completed: bool, timed_out: bool, overflow: bool, stderr: str,
            config: SandboxConfig) -> str:
    if timed_out:
        return f"timed out after {config.timeout_s:g} s (process group killed)"
    if overflow:
        return f"output over the {config.max_output_kb} KiB limit (killed)"
    if code is None:
        return "the sandbox did not report an exit status (zygote restarted)"
    if code == BOOT_FAILED and "sandbox setup failed" in stderr:
        return stderr.strip().splitlines()[-1][:300]
    if code < 0 or code > 128:
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
