"""A fork server: one Python process that imports torch, smp and timm once and forks a fresh process from itself for
every cell's worker, in place of a new interpreter for each.

Why: a new interpreter spends about 4 s importing torch, smp and timm on the 2-core development machine, which is
most of a short tuning trial; a fork of a process that holds them already starts in milliseconds. Every cell still
runs in a process of its own, so a crash or a leak cannot reach the sweep.

Why a server and not a fork of the runner: fork copies only the calling thread, and a lock that another thread held
at that moment (OpenMP's pool, a BLAS server, a reader thread) stays locked in the child for ever. The server forks
from a process that has only ever had one thread: it checks that after its imports and refuses to serve otherwise
(numpy's OpenBLAS starts a thread pool at import, so the server sets OPENBLAS_NUM_THREADS=1 unless it is set; no
segbench process does BLAS work in numpy). Python's multiprocessing forkserver is the same design; it is not used
because its children import the parent's __main__ and are driven through multiprocessing's Process, not as the
`python -m` processes the executors start.

The memory probe stays a new interpreter: a forked child has not yet touched the library pages its parent did, so
the pages it faults in while measuring would inflate the resident-set increase it reports (by 5-14 MB for
U-Net/ResNet-18 at 64x128, measured on the development machine).

Protocol: an AF_UNIX SOCK_SEQPACKET socket in a private (0700) folder, one connection per child. The client sends
one JSON request {module, args, env, cwd, name, sigint_ignored} with the child's stdout and stderr attached; the
server forks, answers {"pid"}, and once the child has ended {"returncode"} (negative for a signal, as subprocess
has it). The server ends with the process that started it (Linux's parent-death signal, and the end of its stdin);
its children then get SIGTERM, the parent-death signal each asks for first, as a fresh worker gets it when its runner
dies.

A child is `python -m MODULE ARGS` as far as it can tell: its environment, working directory, argv, standard streams,
signal dispositions and random seeds are its own. What it shares with the server is what was imported there, with
the environment read at that import, except where a child reads it again: segbench.faults and huggingface_hub's
constants (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE) are read again in every child.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Set to "0" in the environment, no server is started: every worker is a new interpreter, as before the server.
ENV = "SEGBENCH_FORK_SERVER"
# Set by whoever starts a worker to its own pid; a worker whose parent is already someone else was orphaned before it
# could ask to die with its parent (execution/launch.py die_with_parent). The server puts its own pid there.
PARENT_PID_ENV = "SEGBENCH_PARENT_PID"
SOCKET_NAME = "server.sock"
READY = "ready"
START_TIMEOUT_S = 300.0  # the imports take seconds; a machine under load may need a minute
MAX_REQUEST = 1 << 20
_PR_SET_PDEATHSIG, _PR_SET_NAME = 1, 15

Process = Any  # subprocess.Popen or ForkedProcess: pid, returncode, poll(), wait(timeout), send_signal(), kill()


def disabled() -> bool:
    return os.environ.get(ENV, "").strip() == "0"


# ----------------------------------------------------------------------------------------------------------- client


class ForkedProcess:
    """A child of the fork server, driven as a subprocess.Popen is: pid, returncode, poll, wait, send_signal, kill."""

    def __init__(self, args: list[str], connection: socket.socket, pid: int) -> None:
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
        self._connection: socket.socket | None = connection  # None once the server answered or ended

    def poll(self) -> int | None:
        if self.returncode is None and (self._connection is None or _readable(self._connection, 0)):
            self._read_returncode(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if self._connection is not None and not _readable(self._connection, timeout):
                raise subprocess.TimeoutExpired(self.args, timeout)
            if not self._read_returncode(timeout):
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # never signal a pid that may have been reused
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _read_returncode(self, timeout: float | None) -> bool:
        """Take the server's answer (the connection is readable); when the server ended first, the child's end,
        waiting for it at most `timeout` seconds (None: as long as it takes). False while the child still runs."""
        if self._connection is not None:
            answer = _receive(self._connection)
            self._connection.close()
            self._connection = None
            if answer is not None and "returncode" in answer:
                self.returncode = int(answer["returncode"])
                return True
        # The server ended first (killed): the child got SIGTERM from it, and its status went with the server; poll
        # never blocks on a child that is still writing its record.
        deadline = None if timeout is None else time.monotonic() + timeout
        while not _gone(self.pid):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        self.returncode = -signal.SIGTERM
        return True


class ForkServer:
    """The client's handle on a running server: started with `preload` imported, asked for children with `spawn`."""

    def __init__(self, preload: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="segbench-forkserver-"))  # 0700: nobody else may connect
        self.address = str(self.folder / SOCKET_NAME)
        self._log = open(self.folder / "server.log", "w+b")  # noqa: SIM115 (kept for the server's life)
        # The server's own environment (a child's /proc/<pid>/environ shows it, whatever the child was given).
        env = {**(os.environ if env is None else env), "HF_HUB_OFFLINE": "1"}
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        # The server dies with the thread that starts it (Linux's parent-death signal), so its children get their
        # SIGTERM as soon as a killed runner's would have; from another thread only with the runner's end (EOF).
        parent = os.getpid() if threading.current_thread() is threading.main_thread() else 0
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, self.address, str(parent), *preload], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, env=env)
        self.pid = self._process.pid
        self._ready: bool | None = None
        self.problem = ""
        self._lock = threading.Lock()

    def ready(self, timeout: float = START_TIMEOUT_S) -> bool:
        """Wait until the server has imported its modules; False (and `problem` says why) when it cannot serve."""
        with self._lock:
            if self._ready is None:
                line = ""
                if _readable(self._process.stdout, timeout):
                    line = self._process.stdout.readline().decode("utf-8", "replace").strip()
                self._ready = line == READY
                if not self._ready:
                    self.problem = line or self._log_tail() or "it did not answer"
                    self.close()
            return self._ready

    def spawn(self, module: str, args: Sequence[str], env: dict[str, str], stdout: int, stderr: int,
              name: str) -> ForkedProcess:
        """`python -m module args` forked from the server, with this environment and these stdout and stderr
        descriptors (the caller closes its own copies). OSError when the server is gone."""
        request = {"module": module, "args": list(args), "env": env, "cwd": os.getcwd(), "name": name,
                   "sigint_ignored": signal.getsignal(signal.SIGINT) is signal.SIG_IGN}
        return _request(self.address, request, stdout, stderr)

    def alive(self) -> bool:
        return self._process.poll() is None

    def close(self) -> None:
        """End the server (its children get SIGTERM) and remove its folder."""
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._log.close()
        with contextlib.suppress(OSError):
            for path in self.folder.iterdir():
                path.unlink(missing_ok=True)
            self.folder.rmdir()

    def _log_tail(self) -> str:
        self._log.flush()
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""


