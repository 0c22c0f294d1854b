"""The OS layer alone (language layers off: user code may import os, socket, ctypes) still holds."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from quantdesk.sandbox.runner import ForkServer, SandboxOutcome, Status
from tests.sandbox import SMA, attack, everything, logged, pids_named, run

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534


# --- CPU, wall clock, memory, processes -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "body",
    [
        "while True: pass",
        "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True: pass",
        "import numpy as np\nx = np.ones(10**6)\nwhile True: x = np.sort(x[::-1])",
    ],
    ids=["busy-loop", "sigxcpu-ignored", "busy-in-numpy"],
)
def test_a_busy_loop_is_stopped_at_the_cpu_limit(body: str) -> None:
    started = time.monotonic()
    outcome = run(attack(body), cpu_seconds=1, wall_seconds=10)
    assert outcome.status == Status.FAILED
    assert outcome.error == "stopped: CPU time limit of 1 s reached"
    assert outcome.limit == "cpu"
    assert 0.9 <= outcome.stats["cpu_seconds"] < 2.5  # soft limit, or the hard one a second on
    assert time.monotonic() - started < 8  # generous: other work may share the CPU


@pytest.mark.slow
@pytest.mark.parametrize(
    "body",
    ["import time\ntime.sleep(60)", "import os\nr, w = os.pipe()\nos.read(r, 1)"],
    ids=["sleep", "blocked-read"],
)
def test_sleeping_past_the_wall_clock_is_stopped(body: str) -> None:
    started = time.monotonic()
    outcome = run(attack(body), wall_seconds=1)
    elapsed = time.monotonic() - started
    assert outcome.status == Status.FAILED
    assert outcome.error == "stopped: wall-clock time limit of 1 s reached"
    assert outcome.limit == "wall"
    assert 1.0 <= elapsed < 5.0
    assert outcome.stats["cpu_seconds"] < 0.5  # it used no CPU: only the wall clock stops it


@pytest.mark.parametrize(
    "body",
    [
        "x = bytearray(2**33)",
        "x = []\nwhile True:\n    x.append(bytearray(10**7))",
        "import numpy as np\nx = np.ones((10**5, 10**5))",
        "import pandas as pd\nx = pd.DataFrame(index=range(10**5), columns=range(10**4), data=1.0)",
        "x = 'a' * 2**32",
    ],
    ids=["bytearray", "growing-list", "numpy", "pandas", "string"],
)
def test_a_memory_bomb_is_stopped_at_the_memory_limit(body: str) -> None:
    outcome = run(attack(body), memory_mb=512)
    assert outcome.status == Status.FAILED
    assert outcome.error == "stopped: memory limit of 512 MB reached"
    assert outcome.limit == "memory"
    assert outcome.stats["max_rss_kb"] < 600 * 1024


def test_no_fork_no_thread_no_fork_bomb() -> None:
    code = attack(
        """
        import os, threading, subprocess
        for name, action in [
            ("fork", os.fork),
            ("thread", lambda: threading.Thread(target=print).start()),
            ("spawn", lambda: subprocess.Popen(["/bin/true"])),
        ]:
            try:
                action()
                out.append(name + " worked")
            except (OSError, RuntimeError) as exc:
                out.append(name + " refused: " + type(exc).__name__)
        """
    )
    assert logged(run(code)) == [
        "fork refused: BlockingIOError",
        "thread refused: RuntimeError",
        "spawn refused: BlockingIOError",
    ]


DAEMON = """
import ctypes, os, time
pid = os.fork()
if pid == 0:
    if os.fork() == 0:
        os.setsid()  # leaves the process group: a group kill alone would miss it
        ctypes.CDLL(None).prctl(15, b"{name}", 0, 0, 0)
        time.sleep(60)
        os._exit(0)
    os._exit(0)
