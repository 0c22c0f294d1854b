"""The sandbox's process side: a pre-warmed fork server whose children each run one strategy.

Three processes per run, each with one job (ARCHITECTURE.md, "Sandbox", layer 3):

- the *server* (``python -I -c SERVER_COMMAND FD``, started by ``runner``) imports
  numpy, pandas and the engine once, moves into its own mount and network namespaces with a
  minimal read-only root (the Python installation, the venv, the ``quantdesk`` package, a few
  device nodes: no ``.env``, no ``var/``, no ``/etc``, no ``/proc``) and forks one supervisor
  per run; it never reads a request, so no run's code or data is left in what later runs inherit;
- the *supervisor* (root, trusted) reads the request, unshares fresh PID, mount, network, IPC and
  UTS namespaces, forks the worker, enforces the wall clock and the result size, and answers the
  parent with facts (exit status, CPU time, the result bytes) as JSON;
- the *worker* (PID 1 of its namespace, untrusted once user code runs) mounts a private scratch
  tmpfs, clears its environment, sets rlimits, drops to ``nobody``, runs the engine on the user's
  code and writes one length-prefixed JSON message. When it dies the kernel kills everything left
  in its PID namespace, so no descendant (even a double-forked daemon) survives it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import importlib
import json
import linecache
import os
import platform
import pwd
import resource
import select
import signal
import socket
import struct
import sys
import sysconfig
import time
import traceback
from collections.abc import Mapping
from datetime import date
from types import FrameType, ModuleType
from typing import Any, NoReturn

import numpy as np
import pandas as pd

import quantdesk.engine as qe
from quantdesk.engine.result import Result, frame_records, json_safe
from quantdesk.sandbox.limits import SandboxLimits

STRATEGY_FILENAME = "strategy.py"  # the only file name a user's traceback ever shows
SCRATCH_DIR = "/scratch"
LOG_MARKER = "[log truncated: limit reached]"  # the engine's last line when a log cap is hit

# Worker exit codes the supervisor reports (anything else is an unexpected exit).
EXIT_SETUP_FAILED = 120
EXIT_CPU = 121
EXIT_INTERNAL = 122

_LEN = struct.Struct("<Q")
REQUEST_MAGIC = b"QDS1"
CONSOLE_CAP = 16_384  # bytes of the worker's stdout/stderr kept for operators' logs
_ERROR_CAP = 2_000
_TRACEBACK_CAP = 20_000

# Linux constants (linux/sched.h, linux/mount.h, linux/prctl.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MNT_DETACH = 2
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS = 1, 4, 38
# x86_64 system-call numbers (asm/unistd_64.h); another machine needs its own table, so the
# server refuses to start there rather than run with a half-built filter.
_MACHINE = "x86_64"
_SYS_PIVOT_ROOT, _SYS_CLONE, _SYS_CLONE3 = 155, 56, 435
# The worker's seccomp denylist: calls a strategy never makes that reach kernel attack surface
# or the machine's state. Without it an unprivileged process may still unshare(CLONE_NEWUSER)
# and get capabilities inside its own user namespace (measured here).
_DENIED_SYSCALLS = {
    "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
    "chroot": 161, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "mount_setattr": 442, "ptrace": 101,
    "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "bpf": 321,
    "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "keyctl": 250, "add_key": 248, "request_key": 249,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
    "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163,
    "quotactl": 179, "syslog": 103, "open_by_handle_at": 304, "name_to_handle_at": 303,
    "personality": 135, "iopl": 172, "ioperm": 173, "modify_ldt": 154, "settimeofday": 164,
    "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159, "sethostname": 170,
    "setdomainname": 171, "vhangup": 153, "uselib": 134, "lookup_dcookie": 212,
}  # fmt: skip
_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
# Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h, linux/audit.h).
_LD_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_AUDIT_ARCH_X86_64 = 0xC000003E
_RET_KILL, _RET_ERRNO, _RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


def seccomp_program() -> list[tuple[int, int, int, int]]:
    """The worker's filter: other ABIs killed, namespace and denied calls refused (EPERM)."""
    eperm = _RET_ERRNO | errno.EPERM
    program = [
        (_LD_ABS, 0, 0, 4),  # seccomp_data.arch
        (_JEQ, 1, 0, _AUDIT_ARCH_X86_64),
        (_RET, 0, 0, _RET_KILL),  # i386 calls through int 0x80 bypass the table: kill
        (_LD_ABS, 0, 0, 0),  # seccomp_data.nr
        (_JGE, 0, 1, 0x40000000),  # the x32 ABI
        (_RET, 0, 0, eperm),
        (_JEQ, 0, 1, _SYS_CLONE3),  # flags in memory, unfilterable: glibc falls back to clone
        (_RET, 0, 0, _RET_ERRNO | errno.ENOSYS),
        (_JEQ, 0, 4, _SYS_CLONE),
        (_LD_ABS, 0, 0, 16),  # args[0] (low half): the clone flags
        (_JSET, 0, 1, _NAMESPACE_FLAGS),
        (_RET, 0, 0, eperm),
        (_RET, 0, 0, _RET_ALLOW),
    ]
    for number in sorted(set(_DENIED_SYSCALLS.values())):
        program += [(_JEQ, 0, 1, number), (_RET, 0, 0, eperm)]
    program.append((_RET, 0, 0, _RET_ALLOW))
    return program


