"""Joining a cluster at --address, without a cluster: which token the driver sends where and when, the sentences
for a refused token, token mode on a cluster without authentication, other versions and no Ray head, and no token in
a cell worker's environment. A real cluster with token authentication: tests/ray/test_token_cluster.py."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from segbench.errors import ConfigError
from segbench.execution.ray_auth import DriverAuth, driver_auth, on_this_machine
from segbench.execution.ray_join import _settle_token, join_failure
from segbench.execution.ray_task import worker_environment

HERE = "127.0.0.1:6379"
ELSEWHERE = "203.0.113.5:6379"  # TEST-NET-3: never an address of this machine
REFUSED_TEXT = ("the Ray cluster at --address {address} refused this driver's authentication token (from {source}); "
                "give the driver the cluster's token (`ray get-auth-token` on the head node prints it) in "
                "RAY_AUTH_TOKEN, in the file RAY_AUTH_TOKEN_PATH names or in ~/.ray/auth_token, with "
                "RAY_AUTH_MODE=token.")


class Refused(Exception):
    """What the head node's GCS raises at a driver whose token it does not take (Ray's AuthenticationError)."""


def gcs(requires_token: bool):
    """A stand-in for connecting to a head node: with token authentication it takes only a driver in token mode."""

    def connect() -> str:
        if requires_token and os.environ.get("RAY_AUTH_MODE") != "token":
            raise Refused("RPC error: InvalidAuthToken")
        return "client"

    return connect


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private home without Ray's variables: the driver holds no token until a test writes one."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def hold_default_token(home: Path) -> Path:
    path = home / ".ray" / "auth_token"
    path.parent.mkdir()
    path.write_text("0123abcd")
    return path


@pytest.mark.parametrize(("address", "expected"), [(HERE, True), ("localhost:6379", True), ("auto", True),
                                                   (ELSEWHERE, False)])
def test_an_address_is_on_this_machine_when_it_is_loopback_or_one_of_its_interfaces(address: str, expected: bool):
    assert on_this_machine(address) is expected


def test_the_users_token_goes_only_to_a_cluster_on_this_machine_that_asks_for_it(home):
    path = hold_default_token(home)
    with driver_auth(HERE) as auth:
        assert _settle_token(gcs(requires_token=False), Refused, auth) == "client"
        assert "RAY_AUTH_MODE" not in os.environ  # no token where none is asked for
        assert _settle_token(gcs(requires_token=True), Refused, auth) == "client"
        assert os.environ["RAY_AUTH_MODE"] == "token" and auth.source == str(path)
    assert "RAY_AUTH_MODE" not in os.environ  # set for the join only
    with driver_auth(ELSEWHERE) as auth, pytest.raises(Refused):
        _settle_token(gcs(requires_token=True), Refused, auth)
    assert "RAY_AUTH_MODE" not in os.environ
    assert auth.refused().startswith(
        f"the Ray cluster at --address {ELSEWHERE} requires token authentication and this driver sent no token "
        f"(segbench sends the token in {path} to another machine only with RAY_AUTH_MODE=token); set "
        f"RAY_AUTH_MODE=token and give the driver the cluster's token")


def test_an_explicit_ray_auth_mode_is_respected_and_checked_against_the_cluster(home, monkeypatch):
    hold_default_token(home)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with driver_auth(HERE) as auth, pytest.raises(Refused):
        _settle_token(gcs(requires_token=True), Refused, auth)
    assert "(RAY_AUTH_MODE=disabled here); set RAY_AUTH_MODE=token" in auth.refused()
    assert os.environ["RAY_AUTH_MODE"] == "disabled"

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0123abcd")
    with driver_auth(ELSEWHERE) as auth:
        assert _settle_token(gcs(requires_token=True), Refused, auth) == "client"
        assert auth.refused() == REFUSED_TEXT.format(address=ELSEWHERE, source="RAY_AUTH_TOKEN")
        # The processes of a cluster without authentication cannot call back a driver in token mode.
        with pytest.raises(ConfigError) as error:
            _settle_token(gcs(requires_token=False), Refused, auth)
    assert str(error.value) == (
        f"the Ray cluster at --address {ELSEWHERE} runs without token authentication but this driver has "
        f"RAY_AUTH_MODE=token, and the cluster's processes cannot call it back; unset RAY_AUTH_MODE for this run, "
        f"or restart every node of the cluster with RAY_AUTH_MODE=token.")
    assert os.environ["RAY_AUTH_MODE"] == "token"


def test_a_token_the_driver_is_to_send_but_cannot_is_refused_in_one_sentence(home, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with pytest.raises(ConfigError, match=r"^RAY_AUTH_MODE=token but this driver has no Ray authentication token; "
                                          r"give the driver the cluster's token \(`ray get-auth-token`"):
        DriverAuth(HERE)
    # Ray itself would abort the process (a failed native check) on either file.
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(home / "missing"))
    with pytest.raises(ConfigError, match=r"names .*missing, which cannot be read \(No such file or directory\); "
                                          r"point it at a file holding the cluster's token"):
        DriverAuth(HERE)
    (home / "empty").write_text("\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(home / "empty"))
    with pytest.raises(ConfigError, match=r"names .*empty, which is empty; put the cluster's token in it"):
        DriverAuth(HERE)
    monkeypatch.delenv("RAY_AUTH_MODE")  # asked for by the cluster only: checked when it is about to be sent
    with driver_auth(HERE) as auth, pytest.raises(ConfigError, match="which is empty"):
        _settle_token(gcs(requires_token=True), Refused, auth)


def test_ray_inits_own_errors_are_read_when_the_probe_could_not_run(home):
    ray = pytest.importorskip("ray")
    from ray._private.utils import check_version_info

    auth = DriverAuth("10.0.0.5:6379")
    # ray.init wraps a refused token in two exceptions and keeps the reason in the inner one's text.
    inner = RuntimeError("Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
                         "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication token is "
                         "missing or incorrect.")
    try:
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.5:6379") from inner
    except ConnectionError as wrapped:
        assert join_failure("10.0.0.5:6379", wrapped, auth) == auth.refused()
    assert auth.refused().startswith("the Ray cluster at --address 10.0.0.5:6379 requires token authentication and "
                                     "this driver sent no token; set RAY_AUTH_MODE=token")
    assert join_failure("h:1", ray.exceptions.AuthenticationError("RPC error"), auth) == auth.refused()

    with pytest.raises(RuntimeError) as mismatch:  # Ray's own check, with the message it gives ray.init
        check_version_info({"ray_version": "2.41.0", "python_version": "3.9.18"}, "node 10.0.0.9")
    assert join_failure("10.0.0.5:6379", mismatch.value, auth) == (
        f"this driver runs Ray {ray.__version__} on Python {platform.python_version()} but the Ray cluster at "
        f"--address 10.0.0.5:6379 runs Ray 2.41.0 on Python 3.9.18; run segbench with the cluster's versions (pip "
        f"install 'ray==2.41.0' in a Python 3.9.18 environment), or start the cluster with the driver's.")

    no_head = RuntimeError("Timed out while waiting for GCS to become available.")
    assert join_failure("h:80", no_head, auth).startswith("what answers at --address h:80 is not a Ray head node")


def test_a_cell_worker_gets_no_ray_token_from_its_node():
    env = worker_environment({"RAY_AUTH_TOKEN": "0123abcd", "RAY_AUTH_MODE": "token", "PATH": "/bin"}, "crash=1")
    assert "RAY_AUTH_TOKEN" not in env
    assert env["RAY_AUTH_MODE"] == "token" and env["PATH"] == "/bin" and env["SEGBENCH_FAULT"] == "crash=1"
