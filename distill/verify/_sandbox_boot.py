"""The sandbox's warm interpreter (the "zygote"): it forks one locked-down process per untrusted run.

Started once per verifying process as `python -I -S -B _sandbox_boot.py --serve BASE SOCKET_FD`: the
base interpreter, standard library only, no site-packages, a minimal environment. Standard library only:
it must not import `distill`, and nothing here may be trusted after the untrusted code starts.

At start (once) it enters a private mount namespace where the home directories (/root, /home) are
replaced by empty tmpfs (with the interpreter's own prefix bound back where it lives there), keeps an
empty network namespace to join, imports the modules programs commonly use, and builds the Landlock
ruleset every run gets: read and execute only the standard library, the interpreter and the system
libraries; write only under BASE (which holds the one run in flight).

Per run (one JSON request on the socket, with the run's stdout, stderr and result pipes as fds):

    zygote ──fork──▶ R: setsid, unshare(pid, ipc), join the empty netns ──fork──▶ I (pid 1 of the new
    namespace) ──fork──▶ P: stdin from a file, rlimits, private uid (no capabilities left), no_new_privs,
    Landlock, audit hook, every other fd closed; then the program.

I writes the program's exit status on the run's status pipe as it exits; its exit makes the kernel kill
everything else in the namespace, so no daemon outlives its run. The zygote answers {"pid": R} at once
and {"status": code} when R exits (after I and the namespace are gone): the parent's fallback when I
never wrote (a timeout: SIGTERM to R kills I and with it the namespace).

Modes: "script" runs the program (stdin/stdout tests: the parent compares what it printed); "call" runs
the program then calls `fn_name` on each argument tuple and writes `repr(result)` a line on fd 3 (the
parent compares; expected values never come in here); "assert" runs a program that contains its own
tests and writes the nonce on fd 3 after the last line (the weak, legacy guarantee: the program could
write it too).
"""
from __future__ import annotations

import ast
import ctypes
import json
import os
import resource
import signal
import socket
import sys
import traceback

LIBC = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 2, 4, 4096, 8192, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38

# Landlock (linux/landlock.h); the syscall numbers are the same on every architecture.
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REMOVE_DIR, FS_REMOVE_FILE = 1 << 4, 1 << 5
FS_MAKE = sum(1 << b for b in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

BOOT_FAILED = 111  # exit code when a requested layer could not be applied
MASKED_DIRS = ("/root", "/home")  # hidden behind an empty tmpfs in the zygote's mount namespace
SYSTEM_LIBS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")
WARM_MODULES = ("collections", "itertools", "functools", "math", "re", "heapq", "bisect", "string", "typing",
                "fractions", "decimal", "statistics", "random", "json", "copy", "operator", "datetime",
                "hashlib", "array", "dataclasses", "io", "textwrap", "unicodedata", "cmath")


class RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


# ------------------------------------------------------------------------------------- Landlock
def landlock_abi() -> int:
    return max(0, LIBC.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                               ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)))


def _fs_rights(abi: int) -> int:
    rights = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_READ_DIR | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def readable_paths(extra: list[str]) -> list[tuple[str, str]]:
    """(path, 'dir' | 'list' | 'file') the program may read: the standard library without its
    site-packages, the interpreter, the system libraries, a few devices and `extra`."""
    stdlib = os.path.dirname(os.__file__)
    paths = [(stdlib, "list")]  # names may be listed (imports need it), contents read only below
    paths += [(os.path.join(stdlib, name), "dir" if os.path.isdir(os.path.join(stdlib, name)) else "file")
              for name in sorted(os.listdir(stdlib)) if name != "site-packages"]
    prefix_lib = os.path.join(sys.base_prefix, "lib")
    paths += [(os.path.join(prefix_lib, name), "file") for name in os.listdir(prefix_lib) if name.startswith("libpython")]
    paths += [(os.path.realpath(sys.executable), "file"), ("/etc/ld.so.cache", "file"),
              ("/dev/urandom", "file"), ("/dev/zero", "file")]
    paths += [(path, "dir") for path in SYSTEM_LIBS if os.path.isdir(path)]
    paths += [(path, "dir" if os.path.isdir(path) else "file") for path in extra]
    return [(path, kind) for path, kind in paths if os.path.exists(path)]