def _install_seccomp() -> None:
    program = seccomp_program()
    filters = (_SockFilter * len(program))(*(_SockFilter(*op) for op in program))
    fprog = _SockFprog(len(program), filters)
    rc = _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0)
    _check(rc, "seccomp")


_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    """``unshare(2)`` (``os.unshare`` only exists from Python 3.12)."""
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    rc = _libc.mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(rc, f"mount {target}")


def _prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl({option})")


# --- framing (also used by runner.py) -----------------------------------------------------


def frame(data: bytes) -> bytes:
    """``data`` preceded by its length (8 bytes, little endian)."""
    return _LEN.pack(len(data)) + data


def read_exact(conn: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes from ``conn``; EOF before that is an error."""
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_frame(conn: socket.socket, cap: int) -> bytes:
    """One length-prefixed message; longer than ``cap`` is an error (nothing more is read)."""
    (size,) = _LEN.unpack(read_exact(conn, _LEN.size))
    if size > cap:
        raise ValueError(f"message of {size} bytes is over the cap of {cap}")
    return read_exact(conn, size)


# --- the fork server ----------------------------------------------------------------------


def serve(ctrl_fd: int, read_only_paths: tuple[str, ...] = ()) -> None:
    """Pre-warm, isolate, then fork one supervisor per connection the parent sends."""
    ctrl = socket.socket(fileno=ctrl_fd)
    try:
        _prewarm()
        ids = _nobody()
        _isolate_server(read_only_paths)
    except Exception as exc:  # fail loudly: the parent raises SandboxUnavailable with this
        ctrl.send(f"error: {type(exc).__name__}: {exc}".encode())
        sys.exit(1)
    ctrl.send(b"ready")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    while True:
        msg, fds, _flags, _addr = socket.recv_fds(ctrl, 16, 8)
        if not msg and not fds:
            return  # the parent is gone
        for fd in fds:
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    _supervise(fd, ctrl_fd, ids)
                except BaseException:
                    code = 1
                os._exit(code)
            os.close(fd)


_GUARD: ModuleType | None = None


def _prewarm() -> None:
    """Import and exercise what a run needs, so a forked worker starts in milliseconds."""
    global _GUARD
    import datetime  # noqa: F401  (allowed strategy modules)
    import math  # noqa: F401
    import statistics  # noqa: F401

    import quantdesk.engine.metrics  # Result.metrics imports it lazily
    import quantdesk.indicators  # noqa: F401

    try:  # the language layer (guard.py); when it is missing, layer-on runs fail loudly
        _GUARD = importlib.import_module("quantdesk.sandbox.guard")
    except ImportError:
        _GUARD = None
    frame_ = pd.DataFrame(
        {"open": [1.0, 1.1, 1.2], "high": 1.3, "low": 0.9, "close": [1.1, 1.2, 1.1], "volume": 1e6},
        index=pd.bdate_range("2024-01-02", periods=3),
    )
    warm = "def handle_bar(ctx, data):\n    ctx.order_target_percent('X', 0.5)\n    ctx.log('x')\n"
    json.dumps(qe.backtest(warm, qe.Bars.from_frames({"X": frame_}), market="us").to_dict())
    gc.collect()
    gc.freeze()  # keep the warm objects out of the children's GC: fewer copy-on-write pages


def _nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return 65534, 65534
    return entry.pw_uid, entry.pw_gid


def _bind_sources(extra: tuple[str, ...]) -> list[str]:
    """Host paths the children may read: the Python installation, the venv, quantdesk."""
    import quantdesk

    paths = ["/usr", "/etc/ld.so.cache", *extra]
    paths += [sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    paths.append(os.path.dirname(os.path.abspath(quantdesk.__file__)))
    real = sorted({os.path.realpath(p) for p in paths if os.path.exists(p)})
    kept: list[str] = []
    for path in real:  # drop paths inside another one
        if not any(path == k or path.startswith(k + "/") for k in kept):
            kept.append(path)
    return kept


def _isolate_server(extra: tuple[str, ...]) -> None:
    """Own mount and network namespaces; a minimal read-only root (pivot_root, old root gone)."""
    if platform.machine() != _MACHINE:
        raise OSError(f"system-call tables are for {_MACHINE}, not {platform.machine()}")
    if os.geteuid() != 0:
        raise PermissionError("the sandbox server must start as root (namespaces, setuid)")
    unshare(CLONE_NEWNS | CLONE_NEWNET)
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing we mount propagates to the host
    # Hold every source before the new root's tmpfs hides /tmp (a source may live under it).
    nodes = [f"/dev/{node}" for node in ("null", "zero", "random", "urandom")]
    held = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in [*_bind_sources(extra), *nodes]}
    root = "/tmp"  # noqa: S108  (a tmpfs over it, visible only in this mount namespace)
    _mount("tmpfs", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")
    for src, fd in held.items():
        dst = root + src
        os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(dst, mode=0o755, exist_ok=True)
        else:
            open(dst, "w").close()  # a mount point for a file
        _mount(f"/proc/self/fd/{fd}", dst, None, _MS_BIND | _MS_REC)
        os.close(fd)
        if src not in nodes:  # device nodes stay writable (/dev/null)
            flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
            _mount(None, dst, None, flags)
    for name in ("bin", "lib", "lib64", "sbin"):  # merged-/usr symlinks
        if os.path.islink("/" + name):
            os.symlink(os.readlink("/" + name), f"{root}/{name}")
    os.makedirs(root + SCRATCH_DIR, mode=0o755)
    os.makedirs(f"{root}/.old", mode=0o700)
    _check(_libc.syscall(_SYS_PIVOT_ROOT, root.encode(), f"{root}/.old".encode()), "pivot_root")
    os.chdir("/")
    _check(_libc.umount2(b"/.old", _MNT_DETACH), "umount old root")
    os.rmdir("/.old")
    _mount(None, "/", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)


# --- the supervisor (trusted, root) ---------------------------------------------------------


def _supervise(conn_fd: int, ctrl_fd: int, ids: tuple[int, int]) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.close(ctrl_fd)
    conn = socket.socket(fileno=conn_fd)
    conn.settimeout(30.0)  # the parent writes the request at once
    if read_exact(conn, len(REQUEST_MAGIC)) != REQUEST_MAGIC:
        raise ValueError("bad request")
    header = json.loads(read_frame(conn, 64 << 20))
    payload = read_exact(conn, int(header["payload_bytes"]))
    limits = SandboxLimits.from_dict(header["limits"])
    unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
    result_r, result_w = os.pipe()
    console_r, console_w = os.pipe()
    started = time.monotonic()
    pid = os.fork()  # PID 1 of the new PID namespace
    if pid == 0:
        code = EXIT_INTERNAL
        try:
            code = _worker(header, payload, limits, ids, result_w, console_w)
        finally:
            os._exit(code)
    os.close(result_w)
    os.close(console_w)
    report, data = _watch(pid, result_r, console_r, limits, started)
    conn.sendall(frame(json.dumps(report).encode()) + frame(data))
    conn.close()


def _watch(
    pid: int, result_r: int, console_r: int, limits: SandboxLimits, started: float
) -> tuple[dict[str, Any], bytes]:
    """Collect the worker's output until it exits, the wall clock runs out or it sends too much."""
    deadline = started + limits.wall_seconds
    pidfd = os.pidfd_open(pid)
    result = bytearray()
    console = bytearray()
    cap = limits.max_result_bytes + _LEN.size
    timed_out = oversize = exited = False
    readers = {result_r, console_r}

    def pump(fd: int) -> bool:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            readers.discard(fd)
            return False
        if fd == console_r:
            console.extend(chunk[: max(0, CONSOLE_CAP - len(console))])
        else:
            result.extend(chunk[: max(0, cap - len(result))])
        return True

    while not exited:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([*readers, pidfd], [], [], remaining)
        for fd in ready:
            if fd == pidfd:
                exited = True
            else:
                pump(fd)
        if len(result) >= _LEN.size and _LEN.unpack_from(result)[0] > limits.max_result_bytes:
            oversize = True
            break
    if not exited:
        for kill in (os.killpg, os.kill):  # its group, then PID 1: the kernel kills the rest
            with contextlib.suppress(ProcessLookupError):
                kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)  # returns once every process of the namespace is gone
    os.close(pidfd)
    while readers:  # every writer is dead now: drain to EOF
        for fd in list(readers):
            pump(fd)
    complete = False
    if len(result) >= _LEN.size:
        size = _LEN.unpack_from(result)[0]
        oversize = oversize or size > limits.max_result_bytes
        complete = not oversize and len(result) >= _LEN.size + size
    body = bytes(result[_LEN.size : _LEN.size + _LEN.unpack_from(result)[0]]) if complete else b""
    report = {
        "exit_code": os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "max_rss_kb": usage.ru_maxrss,
        "wall_seconds": time.monotonic() - started,
        "timed_out": timed_out,
        "oversize": oversize,
        "complete": complete,
        "console": console.decode("utf-8", "replace"),
    }
    return report, body