_server: ForkServer | None = None
_server_lock = threading.Lock()


def start_server(preload: Sequence[str], env: dict[str, str] | None = None) -> ForkServer | None:
    """This process's fork server, started on the first call (in the background: `ready` waits for it) and shared
    by every later one, so runs in one process pay its imports once; env: the server's own environment (default:
    this process's). None when disabled (ENV=0) or not on Linux."""
    global _server
    if disabled() or not sys.platform.startswith("linux"):
        return None
    with _server_lock:
        if _server is None or not _server.alive():
            _server = ForkServer(preload, env)
            atexit.register(_server.close)
        return _server


def start_module(module: str, args: Sequence[str], *, env: dict[str, str], stdout: int, stderr: int,
                 server: ForkServer | None, name: str = "") -> Process:
    """Start `python -m module args` with `env`, stdin from /dev/null, stdout and stderr to these descriptors: forked
    from `server` when it serves, else a new interpreter. Returns a ForkedProcess or a subprocess.Popen; the caller
    closes its copies of the descriptors."""
    if server is not None and server.ready():
        try:
            return server.spawn(module, args, env, stdout, stderr, name)
        except OSError as exc:
            sys.stderr.write(f"segbench: the fork server stopped serving ({exc}); a new process starts instead\n")
    return subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=stderr, env=env)


def _request(address: str, request: dict[str, Any], stdout: int, stderr: int) -> ForkedProcess:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        connection.connect(address)
        socket.send_fds(connection, [json.dumps(request).encode("utf-8")], [stdout, stderr])
        answer = _receive(connection)
    except BaseException:
        connection.close()
        raise
    if answer is None or "pid" not in answer:
        connection.close()
        raise OSError(f"the fork server did not start the process: {answer}")
    return ForkedProcess([request["module"], *request["args"]], connection, int(answer["pid"]))


def _receive(connection: socket.socket) -> dict[str, Any] | None:
    try:
        data = connection.recv(MAX_REQUEST)
    except OSError:
        return None
    return json.loads(data) if data else None


def _readable(stream: Any, timeout: float | None) -> bool:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        return bool(selector.select(timeout))