def build_ruleset(base: str, extra: list[str], abi: int) -> int:
    """The ruleset every run applies: read the allowed paths, write only under `base` (and /dev/null),
    no TCP, no signals or abstract sockets to processes outside the run."""
    fs = _fs_rights(abi)
    read_dir = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
    read_file = FS_EXECUTE | FS_READ_FILE
    attr = RulesetAttr(fs, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
                       SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    size = ctypes.sizeof(RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = _check(LIBC.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                                  ctypes.c_uint32(0)), "landlock_create_ruleset")
    file_write = FS_WRITE_FILE | (FS_TRUNCATE if abi >= 3 else 0)
    rules = [(base, fs), ("/dev/null", FS_READ_FILE | file_write)]
    rules += [(path, {"dir": read_dir, "list": FS_READ_DIR, "file": read_file}[kind])
              for path, kind in readable_paths(extra)]
    for path, access in rules:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            _check(LIBC.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, RULE_PATH_BENEATH,
                                ctypes.byref(PathBeneathAttr(access, fd)), ctypes.c_uint32(0)),
                   f"landlock_add_rule({path})")
        finally:
            os.close(fd)
    return ruleset


def landlock_layers(abi: int) -> list[str]:
    return ["landlock-read", "landlock-write"] + (["landlock-net"] if abi >= 4 else []) + \
        (["landlock-scope"] if abi >= 6 else [])