# --- the worker (untrusted once user code runs) -------------------------------------------


def _worker(
    header: Mapping[str, Any],
    payload: bytes,
    limits: SandboxLimits,
    ids: tuple[int, int],
    result_w: int,
    console_w: int,
) -> int:
    try:
        _confine(limits, ids, result_w, console_w)
    except BaseException as exc:  # never run user code half-confined
        os.write(2, f"sandbox setup failed: {exc!r}\n".encode())
        return EXIT_SETUP_FAILED
    reserve: bytearray | None = bytearray(1 << 20)  # freed to report a MemoryError
    try:
        _run(header, payload, limits)  # answers and exits
    except MemoryError:
        reserve = None
        _finish({"ok": False, "error": _memory_error(limits), "limit": "memory"}, limits)
    except BaseException:  # a platform bug, not the user's: details go to operators only
        traceback.print_exc()
    del reserve
    return EXIT_INTERNAL


def _finish(message: Mapping[str, Any], limits: SandboxLimits) -> NoReturn:
    send_message(message, limits)
    os._exit(0)  # now: freeing the run's objects would only delay the answer by milliseconds


def _confine(limits: SandboxLimits, ids: tuple[int, int], result_w: int, console_w: int) -> None:
    """Everything between fork and user code; each step is why the OS layer holds alone."""
    uid, gid = ids
    os.setsid()  # own session and process group: the kill takes the group
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(console_w, 1)
    os.dup2(console_w, 2)
    os.dup2(result_w, 3)
    os.closerange(4, 1 << 20)  # no inherited fd but stdio and the result pipe
    # A private scratch tmpfs: the only writable place; it vanishes with the namespace.
    size_mb = max(1, int(limits.file_size_mb))
    opts = f"size={size_mb}m,nr_inodes=1024,mode=0700,uid={uid},gid={gid}"
    _mount("tmpfs", SCRATCH_DIR, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, opts)
    os.chdir(SCRATCH_DIR)
    os.environ.clear()  # no DATABASE_URL, JWT_SECRET_KEY, DEEPSEEK_API_KEY: none at all
    cpu = max(1, int(limits.cpu_seconds))
    mem = int(limits.memory_mb) << 20
    fsize = int(limits.file_size_mb * (1 << 20))
    for rlimit, value in (
        (resource.RLIMIT_CORE, (0, 0)),  # a crash must not write the process's memory to disk
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),  # soft: SIGXCPU; hard: SIGKILL (cannot be caught)
        (resource.RLIMIT_AS, (mem, mem)),  # address space: a memory bomb gets MemoryError
        (resource.RLIMIT_FSIZE, (fsize, fsize)),  # no file larger than this, even in scratch
        (resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files)),  # no fd exhaustion
        (resource.RLIMIT_NPROC, (1 + limits.processes, 1 + limits.processes)),  # no fork/thread
        (resource.RLIMIT_MEMLOCK, (0, 0)),
        (resource.RLIMIT_MSGQUEUE, (0, 0)),
    ):
        resource.setrlimit(rlimit, value)
    # PID 1 ignores a default-action SIGXCPU: a handler makes the soft limit stop it at once.
    signal.signal(signal.SIGXCPU, _on_cpu_limit)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # RLIMIT_NPROC only binds a non-root user (REFERENCE.md)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)  # no setuid binary can give privileges back
    _prctl(_PR_SET_DUMPABLE, 0)  # not ptrace-able, no core
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the supervisor dies -> so does the worker
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise PermissionError("could not drop privileges")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise PermissionError("root could be regained after dropping privileges")
    sys.dont_write_bytecode = True
    _install_seccomp()  # last: nothing after this needs a denied call


