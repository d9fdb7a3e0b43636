"""The privacy guard: inside it, only loopback can be reached."""

from __future__ import annotations

import socket
import threading

import pytest

from messa.ai import AIConfig, Availability, ChatMessage, LanguageGuess, Registry, Summary
from messa.ai.privacy import check_loopback_url, guarded, is_loopback_address, loopback_only
from messa.errors import PrivacyViolationError

# TEST-NET-1 (RFC 5737): never routed, so nothing leaves even if a check failed.
PUBLIC = "192.0.2.1"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("192.168.1.2", False),
        ("0.0.0.0", False),
        ("::ffff:8.8.8.8", False),
        ("example.org", False),
    ],
)
def test_is_loopback_address(host: str, expected: bool) -> None:
    assert is_loopback_address(host) is expected


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://[::1]:11434/v1", "https://localhost:1234/"]
)
def test_loopback_urls_are_accepted(url: str) -> None:
    assert check_loopback_url(url)


@pytest.mark.parametrize(
    "url",
    [
        f"http://{PUBLIC}:8080",
        "http://10.1.2.3",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "http://",
        "http://127.0.0.1:99999",
    ],
)
def test_non_loopback_urls_are_refused(url: str) -> None:
    with pytest.raises(PrivacyViolationError):
        check_loopback_url(url)


def test_host_name_resolving_elsewhere_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_getaddrinfo(host: str, *args: object, **kwargs: object) -> list[tuple]:
        table = {
            "llm.lan": ["127.0.0.1", PUBLIC],  # one loopback address is not enough
            "evil.example": [PUBLIC],
            "box.internal": ["127.0.0.2"],
        }
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 80)) for a in table[host]]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(PrivacyViolationError):
        check_loopback_url("http://evil.example:8080")
    with pytest.raises(PrivacyViolationError):
        check_loopback_url("http://llm.lan:8080")
    assert check_loopback_url("http://box.internal:8080") == "box.internal"


def test_guard_blocks_tcp_connect_to_public_address() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        with loopback_only(), pytest.raises(PrivacyViolationError):
            sock.connect((PUBLIC, 443))


def test_guard_blocks_udp_and_name_lookups() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, loopback_only():
        with pytest.raises(PrivacyViolationError):
            sock.sendto(b"x", (PUBLIC, 53))
        with pytest.raises(PrivacyViolationError):
            socket.getaddrinfo("example.org", 443)
        with pytest.raises(PrivacyViolationError):
            socket.gethostbyname("example.org")


def test_guard_allows_loopback() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with loopback_only(), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        with loopback_only(), socket.create_connection(("localhost", port), timeout=2):
            pass


def test_guard_is_scoped_to_its_context() -> None:
    """Other threads (the client's sync loop) and code after the block are not affected."""
    seen: list[BaseException | None] = []

    def other_thread() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            try:
                sock.connect((PUBLIC, 9))
                seen.append(None)
            except PrivacyViolationError as exc:
                seen.append(exc)
            except OSError:
                seen.append(None)  # in progress / unreachable: the guard did not interfere

    with loopback_only():
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert seen == [None]
    other_thread()
    assert seen == [None, None]


def test_guarded_decorator_and_nesting() -> None:
    @guarded
    def leak() -> None:
        socket.getaddrinfo("example.org", 80)

    with pytest.raises(PrivacyViolationError):
        leak()
    # A nested guard cannot widen what the outer one allows.
    with loopback_only(), loopback_only("example.org"), pytest.raises(PrivacyViolationError):
        socket.getaddrinfo("example.org", 80)


class _Leaky:
    """An engine that tries to phone home: the registry must stop it."""

    name = "leaky"

    def available(self) -> Availability:
        return Availability(True, "test engine")

    def _leak(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            sock.connect((PUBLIC, 443))

    def detect(self, text: str) -> LanguageGuess:
        self._leak()
        return LanguageGuess("en", 1.0)

    def summarize(self, messages: object) -> Summary:
        self._leak()
        return Summary("", (), 0, self.name)

    def suggest(self, messages: object, *, language: str | None = None, n: int = 3) -> object:
        self._leak()
        raise AssertionError("unreachable")


def test_registry_runs_every_feature_inside_the_guard() -> None:
    registry = Registry(AIConfig(detection="heuristic", summary="extractive", replies="lexical"))
    for name in ("heuristic", "extractive", "lexical"):
        registry._engines[name] = _Leaky()
    message = [ChatMessage("@a:x", "hi", 0, False)]
    with pytest.raises(PrivacyViolationError):
        registry.detect("hello")
    with pytest.raises(PrivacyViolationError):
        registry.summarize(message)
    with pytest.raises(PrivacyViolationError):
        registry.suggest(message)
