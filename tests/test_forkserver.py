"""The fork server (segbench/forkserver.py): a forked child behaves as `python -m module args` would, the server
refuses to fork from a process with a second thread, and nothing it starts outlives the process that started it.

Most tests preload a light module (json), so a server starts in a fraction of a second; one starts it with what the
workers' server imports (torch, smp, timm) and checks that it still has one thread and that a worker's modules are
there already."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from segbench import forkserver
from segbench.forkserver import ForkedProcess, ForkServer


@pytest.fixture
def server():
    started = ForkServer(["json"])
    assert started.ready(timeout=60), started.problem
    yield started
    started.close()


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """A folder of small modules for the children to run, on the children's path (PYTHONPATH)."""
    folder = tmp_path / "modules"
    folder.mkdir()

    def write(name: str, source: str) -> str:
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    monkeypatch.setenv("PYTHONPATH", str(folder))
    return write


def _run_on(server: ForkServer, module: str, args: list[str], env: dict[str, str], timeout: float,
            forked: bool = True):
    """start_module through `server` to its end; forked: whether the server must have forked it (else it must
    have fallen back to a new interpreter)."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = forkserver.start_module(module, args, env=env, stdout=out.fileno(), stderr=err.fileno(),
                                          server=server, name="segbench-test")
        assert isinstance(process, ForkedProcess if forked else subprocess.Popen)
        code = process.wait(timeout=timeout)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(args, code, out.read().decode(), err.read().decode())


def test_a_child_has_its_own_environment_directory_arguments_and_streams(server, modules, tmp_path):
    modules("show", """
        import json, os, sys
        import segbench.faults as faults
        print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "x": os.environ.get("X"),
                          "fault": faults.value("step_sleep"), "name": open("/proc/self/comm").read().strip(),
                          "ppid": os.getppid(), "stdin": sys.stdin.read()}))
        print("to stderr", file=sys.stderr)
        sys.exit(3)
    """)
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {**os.environ, "X": "1", "SEGBENCH_FAULT": "step_sleep=0.5"}
    old = os.getcwd()
    os.chdir(workdir)
    try:
        result = _run_on(server, "show", ["a", "b c"], env, 60)
    finally:
        os.chdir(old)
    import json

    shown = json.loads(result.stdout)
    assert result.returncode == 3 and result.stderr == "to stderr\n"
    assert shown == {"argv": ["a", "b c"], "cwd": str(workdir), "x": "1", "fault": 0.5, "name": "segbench-test",
                     "ppid": server.pid, "stdin": ""}


def test_exit_codes_are_those_of_python_m(server, modules):
    modules("fails", "raise ValueError('broken')")
    modules("interrupted", "raise KeyboardInterrupt")
    modules("message", "import sys; sys.exit('a message')")
    failed = _run_on(server, "fails", [], dict(os.environ), 60)
    assert failed.returncode == 1 and "ValueError: broken" in failed.stderr
    assert _run_on(server, "interrupted", [], dict(os.environ), 60).returncode == -signal.SIGINT
    message = _run_on(server, "message", [], dict(os.environ), 60)
    assert message.returncode == 1 and message.stderr == "a message\n"
    assert _run_on(server, "no_such_module", [], dict(os.environ), 60).returncode == 1


def test_wait_times_out_and_a_killed_child_reports_its_signal(server, modules):
    modules("sleeper", "import time; time.sleep(60)")
    process = forkserver.start_module("sleeper", [], env=dict(os.environ), stdout=1, stderr=2, server=server)
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.2)
    assert process.poll() is None
    process.kill()
    assert process.wait(timeout=30) == -signal.SIGKILL
    process.kill()  # after its end: a no-op, never a signal to a reused pid


def test_poll_never_blocks_on_a_child_that_outlives_its_server(server, modules, tmp_path):
    """The server dies while its child runs on (here a child that ignores the SIGTERM it gets, as a worker does
    while it writes its record): poll answers at once, None while the child runs and its end afterwards."""
    started = tmp_path / "started"
    modules("stubborn", f"""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open({str(started)!r}, "w").close()
        time.sleep(1.5)
    """)
    process = forkserver.start_module("stubborn", [], env=dict(os.environ), stdout=1, stderr=2, server=server)
    deadline = time.monotonic() + 30
    while not started.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    server._process.kill()
    server._process.wait()
    time.sleep(0.2)  # the server's end reaches the connection
    before = time.monotonic()
    assert process.poll() is None and time.monotonic() - before < 0.5
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.1)
    assert process.wait(timeout=30) == -signal.SIGTERM  # its status went with the server


def test_sigint_is_ignored_in_the_child_when_the_caller_ignores_it(server, modules):
    modules("disposition", "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)")
    assert _run_on(server, "disposition", [], dict(os.environ), 60).stdout == "False\n"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert _run_on(server, "disposition", [], dict(os.environ), 60).stdout == "True\n"
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_children_end_with_the_server_and_the_server_with_its_client(server, modules):
    modules("sleeper", "import time; time.sleep(60)")
    process = forkserver.start_module("sleeper", [], env=dict(os.environ), stdout=1, stderr=2, server=server)
    server.close()
    assert process.wait(timeout=30) in (-signal.SIGTERM, 1)  # SIGTERM (or ended before it could ask for it)
    # A client killed outright: its server sees the end of its stdin and ends too.
    client = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        from segbench.forkserver import ForkServer
        server = ForkServer(["json"])
        assert server.ready(60)
        print(server.pid, flush=True)
        import time; time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    server_pid = int(client.stdout.readline())
    client.kill()
    client.wait()
    deadline = time.monotonic() + 30
    while not forkserver._gone(server_pid):
        assert time.monotonic() < deadline, "the fork server outlived its client"
        time.sleep(0.05)


def test_a_server_with_a_second_thread_refuses_and_a_fresh_process_starts_instead(modules, capfd):
    modules("threaded", "import threading, time; threading.Thread(target=time.sleep, args=(60,), daemon=True).start()")
    modules("hello", "print('hello')")
    refusing = ForkServer(["threaded"])
    try:
        assert not refusing.ready(timeout=60)
        assert "2 threads were running after importing threaded" in refusing.problem
        done = _run_on(refusing, "hello", [], dict(os.environ), 60, forked=False)
        assert done.returncode == 0 and done.stdout == "hello\n"
    finally:
        refusing.close()


def test_segbench_fork_server_0_turns_it_off(monkeypatch):
    monkeypatch.setenv(forkserver.ENV, "0")
    assert forkserver.start_server(["json"]) is None


@pytest.mark.slow
def test_the_workers_server_imports_torch_smp_and_timm_with_one_thread(modules):
    """The real preload: torch, smp, timm and the worker's modules leave one thread, and a forked child finds them
    imported already (no second import of torch)."""
    from segbench.execution.local import WORKER_PRELOAD

    modules("imported", "import sys; print(all(m in sys.modules for m in sys.argv[1:]))")  # imports only sys
    real = ForkServer(WORKER_PRELOAD)
    try:
        assert real.ready(timeout=300), real.problem
        result = _run_on(real, "imported", list(WORKER_PRELOAD), dict(os.environ), 60)
        assert result.stdout == "True\n", result.stderr  # checked before the child imports anything itself
    finally:
        real.close()


def test_the_servers_folder_is_private_and_removed(server):
    folder = Path(server.address).parent
    assert folder.stat().st_mode & 0o077 == 0
    server.close()
    assert not folder.exists()


def test_a_server_that_died_is_replaced_by_a_new_process_with_a_warning(server, modules, capfd):
    modules("hello", "print('hello')")
    server._process.kill()
    server._process.wait()
    done = _run_on(server, "hello", [], dict(os.environ), 60, forked=False)
    assert done.returncode == 0 and done.stdout == "hello\n"
    assert "the fork server stopped serving" in capfd.readouterr().err