def _on_cpu_limit(signum: int, _frame: FrameType | None) -> None:
    os._exit(EXIT_CPU)


def _bars(header: Mapping[str, Any], payload: bytes) -> qe.Bars:
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for spec in header["arrays"]:
        dtype = np.dtype(spec["dtype"])
        shape = tuple(int(n) for n in spec["shape"])
        count = int(np.prod(shape)) if shape else 1
        flat = np.frombuffer(payload, dtype=dtype, count=count, offset=int(spec["offset"]))
        arrays[spec["name"]] = flat.reshape(shape)  # read-only: a view of immutable bytes
    listing = {str(s): date.fromisoformat(d) for s, d in header["listing_dates"].items()}
    return qe.Bars(
        dates=pd.DatetimeIndex(arrays.pop("dates").view("datetime64[ns]"), name="date"),
        symbols=tuple(str(s) for s in header["symbols"]),
        listing_dates=listing,
        **arrays,
    )


def _load(code: str, language_layers: bool) -> Any:
    """The strategy's namespace: through the guard (language layers) or plain ``exec``."""
    if language_layers:
        guard = _GUARD or importlib.import_module("quantdesk.sandbox.guard")
        loaded = guard.load_strategy(code)
        # guard.load_strategy returns the namespace, or a wrapper holding it as `.namespace`.
        return getattr(loaded, "namespace", loaded)
    namespace: dict[str, Any] = {"__name__": "strategy", "__builtins__": __builtins__}
    exec(compile(code, STRATEGY_FILENAME, "exec"), namespace)  # noqa: S102  (OS layer alone)
    return namespace