def _gone(pid: int) -> bool:
    """True when `pid` has ended (no such process, or a zombie nobody may reap for us)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


# ----------------------------------------------------------------------------------------------------------- server


def _prctl(option: int, value: Any) -> None:
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, value, 0, 0, 0)


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def serve(address: str, parent: int, preload: Sequence[str]) -> int:
    """The server's main loop (in the server process): import `preload`, then fork a child per request. parent: the
    pid to die with at once (0: only at the end of stdin)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is the runner's and the children's
    if parent:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died before we asked
            return 1
    for module in preload:
        __import__(module)
    if _threads() != 1:
        print(f"{_threads()} threads were running after importing {', '.join(preload)}; a fork would copy only one",
              flush=True)
        return 3
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        print("CUDA was initialised while importing; a forked child could not use it", flush=True)
        return 3
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(address)
    listener.listen(64)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that the wake-up descriptor hears of each child
    signal.set_wakeup_fd(wake_w)
    alive = sys.stdin.buffer
    children: dict[int, socket.socket] = {}
    sys.stdout.write(READY + "\n")
    sys.stdout.flush()
    with selectors.DefaultSelector() as selector:
        selector.register(listener, selectors.EVENT_READ, "request")
        selector.register(wake_r, selectors.EVENT_READ, "child")
        selector.register(alive, selectors.EVENT_READ, "alive")
        while True:
            for key, _ in selector.select():
                if key.data == "alive" and not os.read(alive.fileno(), 1):
                    return 0  # the client ended: so do we, and our children get their SIGTERM
                if key.data == "child":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)
                    _reap(children)
                if key.data == "request":
                    connection, _ = listener.accept()
                    closing = [listener.fileno(), wake_r, wake_w, alive.fileno(), selector.fileno(),
                               *(c.fileno() for c in children.values())]
                    _fork(connection, children, closing)


def _reap(children: dict[int, socket.socket]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        connection = children.pop(pid, None)
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.send(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode())
            connection.close()


def _fork(connection: socket.socket, children: dict[int, socket.socket], closing: list[int]) -> None:
    try:
        data, fds, _, _ = socket.recv_fds(connection, MAX_REQUEST, 2)
        request = json.loads(data)
        if len(fds) != 2:
            raise ValueError(f"expected stdout and stderr descriptors, got {len(fds)}")
    except (OSError, ValueError) as exc:
        with contextlib.suppress(OSError):
            connection.send(json.dumps({"error": str(exc)}).encode())
        connection.close()
        return
    server = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(request, fds, server, [*closing, connection.fileno()])
    for fd in fds:
        os.close(fd)
    try:
        connection.send(json.dumps({"pid": pid}).encode())
    except OSError:  # the client went away: the child runs on, and nobody is told its end
        connection.close()
        return
    children[pid] = connection


def _child(request: dict[str, Any], fds: list[int], server: int, closing: list[int]) -> None:
    """In the forked child: become `python -m module args` and never return."""
    code = 1
    try:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != server:  # the server ended before we asked
            os._exit(1)
        if request.get("name"):
            _prctl(_PR_SET_NAME, request["name"].encode()[:15])
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN if request["sigint_ignored"] else signal.default_int_handler)
        for fd in closing:
            with contextlib.suppress(OSError):
                os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((devnull, 0), (fds[0], 1), (fds[1], 2)):
            os.dup2(source, target)
        for fd in (devnull, *fds):
            if fd > 2:
                os.close(fd)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
        env = dict(request["env"])
        if PARENT_PID_ENV in env:
            env[PARENT_PID_ENV] = str(server)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(request["cwd"])
        # sys.path as `python -m` would set it here: the working directory first, then PYTHONPATH.
        extra = [path for path in env.get("PYTHONPATH", "").split(os.pathsep) if path and path not in sys.path]
        sys.path[:1] = [request["cwd"], *extra]
        _fresh_state()
        code = _run(request["module"], request["args"])
    except BaseException:  # noqa: BLE001 (nothing may escape into the server's loop)
        with contextlib.suppress(BaseException):
            import traceback

            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _fresh_state() -> None:
    """What a fresh interpreter has of its own: random seeds, and what modules read from the environment at import
    (segbench's fault switches, huggingface_hub's cache paths)."""
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()
    if "segbench.faults" in sys.modules:
        sys.modules["segbench.faults"].reload()
    if "huggingface_hub.constants" in sys.modules:  # the cache's paths (HF_HOME, HF_HUB_CACHE), offline mode
        import importlib

        importlib.reload(sys.modules["huggingface_hub.constants"])


def _run(module: str, args: Sequence[str]) -> int:
    import runpy

    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:  # as Python ends on an uncaught Ctrl-C: killed by SIGINT
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 130
    except BaseException:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    return code


def _exit_code(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    sys.stderr.write(f"{value}\n")
    return 1


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))