os.waitpid(pid, 0)
time.sleep({then})
out.append("returned")
"""


def _watch_for(name: str, work: threading.Thread) -> list[int]:
    """PIDs named ``name`` seen while ``work`` runs."""
    seen: list[int] = []
    work.start()
    while work.is_alive():
        seen = seen or pids_named(name)
        time.sleep(0.02)
    work.join()
    return seen


@pytest.mark.slow
def test_a_double_forked_daemon_dies_with_a_timed_out_run() -> None:
    name = f"qd{os.getpid() % 10**6}a"  # a command name holds 15 characters
    box: dict[str, SandboxOutcome] = {}
    code = attack(DAEMON.format(name=name, then=60))
    work = threading.Thread(
        target=lambda: box.setdefault("o", run(code, processes=4, wall_seconds=1.5))
    )
    seen = _watch_for(name, work)
    assert seen, "the daemon never started: the test would prove nothing"
    assert box["o"].error == "stopped: wall-clock time limit of 1.5 s reached"
    assert pids_named(name) == []
    assert all(not Path(f"/proc/{pid}").exists() for pid in seen)


def test_a_double_forked_daemon_dies_when_the_run_finishes() -> None:
    name = f"qd{os.getpid() % 10**6}b"
    box: dict[str, SandboxOutcome] = {}
    code = attack(DAEMON.format(name=name, then=0.5))
    seen = _watch_for(
        name, threading.Thread(target=lambda: box.setdefault("o", run(code, processes=4)))
    )
    assert seen
    assert logged(box["o"]) == ["returned"]
    assert pids_named(name) == []


# --- secrets, network, files --------------------------------------------------------------


def test_the_child_sees_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "DATABASE_URL": "postgresql://u:hunter2-db@db/x",
        "JWT_SECRET_KEY": "hunter2-jwt",
        "DEEPSEEK_API_KEY": "hunter2-deepseek",
    }
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    server = ForkServer()  # started while the parent holds the secrets
    try:
        code = attack(
            """
            import os
            out.append(dict(os.environ))
            for pid in ["self", "1", str(os.getppid())]:
                path = "/proc/" + pid + "/environ"
                try:
                    out.append(open(path, "rb").read())
                except OSError as exc:
                    out.append(type(exc).__name__)
            """
        )
        outcome = run(code, server=server)
    finally:
        server.close()
    assert logged(outcome) == ["{}", "FileNotFoundError", "FileNotFoundError", "FileNotFoundError"]
    assert "hunter2" not in everything(outcome)


def test_no_socket_reaches_the_host() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    unix_path = f"/tmp/qd-sandbox-{os.getpid()}.sock"  # noqa: S108
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(unix_path)
    unix.listen()
    code = attack(
        f"""
        import socket
        for target in [("127.0.0.1", {port}), ("10.0.0.1", 80), ("1.1.1.1", 443)]:
            try:
                socket.create_connection(target, timeout=1)
                out.append("connected")
            except OSError as exc:
                out.append(exc.strerror)
        try:
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", {port}))
            out.append("sent")
        except OSError as exc:
            out.append(exc.strerror)
        try:
            socket.socket(socket.AF_UNIX).connect("{unix_path}")
            out.append("connected")
        except OSError as exc:
            out.append(exc.strerror)
        out.append([name for _, name in socket.if_nameindex()])
        """
    )
    try:
        messages = logged(run(code))
        listener.settimeout(0.3)
        unix.settimeout(0.1)
        with pytest.raises(TimeoutError):
            listener.accept()
        with pytest.raises(TimeoutError):
            unix.accept()
    finally:
        listener.close()
        unix.close()
        os.unlink(unix_path)
    assert messages == [
        "Network is unreachable",
        "Network is unreachable",
        "Network is unreachable",
        "Network is unreachable",
        "No such file or directory",
        "['lo']",
    ]


def test_secret_files_outside_scratch_cannot_be_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2-file")
    secret.chmod(0o600)
    paths = [str(secret), str(REPO / "var" / ".jwt_secret_key"), str(REPO / ".env")]
    paths += [str(REPO / "var" / "quantdesk.db"), "/etc/shadow", "/etc/passwd", "/root/.bashrc"]
    code = attack(
        f"""
        import os
        for path in {paths!r}:
            try:
                out.append(open(path).read() if not os.path.isdir(path) else os.listdir(path))
            except OSError as exc:
                out.append(type(exc).__name__)
        """
    )
    outcome = run(code)
    assert logged(outcome) == ["FileNotFoundError"] * 7
    assert "hunter2" not in everything(outcome)


def test_a_0600_file_the_child_can_see_is_still_unreadable(tmp_path: Path) -> None:
    # The file system view is one layer; the unprivileged user is another, proved alone here
    # by showing the child a folder with a root-only file in it.
    tmp_path.chmod(0o755)  # pytest makes it 0700: let the unprivileged child in
    (tmp_path / "public.txt").write_text("visible")
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2-0600")
    secret.chmod(0o600)
    server = ForkServer(read_only_paths=(str(tmp_path),))
    code = attack(
        f"""
        for name in ["public.txt", "secret.txt"]:
            try:
                out.append(open("{tmp_path}/" + name).read())
            except OSError as exc:
                out.append(type(exc).__name__)
        try:
            open("{tmp_path}/new.txt", "w")
        except OSError as exc:
            out.append(exc.strerror)
        """
    )
    try:
        outcome = run(code, server=server)
    finally:
        server.close()
    assert logged(outcome) == ["visible", "PermissionError", "Read-only file system"]
    assert not (tmp_path / "new.txt").exists()


def test_nothing_outside_scratch_can_be_written(tmp_path: Path) -> None:
    targets = [
        str(tmp_path / "pwned"),
        str(REPO / "src" / "quantdesk" / "pwned.py"),
        str(REPO / "pwned"),
        "/pwned",
        "/usr/pwned",
        "/dev/pwned",
        "/tmp/pwned",  # noqa: S108
    ]
    code = attack(
        f"""
        import os
        for path in {targets!r}:
            try:
                with open(path, "w") as f:
                    f.write("x")
                out.append("wrote " + path)
            except OSError as exc:
                out.append(exc.strerror)
        with open("mine.txt", "w") as f:
            f.write("scratch works")
        out.append(open(os.path.join(os.getcwd(), "mine.txt")).read())
        out.append(os.getcwd())
        """
    )
    messages = logged(run(code))
    # Which error each path gives depends on where the checkout lives (a repository under
    # /tmp puts /tmp into the sandbox's read-only root): refused, never written.
    refusals = {"No such file or directory", "Read-only file system", "Permission denied"}
    assert len(messages) == len(targets) + 2
    assert set(messages[: len(targets)]) <= refusals, messages
    assert messages[len(targets) :] == ["scratch works", "/scratch"]
    for path in targets:
        assert not Path(path).exists(), path
    for target in targets:
        assert not os.path.exists(target), target


def test_each_run_gets_a_fresh_scratch_folder() -> None:
    first = attack(
        "open('left-behind.txt', 'w').write('x')\nimport os\nout.append(os.listdir('.'))"
    )
    assert logged(run(first)) == ["['left-behind.txt']"]
    second = attack("import os\nout.append(os.listdir('.'))")
    assert logged(run(second)) == ["[]"]
    assert not Path("/scratch").exists()  # it never existed on the host


def test_a_large_file_in_scratch_is_stopped_at_the_file_size_limit() -> None:
    outcome = run(attack("open('big', 'wb').write(b'x' * 3_000_000)"), file_size_mb=1)
    assert outcome.status == Status.FAILED
    assert outcome.error == "stopped: file size limit of 1 MB reached"
    assert outcome.limit == "file_size"


def test_open_files_are_capped() -> None:
    code = attack(
        """
        files = []
        try:
            while True:
                files.append(open("/dev/null"))
        except OSError as exc:
            out.append(exc.strerror)
        out.append(len(files) < 64)
        """
    )
    assert logged(run(code, open_files=64)) == ["Too many open files", "True"]


def test_only_stdio_and_the_result_pipe_are_open() -> None:
    code = attack(
        """
        import os
        fds = []
        for fd in range(1024):
            try:
                os.fstat(fd)
                fds.append(fd)
            except OSError:
                pass
        out.append(fds)
        """
    )
    assert logged(run(code)) == ["[0, 1, 2, 3]"]


def test_the_child_is_nobody_and_cannot_become_root_again() -> None:
    code = attack(
        """
        import os
        out.append((os.getresuid(), os.getresgid(), os.getgroups()))
        for name, action in [
            ("setuid", lambda: os.setuid(0)),
            ("chroot", lambda: os.chroot("/")),
            ("chmod", lambda: os.chmod("/usr", 0o777)),
        ]:
            try:
                action()
                out.append(name + " worked")
            except OSError as exc:
                out.append(name + ": " + exc.strerror)
        """
    )
    assert logged(run(code)) == [
        f"(({NOBODY}, {NOBODY}, {NOBODY}), ({NOBODY}, {NOBODY}, {NOBODY}), [])",
        "setuid: Operation not permitted",
        "chroot: Operation not permitted",
        "chmod: Read-only file system",
    ]


# x86_64 numbers: unshare, setns, mount, ptrace, bpf, perf_event_open, userfaultfd,
# io_uring_setup, keyctl, process_vm_readv, init_module, kexec_load.
DENIED = {
    "unshare": (272, 0x10000000),  # CLONE_NEWUSER: unprivileged users may, without the filter
    "setns": (308, 0, 0),
    "mount": (165, 0, 0, 0, 0, 0),
    "ptrace": (101, 16, 1),
    "bpf": (321, 0, 0, 0),
    "perf_event_open": (298, 0, 0, -1, -1, 0),
    "userfaultfd": (323, 0),
    "io_uring_setup": (425, 1, 0),
    "keyctl": (250, 0, 0),
    "process_vm_readv": (310, 1, 0, 0, 0, 0, 0),
    "init_module": (175, 0, 0, 0),
    "kexec_load": (246, 0, 0, 0, 0),
}


def test_the_seccomp_filter_refuses_kernel_attack_surface() -> None:
    code = attack(
        f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        for name, call in {DENIED!r}.items():
            rc = libc.syscall(*[ctypes.c_long(v) for v in call])
            out.append(name + " " + str(rc) + " " + os.strerror(ctypes.get_errno()))
        """
    )
    assert logged(run(code)) == [f"{name} -1 Operation not permitted" for name in DENIED]


def test_the_filter_leaves_ordinary_forks_and_threads_to_the_process_limit() -> None:
    code = attack(
        """
        import os, threading
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        out.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        box = []
        worker = threading.Thread(target=lambda: box.append("thread ran"))
        worker.start()
        worker.join()
        out.extend(box)
        """
    )
    assert logged(run(code, processes=4)) == ["7", "thread ran"]


def test_the_child_cannot_see_or_signal_the_host() -> None:
    code = attack(
        f"""
        import os, signal
        out.append(os.getpid())
        try:
            os.kill({os.getpid()}, signal.SIGKILL)
            out.append("killed the test")
        except OSError as exc:
            out.append(exc.strerror)
        out.append(os.path.exists("/proc"))
        """
    )
    assert logged(run(code)) == ["1", "No such process", "False"]


@pytest.mark.parametrize("layers", [False, True], ids=["os-layer-only", "all-layers"])
def test_a_normal_run_still_works_inside_all_this(layers: bool) -> None:
    outcome = run(SMA, language_layers=layers)
    assert outcome.status == Status.FINISHED
    assert outcome.result is not None
    assert outcome.result["metrics"]["final_value"] > 0