def _user_files(strategy: Any) -> set[str]:
    """File names of the user's code: ours, or whatever name the guard compiled it under."""
    names = {STRATEGY_FILENAME}
    items = strategy.items() if isinstance(strategy, Mapping) else vars(strategy).items()
    for _, value in items:
        code = getattr(value, "__code__", None)
        if code is not None:
            names.add(code.co_filename)
    return names


def _run(header: Mapping[str, Any], payload: bytes, limits: SandboxLimits) -> NoReturn:
    bars = _bars(header, payload)
    code = str(header["code"])
    lines = code.splitlines(keepends=True)
    linecache.cache[STRATEGY_FILENAME] = (len(code), None, lines, STRATEGY_FILENAME)
    files = {STRATEGY_FILENAME}
    log_limits = qe.LogLimits(max_lines=limits.max_log_lines, max_bytes=limits.max_log_bytes)
    try:
        strategy = _load(code, bool(header["language_layers"]))
        files = _user_files(strategy)
        for name in files:
            linecache.cache[name] = (len(code), None, lines, name)
        result = qe.backtest(strategy, bars, **header["config"], log_limits=log_limits)
        data = result_dict(result)
    except MemoryError:
        raise
    except BaseException as exc:
        _finish(failure(exc, limits, files), limits)
    _finish({"ok": True, "result": data, "notices": apply_caps(data, limits)}, limits)


def result_dict(result: Result) -> dict[str, Any]:
    """The result as the child sends it (a seam: tests of a lying child patch it).

    ``Result.to_dict()`` without what the parent recomputes from the numbers it verifies
    (metrics, round trips, the equity curve's benchmark and drawdown), and with the equity
    curve as two columns rather than one object per bar: a third of the JSON, and no per-cell
    conversion. verify.py turns it back into ``to_dict()``'s form; a test holds them equal.
    """
    equity, records = result.equity, result.records
    return {
        "rulebook_version": result.rulebook_version,
        "config": json_safe(result.config),
        "equity": {"equity": equity["equity"].tolist(), "cash": equity["cash"].tolist()},
        "fills": frame_records(result.fills),
        "refusals": frame_records(result.refusals),
        "positions": frame_records(result.final_positions),
        "logs": frame_records(result.logs),
        "records": {
            "dates": json_safe(list(records.index)),
            "series": {str(name): json_safe(records[name].to_numpy()) for name in records},
        },
        "state": json_safe(result.state),
        "book": json_safe(result.book),
        "pending_orders": frame_records(result.pending_orders),
    }


