"""This driver's side of Ray's token authentication when it joins a running cluster at an --address.

Ray 2.59 and later protect a cluster with a token: `ray start --head` turns token authentication on when it finds a
token (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token, which every local `ray.init()`
creates) or when RAY_AUTH_MODE=token. A driver sends its token only in RAY_AUTH_MODE=token, and its mode must match
the cluster's both ways: without a token it is refused, and in token mode on a cluster without authentication the
cluster's processes cannot call it back (its actors die unstarted). Ray turns token mode on for a driver only when it
finds the cluster on its own (address auto), never for an explicit address.

segbench, for an explicit address (ray_join asks the head node first, so it knows the cluster's mode):
- RAY_AUTH_MODE unset: the driver joins without a token; when the cluster asks for one, the driver holds one and the
  cluster is on this machine (a loopback address or one of its interfaces), it joins with RAY_AUTH_MODE=token for
  this process while joined. To another machine the token, which travels in clear, goes only when the user sets
  RAY_AUTH_MODE=token, as Ray asks.
- RAY_AUTH_MODE set: respected, and checked (a token to send exists and can be read; token mode on a cluster without
  authentication is refused in one sentence).
The token itself is never printed or written: messages name only where it comes from.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from segbench.errors import ConfigError

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
TOKEN_FIX = ("give the driver the cluster's token (`ray get-auth-token` on the head node prints it) in RAY_AUTH_TOKEN, "
             "in the file RAY_AUTH_TOKEN_PATH names or in ~/.ray/auth_token")


def default_token_file() -> Path:
    return Path.home() / ".ray" / "auth_token"  # where Ray looks when neither variable is set


def token_source() -> str | None:
    """Where Ray reads this driver's token from, in Ray's order (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, the default
    file), as the user would name it; None when there is none."""
    if os.environ.get(TOKEN_ENV, "").strip():
        return TOKEN_ENV
    if os.environ.get(TOKEN_PATH_ENV):
        return f"{TOKEN_PATH_ENV} ({os.environ[TOKEN_PATH_ENV]})"
    path = default_token_file()
    try:
        held = bool(path.read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        held = False
    return str(path) if held else None


def on_this_machine(address: str) -> bool:
    """Whether HOST:PORT (or auto, this host's own cluster) names this machine: a loopback address or one of its
    network interfaces."""
    if address == "auto":
        return True
    host = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    try:
        resolved = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in socket.getaddrinfo(host, None)}
    except (OSError, ValueError):
        return False
    own = {ipaddress.ip_address(entry.address.split("%")[0]) for entries in psutil.net_if_addrs().values()
           for entry in entries if entry.family in (socket.AF_INET, socket.AF_INET6)}
    return bool(resolved) and all(ip.is_loopback or ip in own for ip in resolved)


class DriverAuth:
    """How this driver authenticates to the cluster at one address (see the module docstring).

    user_mode: RAY_AUTH_MODE as the user set it (lower case; None: unset). source: where the driver's token comes
    from (None: it holds none). may_send: whether segbench may send it to this address. ConfigError at once when
    RAY_AUTH_MODE=token and the token is missing or unreadable.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self._original = os.environ.get(AUTH_MODE_ENV)
        self.user_mode = (self._original or "").strip().lower() or None
        self.source = token_source()
        self.may_send = self.user_mode == "token" or (
            self.user_mode is None and self.source is not None and on_this_machine(address))
        if self.user_mode == "token":
            check_token(self.source)
        _refresh_ray_config()  # Ray sees the mode the environment has now, which may have changed since its import

    @property
    def sending(self) -> bool:
        """Whether the driver sends a token now: RAY_AUTH_MODE other than disabled (unset: disabled, for a driver
        that joins a cluster at an explicit address)."""
        return (os.environ.get(AUTH_MODE_ENV) or "disabled").strip().lower() != "disabled"

    def use_token(self, send: bool) -> None:
        """Join with or without the token from now on: RAY_AUTH_MODE in this process and Ray's cached copy."""
        if send:
            check_token(self.source)
        self._set_mode("token" if send else "disabled")

    def restore(self) -> None:
        if os.environ.get(AUTH_MODE_ENV) != self._original:
            self._set_mode(self._original)

    @staticmethod
    def _set_mode(mode: str | None) -> None:
        if mode is None:
            os.environ.pop(AUTH_MODE_ENV, None)
        else:
            os.environ[AUTH_MODE_ENV] = mode
        _refresh_ray_config()

    def refused(self) -> str:
        """The sentence for a cluster that refused this driver: it sent no token, or one the cluster does not
        hold."""
        if self.sending:
            return (f"the Ray cluster at --address {self.address} refused this driver's authentication token (from "
                    f"{self.source or AUTH_MODE_ENV + '=' + str(self.user_mode)}); {TOKEN_FIX}, with "
                    f"{AUTH_MODE_ENV}=token.")
        if self.user_mode is not None:
            why = f" ({AUTH_MODE_ENV}={self.user_mode} here)"
        elif self.source is not None:
            why = f" (segbench sends the token in {self.source} to another machine only with {AUTH_MODE_ENV}=token)"
        else:
            why = ""
        return (f"the Ray cluster at --address {self.address} requires token authentication and this driver sent no "
                f"token{why}; set {AUTH_MODE_ENV}=token and {TOKEN_FIX}, or start the cluster with "
                f"{AUTH_MODE_ENV}=disabled if you mean to run it without authentication.")

    def unauthenticated_cluster(self) -> str:
        """The sentence for RAY_AUTH_MODE=token on a cluster that runs without authentication."""
        return (f"the Ray cluster at --address {self.address} runs without token authentication but this driver has "
                f"{AUTH_MODE_ENV}=token, and the cluster's processes cannot call it back; unset {AUTH_MODE_ENV} "
                f"for this run, or restart every node of the cluster with {AUTH_MODE_ENV}=token.")


@contextmanager
def driver_auth(address: str) -> Iterator[DriverAuth]:
    """A DriverAuth for `address`; RAY_AUTH_MODE as the user had it again at the end."""
    auth = DriverAuth(address)
    try:
        yield auth
    finally:
        auth.restore()


def check_token(source: str | None) -> None:
    """The token this driver is about to send exists and can be read: Ray aborts the whole process (a native check,
    no exception) on a RAY_AUTH_TOKEN_PATH that cannot be read or holds nothing."""
    if source is None:
        raise ConfigError(f"{AUTH_MODE_ENV}=token but this driver has no Ray authentication token; {TOKEN_FIX}.")
    if not source.startswith(TOKEN_PATH_ENV):
        return
    path = Path(os.environ[TOKEN_PATH_ENV]).expanduser()
    try:
        empty = not path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"{TOKEN_PATH_ENV} names {path}, which cannot be read ({reason}); point it at a file "
                          f"holding the cluster's token (`ray get-auth-token` on the head node prints it), or unset "
                          f"it.") from None
    if empty:
        raise ConfigError(f"{TOKEN_PATH_ENV} names {path}, which is empty; put the cluster's token in it (`ray "
                          f"get-auth-token` on the head node prints it), or unset it.")


def _refresh_ray_config() -> None:
    """Ray's native side reads RAY_AUTH_MODE and the token once and caches them; Ray reinitialises its config after
    changing the variable itself (authentication_token_setup._enable_token_auth), and so does segbench, which also
    forgets the cached token."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # a Ray without these internals reads both at ray.init
        pass