# ------------------------------------------------------------------------------- zygote set-up
def mask_home_dirs(keep: list[str]) -> None:
    """In a private mount namespace: hide /root and /home behind empty tmpfs, binding back `keep`
    paths that live there (the interpreter under /root/.pyenv), so a private uid can reach them."""
    _check(LIBC.unshare(CLONE_NEWNS), "unshare(mount)")
    _check(LIBC.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    for masked in MASKED_DIRS:
        if not os.path.isdir(masked):
            continue
        inside = [path for path in keep if path.startswith(masked + os.sep)]
        staged = []
        for i, path in enumerate(inside):
            stage = f"/tmp/.distill-zygote-{os.getpid()}-{i}"
            os.makedirs(stage, exist_ok=True)
            _check(LIBC.mount(path.encode(), stage.encode(), None, MS_BIND | MS_REC, None), f"bind {path}")
            staged.append((stage, path))
        _check(LIBC.mount(b"tmpfs", masked.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=64k"),
               f"mask {masked}")
        for stage, path in staged:
            os.makedirs(path, mode=0o755, exist_ok=True)
            _check(LIBC.mount(stage.encode(), path.encode(), None, MS_MOVE, None), f"move {path}")
            os.rmdir(stage)


def empty_netns() -> int:
    """An fd of a fresh network namespace (no interface but a down loopback) that every run joins."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        ok = LIBC.unshare(CLONE_NEWNET) == 0
        os.write(write_end, b"1" if ok else b"0")
        while True:
            signal.pause()
    os.close(write_end)
    ok = os.read(read_end, 1) == b"1"
    os.close(read_end)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC) if ok else -1
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    _check(fd, "netns")
    return fd


def probe() -> dict:
    """Which layers work here, each tried in a throwaway child."""
    def works(fn) -> bool:
        pid = os.fork()
        if pid == 0:
            try:
                fn()
                os._exit(0)
            except BaseException:  # noqa: BLE001 - any failure means "not available"
                os._exit(1)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

    root = os.geteuid() == 0
    return {
        "root": root,
        "namespaces": works(lambda: _check(LIBC.unshare(CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNS),
                                           "unshare")),
        "userns": (not root) and works(lambda: _check(LIBC.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare")),
        "landlock_abi": landlock_abi(),
    }


def enter_user_namespace() -> None:
    """Unprivileged host: become root of a new user namespace so the other namespaces can be made."""
    uid, gid = os.getuid(), os.getgid()
    _check(LIBC.unshare(CLONE_NEWUSER), "unshare(user)")
    with open("/proc/self/setgroups", "w") as handle:
        handle.write("deny")
    with open("/proc/self/uid_map", "w") as handle:
        handle.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as handle:
        handle.write(f"0 {gid} 1")


# --------------------------------------------------------------------------------------- one run
def wait_status(pid: int) -> int:
    """Exit code of `pid` in shell convention: 128+N when killed by signal N."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            return BOOT_FAILED
        except InterruptedError:
            continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def set_limits(spec: dict) -> None:
    mb = 1024 * 1024
    cpu = int(spec["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (spec["memory_mb"] * mb, spec["memory_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (spec["max_file_mb"] * mb, spec["max_file_mb"] * mb))
    # With its own uid RLIMIT_NPROC counts this run alone; without one, leave room for the rest.
    existing = 0 if "uid" in spec["layers"] else len(os.listdir("/proc"))
    nproc = existing + spec["max_processes"]
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Without a uid of its own (an unprivileged host's user namespace): keep the uid, lose every capability."""
    header = CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    _check(LIBC.capset(ctypes.byref(header), (CapData * 2)()), "capset")


def drop_to_uid(uid: int) -> None:
    """A private uid, no supplementary groups; from root, setresuid clears every capability."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def install_audit_guard(workdir: str) -> None:
    """Refuse IP sockets and writes outside `workdir` at the interpreter level (pure Python only;
    the last layer, and the only one on hosts without namespaces or Landlock)."""
    root = os.path.realpath(workdir)
    blocked_families = {socket.AF_INET, socket.AF_INET6}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    path_events = {"os.remove", "os.rmdir", "os.mkdir", "os.rename", "os.chmod", "os.chown", "os.link",
                   "os.symlink", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile"}

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return True  # an already-open descriptor
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        full = os.path.realpath(str(path))
        return full == root or full.startswith(root + os.sep) or full == "/dev/null"

    def hook(event: str, args: tuple) -> None:
        if event == "socket.__new__" and args[1] in blocked_families:
            raise PermissionError("network access is disabled in the sandbox")
        if event in ("socket.connect", "socket.sendto", "socket.bind") and \
                getattr(args[0], "family", None) in blocked_families:
            raise PermissionError("network access is disabled in the sandbox")
        if event == "open" and isinstance(args[2], int) and args[2] & write_flags and not inside(args[0]):
            raise PermissionError(f"writing outside the sandbox directory is not allowed: {args[0]}")
        if event == "open" and isinstance(args[1], str) and any(c in args[1] for c in "wax+") \
                and not inside(args[0]):
            raise PermissionError(f"writing outside the sandbox directory is not allowed: {args[0]}")
        if event in path_events:
            for path in args[:2]:
                if isinstance(path, (str, bytes, os.PathLike)) and not inside(path):
                    raise PermissionError(f"changing files outside the sandbox directory is not allowed: {path}")

    sys.addaudithook(hook)


def lock_down(spec: dict, ruleset: int) -> None:
    """In P, before any untrusted line: limits, uid, no_new_privs, Landlock, audit hook."""
    layers = spec["layers"]
    set_limits(spec)
    if "uid" in layers:
        drop_to_uid(spec["uid"])
    elif "userns" in layers:
        drop_capabilities()
    _check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if "landlock" in layers:
        _check(LIBC.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)), "landlock_restrict_self")
    if "audit" in layers:
        install_audit_guard(spec["workdir"])


def attach_streams(spec: dict) -> None:
    """fds 0-3 become the run's stdin (a file), stdout, stderr and results, fd 4 the sealed tests
    (proxy mode); everything else closes (in run_program, after Landlock)."""
    import io

    stdin = os.open(spec["stdin"] or "/dev/null", os.O_RDONLY)
    os.dup2(stdin, 0)
    os.close(stdin)
    for target, fd in enumerate(spec["fds"], start=1):
        os.dup2(fd, target)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8", errors="replace")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace")
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                  line_buffering=True)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def run_program(spec: dict, ruleset: int) -> None:
    """P: lock down, run the program in its mode, report on fd 3; never returns."""
    try:
        os.chdir(spec["workdir"])
        attach_streams(spec)
        os.environ.clear()
        os.environ.update(spec["env"])
        lock_down(spec, ruleset)
        os.closerange(5 if spec["mode"] == "proxy" else 4, 1 << 16)
    except Exception as exc:  # noqa: BLE001 - a layer that should work did not: never run unguarded
        os.write(2, f"sandbox setup failed: {exc}\n".encode())
        os._exit(BOOT_FAILED)

    if spec["mode"] == "proxy":
        run_proxied(spec)
    results = os.fdopen(3, "w", encoding="utf-8", errors="backslashreplace")
    with open("main.py", encoding="utf-8") as handle:
        source = handle.read()
    calls = None
    if spec["mode"] == "call":
        with open("calls.txt", encoding="utf-8") as handle:
            calls = [line for line in handle.read().split("\n") if line]
    sys.argv = ["main.py"]
    sys.path[:] = [spec["workdir"]] + [p for p in sys.path if p]
    namespace = {"__name__": "__main__", "__file__": os.path.abspath("main.py"), "__builtins__": __builtins__}
    code = 0
    try:
        # dont_inherit: the program gets no __future__ flag of this file (annotations stay evaluated, as
        # under the origin's grader: `List[int]` without an import fails there too)
        exec(compile(source, "main.py", "exec", dont_inherit=True), namespace)  # noqa: S102 - the sandbox
        if calls is not None:
            fn = _callable(namespace, spec["fn_name"])
            for line in calls:
                _call(fn, line, results)
        if spec["mode"] == "assert":
            results.write(f"{spec['nonce']}\n")
    except SystemExit as exc:  # sys.exit(): a script may end this way
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - report whatever the program raised, then fail
        traceback.print_exc(limit=5)
        code = 1
    for stream in (sys.stdout, sys.stderr, results):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110 - the program may have closed or replaced them
            pass
    os._exit(code)


def run_proxied(spec: dict) -> None:
    """Assert-style tests with the program in another process: the program (U) is forked before this
    process reads the tests and the nonce from fd 4, gets neither fd, and cannot read this process's
    memory (not dumpable: no ptrace, no /proc/pid/mem). The tests call `fn_name` through a proxy that
    sends the arguments' repr and reads back a repr, so only plain literals cross; the nonce goes to fd 3
    after the tests' last line. Never returns."""
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # before the fork: U inherits it, and nothing is secret yet
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    program = os.fork()
    if program == 0:
        for fd in (3, 4, requests_w, replies_r):
            os.close(fd)
        serve_calls(spec, requests_r, replies_w)
    os.close(requests_r)
    os.close(replies_w)
    with os.fdopen(4, "rb") as handle:
        sealed = json.loads(handle.read())
    requests = os.fdopen(requests_w, "w", encoding="utf-8")
    replies = os.fdopen(replies_r, "r", encoding="utf-8", errors="replace")

    def candidate(*args, **kwargs):
        if kwargs:
            raise TypeError("the sandboxed function takes positional arguments only")
        text = repr(list(args))
        ast.literal_eval(text)  # raises when an argument is not a plain literal
        requests.write(text.replace("\n", " ") + "\n")
        requests.flush()
        reply = replies.readline()
        if not reply:
            raise RuntimeError("the program ended before answering")
        if reply.startswith("!"):
            raise RuntimeError(f"the program raised {reply[1:].strip()}")
        return ast.literal_eval(reply)

    code = 0
    try:
        namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        try:
            exec(compile(sealed["prelude"], "prompt.py", "exec", dont_inherit=True), namespace)  # noqa: S102 - helpers
        except Exception:  # noqa: BLE001, S110 - a prompt that is prose, not code: the tests may not need it
            pass
        namespace[spec["fn_name"]] = candidate
        exec(compile(sealed["tests"], "tests.py", "exec", dont_inherit=True), namespace)  # noqa: S102 - the tests
        os.write(3, f"{sealed['nonce']}\n".encode())
    except BaseException:  # noqa: BLE001 - a failing test is the verdict
        traceback.print_exc(limit=3)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve_calls(spec: dict, requests_fd: int, replies_fd: int) -> None:
    """U: run the program, then answer calls of `fn_name` until the tests are done."""
    replies = os.fdopen(replies_fd, "w", encoding="utf-8", errors="backslashreplace")
    namespace = {"__name__": "__main__", "__file__": os.path.abspath("main.py"), "__builtins__": __builtins__}
    code = 0
    try:
        with open("main.py", encoding="utf-8") as handle:
            exec(compile(handle.read(), "main.py", "exec", dont_inherit=True), namespace)  # noqa: S102 - the sandbox
        fn = _callable(namespace, spec["fn_name"])
        with os.fdopen(requests_fd, "r", encoding="utf-8") as requests:
            for line in requests:
                _call(fn, line, replies)
    except BaseException:  # noqa: BLE001 - the tests then fail on a missing answer
        traceback.print_exc(limit=3)
        code = 1
    sys.stdout.flush()
    os._exit(code)


def _callable(namespace: dict, name: str):
    """`name` at module level, or a method of LeetCode's `class Solution`."""
    if callable(namespace.get(name)):
        return namespace[name]
    solution = namespace.get("Solution")
    if isinstance(solution, type) and hasattr(solution, name):
        return getattr(solution(), name)
    raise NameError(f"the program defines no function '{name}'")


def _call(fn, line: str, results) -> None:
    """One call: arguments as a Python literal list; the result's repr (or the error) as one line."""
    try:
        result = repr(fn(*ast.literal_eval(line)))
    except Exception as exc:  # noqa: BLE001 - a failing call is that test's verdict, not the run's
        result = "!" + f"{type(exc).__name__}: {exc}"[:200].replace("\n", " ")
    results.write(result.replace("\n", "\\n") + "\n")
    results.flush()


def private_tmpfs(spec: dict) -> None:
    """The run's directory becomes a tmpfs of `max_disk_mb` in the run's own mount namespace (gone with
    it), so a program cannot fill the host's disk with many files under the per-file size limit."""
    workdir = spec["workdir"]
    files = {}
    for name in os.listdir(workdir):
        with open(os.path.join(workdir, name), "rb") as handle:
            files[name] = handle.read()
    owner = f",uid={spec['uid']},gid={spec['uid']}" if "uid" in spec["layers"] else ""
    options = f"mode=0700,size={spec['max_disk_mb']}m,nr_inodes=4096{owner}".encode()
    _check(LIBC.mount(b"tmpfs", workdir.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options), "mount run tmpfs")
    for name, data in files.items():
        with open(os.path.join(workdir, name), "wb") as handle:
            handle.write(data)


def start_run(spec: dict, ruleset: int, netns: int) -> None:
    """R: new session and namespaces, then init (I) and the program (P); exits with P's status."""
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    layers = spec["layers"]
    try:
        os.setsid()
        flags = (CLONE_NEWPID if "pidns" in layers else 0) | (CLONE_NEWIPC if "ipcns" in layers else 0) | \
            (CLONE_NEWNS if "disk-quota" in layers else 0)
        if flags:
            _check(LIBC.unshare(flags), "unshare(pid, ipc, mount)")
        if "disk-quota" in layers:
            private_tmpfs(spec)
        if "netns" in layers:
            _check(LIBC.setns(netns, CLONE_NEWNET), "setns(net)")
    except OSError as exc:
        os.write(spec["fds"][1], f"sandbox setup failed: {exc}\n".encode())
        os._exit(BOOT_FAILED)
    init = os.fork()
    if init == 0:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if "pidns" not in layers:
            run_program(spec, ruleset)
        # pid 1 of the namespace: run the program as pid 2 so its signals behave normally, and exit
        # with it, which takes everything it left behind down with us.
        program = os.fork()
        if program == 0:
            run_program(spec, ruleset)
        for fd in spec["fds"]:
            os.close(fd)
        status = wait_status(program)
        # Straight to the parent: it need not wait for R and the zygote to wake up in turn on a busy machine.
        os.write(spec["status_fd"], f"{status}\n".encode())
        os._exit(status)
    for fd in (*spec["fds"], spec["status_fd"]):
        os.close(fd)
    # SIGTERM from the parent (timeout): kill init and wait, so the kernel has reaped everything in the
    # namespace by the time we exit.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(init, signal.SIGKILL))
    status = wait_status(init)
    if "uid" in layers and "pidns" not in layers:
        _kill_uid(spec["uid"])
    os._exit(status)


def _kill_uid(uid: int) -> None:
    """Without a pid namespace: kill whatever the program left running under its private uid."""
    pid = os.fork()
    if pid == 0:
        os.setresuid(uid, uid, uid)
        os.kill(-1, signal.SIGKILL)
        os._exit(0)
    wait_status(pid)


# ------------------------------------------------------------------------------------- the server
def _move_high(fd: int) -> int:
    if fd < 0:
        return fd
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
    os.close(fd)
    return high


def serve(base: str, sock_fd: int, extra_read: list[str]) -> None:
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the process that started us
    LIBC.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    sock = socket.socket(fileno=sock_fd)
    caps = probe()
    layers = ["setsid", "rlimits", "no-new-privs", "audit"]
    netns, ruleset = -1, -1
    try:
        if not caps["root"] and caps["userns"]:
            enter_user_namespace()
            layers.append("userns")
        if caps["root"] or caps["userns"]:
            mask_home_dirs([sys.base_prefix, *extra_read])
            netns = empty_netns()
            layers += ["mountns", "pidns", "ipcns", "netns", "disk-quota"]
        if caps["root"]:
            layers.append("uid")
        abi = landlock_abi()
        if abi >= 1:
            ruleset = build_ruleset(base, extra_read, abi)
            layers += ["landlock"] + landlock_layers(abi)
        # Far above fds 0-4, which each run's streams are dup2'ed onto.
        netns, ruleset = (_move_high(fd) for fd in (netns, ruleset))
        for name in WARM_MODULES:
            __import__(name)
    except Exception as exc:  # noqa: BLE001 - tell the parent why, it decides
        sock.send(json.dumps({"error": f"sandbox setup failed: {exc}"}).encode())
        return
    sock.send(json.dumps({"layers": layers, "caps": caps}).encode())
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 16, 5)
        except OSError:
            return
        if not message:
            return
        spec = json.loads(message)
        spec["status_fd"] = fds.pop(3)  # [stdout, stderr, results, status, (sealed tests)]
        spec["fds"] = fds
        pid = os.fork()
        if pid == 0:
            sock.close()
            start_run(spec, ruleset, netns)
        for fd in (*fds, spec["status_fd"]):
            os.close(fd)
        sock.send(json.dumps({"run": spec["run"], "pid": pid}).encode())
        sock.send(json.dumps({"run": spec["run"], "status": wait_status(pid)}).encode())


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:
        print(json.dumps(probe()))
    else:
        serve(sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]))