def apply_caps(data: dict[str, Any], limits: SandboxLimits) -> list[str]:
    """Cut records to their caps; say which caps were hit (logs are cut by the engine)."""
    notices: list[str] = []
    logs = data.get("logs") or []
    if logs and logs[-1].get("message") == LOG_MARKER:
        notices.append(
            f"log cut at its limit ({limits.max_log_lines} lines, {limits.max_log_bytes} bytes)"
        )
    records = data.get("records") or {}
    series: dict[str, Any] = records.get("series") or {}
    n_dates = max(1, len(records.get("dates") or []))
    keep = min(limits.max_record_series, limits.max_record_points // n_dates)
    if len(series) > keep:
        records["series"] = dict(list(series.items())[:keep])
        notices.append(
            f"records cut to {keep} of {len(series)} series (limits: "
            f"{limits.max_record_series} series, {limits.max_record_points} values)"
        )
    return notices


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _memory_error(limits: SandboxLimits) -> str:
    return f"stopped: memory limit of {limits.memory_mb:g} MB reached"


def failure(exc: BaseException, limits: SandboxLimits, files: set[str]) -> dict[str, Any]:
    """A failed run as the user sees it: a message and a traceback of their own frames only."""
    chain = _chain(exc)
    limit: str | None = None
    if any(isinstance(e, MemoryError) for e in chain):
        limit, error = "memory", _memory_error(limits)
    elif any(isinstance(e, OSError) and e.errno in (errno.EFBIG, errno.ENOSPC) for e in chain):
        limit, error = (
            "file_size",
            f"stopped: file size limit of {limits.file_size_mb:g} MB reached",
        )
    elif isinstance(exc, qe.EngineError):
        error = str(exc)
    else:
        error = _describe(exc)
    return {
        "ok": False,
        "error": error[:_ERROR_CAP],
        "traceback": _user_traceback(chain, files)[:_TRACEBACK_CAP],
        "limit": limit,
    }


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, SyntaxError) and exc.args and isinstance(exc.args[0], tuple | list):
        text = "; ".join(str(part) for part in exc.args[0])  # RestrictedPython's error list
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _user_traceback(chain: list[BaseException], files: set[str]) -> str:
    """The innermost exception with frames in the user's file, shown as ``strategy.py``."""
    for exc in reversed(chain):
        if isinstance(exc, SyntaxError) and exc.filename in files:
            exc.filename = STRATEGY_FILENAME
            return "".join(traceback.format_exception_only(SyntaxError, exc)).replace(
                "SyntaxError", type(exc).__name__, 1
            )
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in files]
        if frames:
            for f in frames:
                f.filename = STRATEGY_FILENAME
            body = "".join(traceback.StackSummary.from_list(frames).format())
            return f"Traceback (most recent call last):\n{body}{_describe(exc)}\n"
    return ""


def send_message(message: Mapping[str, Any], limits: SandboxLimits) -> None:
    """Write one length-prefixed JSON message to the result pipe (fd 3), within the size cap."""
    try:
        body = json.dumps(message, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        error = f"the result is not JSON-serialisable: {exc}"
        body = json.dumps({"ok": False, "error": error[:_ERROR_CAP]}).encode()
    if len(body) > limits.max_result_bytes:
        error = f"stopped: result size limit of {format_bytes(limits.max_result_bytes)} reached"
        body = json.dumps({"ok": False, "error": error, "limit": "result_size"}).encode()
    view = memoryview(frame(body))
    while view:
        view = view[os.write(3, view) :]


def format_bytes(n: float) -> str:
    """``20 MB``, ``100 KB``, ``512 bytes`` (decimal units, as users read them)."""
    for unit, size in (("MB", 1_000_000), ("KB", 1_000)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n:g} bytes"


SERVER_COMMAND = "from quantdesk.sandbox.child import main; main()"


def main() -> None:
    """Entry point: ``python -I -c SERVER_COMMAND CONTROL_FD PATHS`` (``-c``, not ``-m``, so
    this module is imported under its own name, not as ``__main__``)."""
    args = sys.argv[1:]
    if len(args) != 2 or not args[0].isdigit():
        raise SystemExit("usage: python -I -c SERVER_COMMAND CONTROL_FD READ_ONLY_PATHS_JSON")
    serve(int(args[0]), tuple(str(p) for p in json.loads(args[1])))
