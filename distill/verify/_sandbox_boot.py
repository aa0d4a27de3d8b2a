"""The first code to run inside the sandbox: it locks the process down, then runs the untrusted program.

Run as `python -I -B _sandbox_boot.py` with the sandbox dir as cwd and one JSON line on stdin (the spec:
limits, which isolation layers to apply, and a secret nonce). Standard library only: it must not import
`distill`, and nothing here may be trusted after the untrusted code starts.

Process layout (each layer only where `spec["layers"]` asks for it; `--probe` reports what works):

    outer (session leader, dies with its parent) ── unshare(net, pid, ipc) ──▶ init (pid 1 of the new
    namespaces) ──▶ user: rlimits, drop uid, no_new_privs, Landlock, audit hook, then the program.

When `init` exits the kernel kills every process left in the pid namespace, so nothing the program
forks or daemonizes outlives the run. The nonce is printed only after the program's last line ran
without raising; the parent requires it, so `os._exit(0)` or `sys.exit(0)` before the tests cannot pass.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
import traceback

LIBC = ctypes.CDLL(None, use_errno=True)

CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS = 1, 8, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 47, 2
CAP_DAC_READ_SEARCH = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522

# Landlock (linux/landlock.h); the syscall numbers are the same on every architecture.
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH, RULE_NET_PORT = 1, 2
FS_WRITE_FILE, FS_REMOVE_DIR, FS_REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
FS_MAKE = sum(1 << b for b in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
FS_REFER, FS_TRUNCATE = 1 << 13, 1 << 14
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

BOOT_FAILED = 111  # exit code when a requested layer could not be applied


class RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


# ------------------------------------------------------------------------------------------ layers
def landlock_abi() -> int:
    return max(0, LIBC.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                               ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)))


def apply_landlock(workdir: str, abi: int) -> list[str]:
    """Writes only under `workdir` (and /dev/null), no TCP, no signals or abstract sockets outside."""
    write = FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE
    if abi >= 2:
        write |= FS_REFER
    if abi >= 3:
        write |= FS_TRUNCATE
    attr = RulesetAttr(write, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
                       SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    size = ctypes.sizeof(RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = _check(LIBC.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                                  ctypes.c_uint32(0)), "landlock_create_ruleset")
    for path, access in ((workdir, write), ("/dev/null", FS_WRITE_FILE | (FS_TRUNCATE if abi >= 3 else 0))):
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = PathBeneathAttr(access, fd)
        _check(LIBC.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.byref(rule),
                            ctypes.c_uint32(0)), f"landlock_add_rule({path})")
        os.close(fd)
    _check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(LIBC.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)), "landlock_restrict_self")
    os.close(ruleset)
    applied = ["landlock-fs"]
    if abi >= 4:
        applied.append("landlock-net")
    if abi >= 6:
        applied.append("landlock-scope")
    return applied


def drop_to_uid(uid: int) -> None:
    """Become an unprivileged uid (so RLIMIT_NPROC counts this run alone and no file outside is ours),
    keeping only CAP_DAC_READ_SEARCH so an interpreter under a private home (e.g. /root/.pyenv) still loads."""
    _check(LIBC.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "keepcaps")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    header = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    keep = 1 << CAP_DAC_READ_SEARCH
    data = (CapData * 2)(CapData(keep, keep, keep), CapData(0, 0, 0))
    _check(LIBC.capset(ctypes.byref(header), data), "capset")
    # Ambient: a `python` the program starts (subprocess) keeps the read capability across exec.
    _check(LIBC.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_DAC_READ_SEARCH, 0, 0), "ambient cap")


def set_limits(spec: dict, uid: int) -> None:
    mb = 1024 * 1024
    cpu = int(spec["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (spec["memory_mb"] * mb, spec["memory_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (spec["max_file_mb"] * mb, spec["max_file_mb"] * mb))
    # RLIMIT_NPROC counts every task of the real uid: with our own uid it is exactly this run; without
    # one, leave room for what the user already runs.
    existing = 0 if "uid" in spec["layers"] else _tasks_of(uid)
    nproc = existing + spec["max_processes"]
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def _tasks_of(uid: int) -> int:
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{name}/task"))
            except OSError:
                continue
    return count


def install_audit_guard(workdir: str) -> None:
    """Refuse IP sockets and writes outside `workdir` at the interpreter level.

    Only pure-Python code is covered (ctypes gets around it); it is the last layer, and the only one on
    systems without namespaces or Landlock. Audit hooks cannot be removed once added."""
    import socket

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


# -------------------------------------------------------------------------------------- processes
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


def run_user(spec: dict, sentinel_fd: int) -> None:
    """In the process that will run the program: lock down, run it, print the nonce only on completion."""
    workdir = os.getcwd()
    uid = spec.get("uid", os.getuid())
    layers = spec["layers"]
    try:
        set_limits(spec, os.getuid() if "uid" not in layers else uid)
        if "uid" in layers:
            drop_to_uid(uid)
        if "landlock" in layers:
            apply_landlock(workdir, landlock_abi())
        if "audit" in layers:
            install_audit_guard(workdir)
    except Exception as exc:  # noqa: BLE001 - a layer that should work did not: never run unguarded
        print(f"sandbox setup failed: {exc}", file=sys.stderr, flush=True)
        os._exit(BOOT_FAILED)

    source_path = os.path.join(workdir, "main.py")
    with open(source_path, encoding="utf-8") as handle:
        source = handle.read()
    sys.argv = ["main.py"]
    sys.path.insert(0, workdir)
    namespace = {"__name__": "__main__", "__file__": source_path, "__builtins__": __builtins__}
    code = 0
    completed = False
    try:
        exec(compile(source, "main.py", "exec"), namespace)  # noqa: S102 - this is the sandbox
        completed = True
    except SystemExit as exc:  # sys.exit() before the end: the tests did not all run
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - report whatever the program raised, then fail
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110 - the program may have closed or replaced them
            pass
    if completed:
        os.write(sentinel_fd, f"\n{spec['nonce']}\n".encode())
    os._exit(code)


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    layers = spec["layers"]
    # Die with the worker that started us, so a killed filter never leaves a sandbox behind.
    LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if "netns" in layers or "pidns" in layers:
        flags = (CLONE_NEWNET | CLONE_NEWIPC if "netns" in layers else 0) | \
                (CLONE_NEWPID if "pidns" in layers else 0) | (CLONE_NEWUSER if "userns" in layers else 0)
        uid, gid = os.getuid(), os.getgid()
        try:
            _check(LIBC.unshare(flags), "unshare")
            if "userns" in layers:  # unprivileged: map ourselves to root inside
                with open("/proc/self/setgroups", "w") as handle:
                    handle.write("deny")
                with open("/proc/self/uid_map", "w") as handle:
                    handle.write(f"0 {uid} 1")
                with open("/proc/self/gid_map", "w") as handle:
                    handle.write(f"0 {gid} 1")
        except OSError as exc:
            print(f"sandbox setup failed: {exc}", file=sys.stderr, flush=True)
            os._exit(BOOT_FAILED)
    sentinel_fd = os.dup(1)
    pid = os.fork()
    if pid == 0:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if "pidns" in layers:
            # We are pid 1 of the namespace: run the program as pid 2 so its signals behave normally,
            # and exit with it, which takes everything it left behind down with us.
            child = os.fork()
            if child == 0:
                run_user(spec, sentinel_fd)
            os._exit(wait_status(child))
        run_user(spec, sentinel_fd)
    os.close(sentinel_fd)
    # SIGTERM from the parent (timeout): kill the namespace's init and wait, so the kernel has reaped
    # everything in the namespace by the time we exit and the parent's wait() returns.
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    status = wait_status(pid)
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


def probe() -> None:
    """Print which layers work here, as JSON, trying each in a throwaway child."""
    def works(flags: int) -> bool:
        pid = os.fork()
        if pid == 0:
            os._exit(0 if LIBC.unshare(flags) == 0 else 1)
        return wait_status(pid) == 0

    root = os.geteuid() == 0
    ns_flags = CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWPID
    result = {
        "root": root,
        "namespaces": works(ns_flags),
        "userns": (not root) and works(ns_flags | CLONE_NEWUSER),
        "landlock_abi": landlock_abi(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:
        probe()
    else:
        main()
