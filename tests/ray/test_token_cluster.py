"""The README's cluster steps on one machine, with Ray's token authentication on: a head started by `ray start
--head` (one process tree, started once for the module) that finds a token in its user's ~/.ray/auth_token, joined
by `segbench run --executor ray --address` from the same user with no Ray variable set, and refused a wrong token.

The head runs under a private home (its token file), a private --temp-dir and free ports, so nothing of the user's
~/.ray, /tmp/ray or Ray's default ports is touched; it is stopped through its own process group, not `ray stop`,
which would stop every Ray process on the machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from segbench.cli import app

pytestmark = pytest.mark.slow

RAY_VARIABLES = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@dataclass(frozen=True)
class TokenCluster:
    address: str
    token: str
    home: Path  # the user's home on this machine: ~/.ray/auth_token holds the token

    def driver_env(self, **changes: str) -> dict[str, str]:
        """A shell of the same user: no Ray variable set, unless a test sets one."""
        env = {key: value for key, value in os.environ.items() if key not in RAY_VARIABLES}
        return {**env, "HOME": str(self.home), "SEGBENCH_FAULT": "", "COLUMNS": "200", **changes}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process_group(group: int) -> None:
    """SIGKILL to every process of the cluster's group, as `ray stop --force` does to every Ray process."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):  # gone meanwhile
            if os.getpgid(process.pid) == group:
                members.append(process)
    for process in members:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(members, timeout=10)


@pytest.fixture(scope="module")
def token_cluster() -> Iterator[TokenCluster]:
    pytest.importorskip("ray")
    root = Path(tempfile.mkdtemp(prefix="sbtok"))  # short: Ray's socket paths live under --temp-dir
    home = root / "home"
    token = secrets.token_hex(32)  # as `ray get-auth-token --generate` makes one
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(token)
    port = free_port()
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", f"--port={port}", "--num-cpus=2",
               f"--temp-dir={root / 'ray'}", "--include-dashboard=false", "--disable-usage-stats",
               f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}"]
    env = TokenCluster("", token, home).driver_env()
    # Its own process group, which every process of the cluster inherits: the one thing to stop afterwards.
    starter = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output = starter.communicate(timeout=120)[0]
        assert starter.returncode == 0, output
        yield TokenCluster(f"127.0.0.1:{port}", token, home)
    finally:
        if starter.poll() is None:
            starter.kill()
        stop_process_group(starter.pid)
        shutil.rmtree(root, ignore_errors=True)


def written_text(folder: Path) -> str:
    return "".join(path.read_bytes().decode("utf-8", "replace") for path in folder.rglob("*") if path.is_file())


def test_a_cluster_with_token_authentication_is_joined_with_the_users_token_file(token_cluster: TokenCluster, sweep):
    s = sweep("joined", address=token_cluster.address)
    done = subprocess.run(s.command("--cpus-per-cell", "1"), capture_output=True, text=True, timeout=300,
                          env=token_cluster.driver_env())
    assert done.returncode == 0, done.stdout + done.stderr
    # Asking the head without a token first is not news on a run that then joins with one; nor is the join thread.
    assert "InvalidAuthToken" not in done.stderr and "SIGTERM handler" not in done.stderr, done.stderr
    records = s.records()
    assert len(records) == 2 and all(record["status"] == "ok" for record in records.values())
    for record in records.values():
        execution = record["execution"]
        assert execution["executor"] == "ray" and execution["threads"] == 1 and len(execution["node_id"]) == 56
    # The token is never written nor printed: not in a record, task file, worker log, nor the driver's output.
    assert token_cluster.token not in written_text(s.results) + done.stdout + done.stderr


def test_a_wrong_token_is_refused_in_one_sentence_and_nothing_is_written(token_cluster: TokenCluster, sweep,
                                                                        monkeypatch: pytest.MonkeyPatch):
    s = sweep("refused", address=token_cluster.address)
    for name, value in token_cluster.driver_env(RAY_AUTH_TOKEN="0" * 64).items():
        monkeypatch.setenv(name, value)
    for name in set(RAY_VARIABLES) - {"RAY_AUTH_TOKEN"}:
        monkeypatch.delenv(name, raising=False)
    # In this process (the refusal comes before Ray starts anything of the driver): a second CLI start costs 8 s.
    done = CliRunner().invoke(app, ["run", str(s.grid), "--results", str(s.results), "--device", "cpu", *s.run_args])
    assert done.exit_code == 2, done.output
    assert done.output == (f"error: the Ray cluster at --address {token_cluster.address} refused this driver's "
                           f"authentication token (from RAY_AUTH_TOKEN); give the driver the cluster's token (`ray "
                           f"get-auth-token` on the head node prints it) in RAY_AUTH_TOKEN, in the file "
                           f"RAY_AUTH_TOKEN_PATH names or in ~/.ray/auth_token, with RAY_AUTH_MODE=token.\n")
    assert token_cluster.token not in done.output
    assert "RAY_AUTH_MODE" not in os.environ  # set for the attempt only
    assert not s.results.exists()
