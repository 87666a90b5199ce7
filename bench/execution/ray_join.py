"""Joining a running Ray cluster at an --address: nothing listening, a probe of the head node that settles the
driver's token (ray_auth) and compares versions before Ray's own connection, and one sentence with the fix when
joining fails, all within CONNECT_TIMEOUT_S.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from segbench.errors import ConfigError
from segbench.execution.ray_auth import DriverAuth

CONNECT_TIMEOUT_S = 60.0  # joining a cluster that has not answered by then is given up


def check_listening(address: str) -> None:
    """Fail at once, with the fix, when nothing listens at HOST:PORT (Ray itself would retry for minutes)."""
    if address == "auto":
        return  # Ray finds this host's cluster itself, and says so at once when there is none
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address must be HOST:PORT (e.g. 10.0.0.5:6379) or auto, not '{address}'.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise ConfigError(f"nothing answers at --address {address} ({exc.strerror or exc}); start the head node "
                          f"there with `ray start --head`, or pass the address it printed.") from None


def join(ray: Any, address: str, auth: DriverAuth) -> None:
    """Probe the head node, then ray.init(address); given up after CONNECT_TIMEOUT_S, since a port that answers
    but is no Ray head makes Ray retry without end. The attempt runs in a daemon thread, which the process leaves
    behind when it exits. ConfigError with one sentence when it fails."""
    check_listening(address)
    outcome: dict[str, BaseException | None] = {}

    def attempt() -> None:
        worker_log = logging.getLogger("ray._private.worker")
        worker_log.addFilter(_not_main_thread_notice)
        try:
            probe(ray, address, auth)
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            outcome["error"] = None
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            worker_log.removeFilter(_not_main_thread_notice)

    thread = threading.Thread(target=attempt, name="ray-connect", daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S)
    if "error" not in outcome:
        raise ConfigError(f"the Ray cluster at --address {address} did not answer within {CONNECT_TIMEOUT_S:.0f} s; "
                          f"check that it is a Ray head node's address (`ray status` there prints it).")
    error = outcome["error"]
    if error is not None:
        ray.shutdown()  # a driver refused after it connected (other versions) leaves Ray half set up
        if isinstance(error, ConfigError):
            raise error
        raise ConfigError(join_failure(address, error, auth)) from None


def _not_main_thread_notice(record: logging.LogRecord) -> bool:
    """ray.init in the joining thread says it set no SIGTERM handler there, on every run: true, and by design (the
    runner handles the signals), so the line is dropped."""
    return not record.getMessage().startswith("SIGTERM handler is not set")


def probe(ray: Any, address: str, auth: DriverAuth) -> None:
    """Ask the head node's GCS, before ray.init, whether it takes this driver with or without its token (settling
    the driver's mode, ray_auth), then for the cluster's versions: a refused token is known in milliseconds (ray.init
    retries it for 20 s, logging every try, and its error leaves the reason out), other versions before anything of
    the driver starts. Ray's internals differ between versions: where they do not match what is used here, the probe
    is skipped and join_failure reads ray.init's own error."""
    if address == "auto" or address.startswith("ray://"):
        return  # no GCS address to ask (Ray finds it itself / a Ray Client server)
    try:
        from ray._common.usage.usage_lib import get_cluster_metadata
        from ray._private.utils import check_version_info
        from ray._raylet import GcsClient
    except ImportError:
        return
    refused = getattr(ray.exceptions, "AuthenticationError", None)
    try:
        with _native_stderr_silenced():
            client = _settle_token(lambda: GcsClient(address=address), refused, auth)
    except TypeError:  # another signature
        return
    try:
        metadata = get_cluster_metadata(client)
    except Exception:  # an older layout of the cluster's metadata: ray.init checks the versions itself
        return
    if metadata:
        check_version_info(metadata, "this driver")  # RuntimeError naming both versions, as ray.init raises it


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Ray's native GCS client writes every refused or unanswered call to stderr itself (gcs_client.cc; no setting
    turns it off), so asking without a token first, as the probe does, would print an alarming line on every run
    that then joins with one. The probe's outcome is reported in segbench's own sentence; only this thread runs
    meanwhile (the caller waits for it, nothing of Ray's is started yet)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _settle_token(connect: Any, refused: type[BaseException] | None, auth: DriverAuth) -> Any:
    """A GCS client (connect()), with the driver in the token mode the cluster takes; raises what a refused driver
    gets (AuthenticationError) or ConfigError for RAY_AUTH_MODE=token on a cluster without authentication."""
    if refused is None:  # a Ray without token authentication
        return connect()
    if auth.user_mode == "token":
        auth.use_token(False)
        try:
            connect()
        except refused:
            pass  # the cluster wants a token, as the user says
        else:
            raise ConfigError(auth.unauthenticated_cluster())
        finally:
            auth.use_token(True)
        return connect()
    try:
        return connect()
    except refused:
        if auth.user_mode is not None or not auth.may_send:
            raise
    auth.use_token(True)
    return connect()


def join_failure(address: str, error: BaseException, auth: DriverAuth) -> str:
    """The sentence for a failed join: a refused or missing token, other Ray or Python versions, no Ray head at the
    address, or else Ray's own first line."""
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    text = "\n".join(str(exc) for exc in chain)
    if (any(type(exc).__name__ == "AuthenticationError" for exc in chain) or "InvalidAuthToken" in text
            or "Unauthenticated" in text):
        return auth.refused()
    versions = re.findall(r"Ray: (\S+)\s+Python: (\S+)", text)
    if "Version mismatch" in text and len(versions) >= 2:
        (cluster_ray, cluster_python), (driver_ray, driver_python) = versions[:2]
        return (f"this driver runs Ray {driver_ray} on Python {driver_python} but the Ray cluster at --address "
                f"{address} runs Ray {cluster_ray} on Python {cluster_python}; run segbench with the cluster's "
                f"versions (pip install 'ray=={cluster_ray}' in a Python {cluster_python} environment), or start "
                f"the cluster with the driver's.")
    if "Timed out while waiting for GCS" in text:
        return (f"what answers at --address {address} is not a Ray head node (no Ray GCS replied); pass the address "
                f"`ray start --head` printed (`ray status` on the head node prints it too).")
    reason = (str(chain[0]).strip().splitlines() or [type(chain[0]).__name__])[0]
    return (f"could not join the Ray cluster at --address {address} ({reason.rstrip('.')}); start one with "
            f"`ray start --head` or pass its address.")
