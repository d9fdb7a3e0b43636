"""Privacy guard: AI code may open network connections to loopback only.

Decrypted text must never leave the device. Engines run their work inside
:func:`loopback_only`; while it is active *in the current context*, a Python
audit hook rejects any socket connect, datagram send or name lookup whose
target is not a loopback address, raising :class:`PrivacyViolationError`
before a packet is sent. The hook is scoped by a context variable, so the
client's own traffic to its homeserver (other threads, other tasks) is not
affected.

URLs of local engines are checked up front with :func:`check_loopback_url`,
which also resolves host names and rejects one that resolves anywhere else.
"""

from __future__ import annotations

import contextvars
import functools
import ipaddress
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from messa.errors import PrivacyViolationError

__all__ = [
    "check_loopback_url",
    "guarded",
    "is_loopback_address",
    "loopback_only",
]

P = ParamSpec("P")
R = TypeVar("R")

# Host names a guarded section may look up: "localhost" plus names that
# check_loopback_url already proved to resolve to loopback only.
_ACTIVE: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar(
    "messa_ai_loopback_only", default=None
)
_HOOK_LOCK = threading.Lock()
_hook_installed = False
_LOCAL_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


def is_loopback_address(host: str) -> bool:
    """True if *host* is a literal loopback IP (127.0.0.0/8, ::1, v4-mapped)."""
    text = host.strip("[]").split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def _host_allowed(host: object, names: frozenset[str]) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    return is_loopback_address(host) or host.lower() in _LOCAL_NAMES or host.lower() in names


def _check_address(address: object) -> None:
    # AF_UNIX paths (str/bytes) are local by construction.
    if isinstance(address, str | bytes):
        return
    if isinstance(address, tuple) and address:
        host = address[0]
        # Checked host names are not accepted here: they must go through an
        # (audited) lookup first so that the address actually used is checked.
        if isinstance(host, str) and (is_loopback_address(host) or host.lower() in _LOCAL_NAMES):
            return
    raise PrivacyViolationError(
        f"AI code tried to reach a non-loopback address ({_describe(address)})"
    )


def _describe(address: object) -> str:
    # The address is not secret, but keep the message short and printable.
    if isinstance(address, tuple) and address:
        return f"{address[0]!s}:{address[1]!s}" if len(address) > 1 else str(address[0])
    return type(address).__name__


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not event.startswith("socket."):
        return
    names = _ACTIVE.get()
    if names is None:
        return
    if event == "socket.connect" or event == "socket.sendto":
        _check_address(args[1])
    elif event == "socket.sendmsg":
        # sendmsg(sock, address): address may be None for a connected socket.
        if len(args) > 1 and args[1] is not None:
            _check_address(args[1])
    elif event == "socket.getaddrinfo":
        if not _host_allowed(args[0], names):
            raise PrivacyViolationError(
                "AI code tried to resolve a host name that is not a checked loopback name"
            )
    elif event.startswith("socket.gethostby") and not _host_allowed(args[0], names):
        raise PrivacyViolationError("AI code tried to look up a non-loopback host")


def _install_hook() -> None:
    global _hook_installed
    with _HOOK_LOCK:
        if not _hook_installed:
            # Audit hooks cannot be removed; _audit is a no-op outside a guard.
            sys.addaudithook(_audit)
            _hook_installed = True


@contextmanager
def loopback_only(*allowed_names: str) -> Iterator[None]:
    """Reject every non-loopback connection made in this context.

    Args:
        *allowed_names: Host names already proved loopback by
            :func:`check_loopback_url` that may be looked up inside the block.

    Raises:
        PrivacyViolationError: From the offending socket call inside the block.
    """
    _install_hook()
    outer = _ACTIVE.get()
    names = frozenset(n.lower() for n in allowed_names)
    if outer is not None:
        # A nested guard can only narrow what the outer one allowed.
        names = names & outer if allowed_names else outer
    token = _ACTIVE.set(names)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def guarded(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of :func:`loopback_only` with no extra host names."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with loopback_only():
            return func(*args, **kwargs)

    return wrapper


def check_loopback_url(url: str) -> str:
    """Validate that *url* is http(s) to a loopback host; return its host name.

    Host names other than literal addresses and ``localhost`` are resolved, and
    every address they resolve to must be loopback.

    Raises:
        PrivacyViolationError: The URL is malformed, not http(s), or not loopback.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise PrivacyViolationError("local AI server URL is malformed") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise PrivacyViolationError("local AI server URL must be http(s)://<loopback host>")
    if is_loopback_address(host) or host.lower() in _LOCAL_NAMES:
        return host
    try:
        infos = socket.getaddrinfo(host, port or 80, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise PrivacyViolationError(f"cannot resolve local AI server host {host!r}") from exc
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or not all(is_loopback_address(a) for a in addresses):
        raise PrivacyViolationError(
            f"local AI server host {host!r} resolves to a non-loopback address; "
            "only 127.0.0.0/8, ::1 and localhost are allowed"
        )
    return host
